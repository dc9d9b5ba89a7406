"""The tests' side of the engine runner (e2e/engine.py): the engine or a skip/fail naming what to run, and a
Workspace whose stacks get the tests' secrets and whose failed commands fail the test.

Each Workspace is a temp dir with a copy of the project, a local file backend, PULUMI_HOME and a HOME of its
own (e2e/engine.py). Nothing is ever pointed at a non-loopback address: tests set proxmoxve:endpoint to the
fake Proxmox node (e2e/pve_running.py).
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from e2e import engine as runner
from e2e.engine import (
    BUNDLED_WITH_CLI,
    EXECUTE_ENV,
    PASSPHRASE,
    PLUGINS,
    REPO,
    STACK,
    Engine,
    EngineError,
    Result,
    built_dir,
    find_engine,
    versions,
)
from tests.pulumi_harness import TEST_API_TOKEN, TEST_PRIVATE_KEY, TEST_STATS_PASSWORD

__all__ = [
    "BUNDLED_WITH_CLI",
    "EXECUTE_ENV",
    "PASSPHRASE",
    "PLUGINS",
    "REPO",
    "SECRETS",
    "STACK",
    "Engine",
    "Result",
    "Workspace",
    "built_dir",
    "engine",
    "find_engine",
    "versions",
]

# The secrets every stack of these tests sets, and the plain-text values that must never leak.
SECRETS = {
    "haproxy-lab:statsPassword": TEST_STATS_PASSWORD,
    "haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY,
    "proxmoxve:apiToken": TEST_API_TOKEN,
}


def engine() -> Engine:
    """The engine, or the test fails naming what to run. Skipped only outside CI on a machine with neither Go
    (tools/build-pulumi.sh) nor an installed engine: under CI (.ci/run, the users' workflow) a missing engine
    is a failure, never a skip."""
    found = find_engine()
    if found is not None:
        return found
    message = (
        f"no Pulumi engine: neither built in {built_dir()} (run tools/build-pulumi.sh) nor installed the ordinary "
        f"way (pulumi {versions()['PULUMI_VERSION']} on PATH and its plugins: docs/engine.md)"
    )
    if os.environ.get("CI") or shutil.which("go") or Path("/usr/local/go/bin/go").is_file():
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pragma: no cover


class Workspace(runner.Workspace):
    """e2e.engine.Workspace for tests: a failed or stuck pulumi command fails the test with its output."""

    def pulumi(self, *args: str, stdin: str | None = None, check: bool = True, timeout: int = 240) -> Result:
        try:
            return super().pulumi(*args, stdin=stdin, check=check, timeout=timeout)
        except EngineError as error:
            pytest.fail(str(error))

    def init_stack(
        self, endpoint: str, config: dict[str, Any] | None = None, *, secrets: Mapping[str, str] | None = None
    ) -> None:
        super().init_stack(endpoint, config, secrets=SECRETS if secrets is None else secrets)

    def planned_order(self) -> list[tuple[str, str]]:
        """(op, resource name) of every step a preview plans but `same`, in the engine's order (its event log:
        the program registers a resource only once its dependencies' registrations returned)."""
        log = self.root / "events.jsonl"
        log.unlink(missing_ok=True)
        self.pulumi("preview", "--stack", self.stack, "--event-log", str(log))
        ops = []
        for line in log.read_text().splitlines():
            event = json.loads(line).get("resourcePreEvent")
            if event and event["metadata"]["op"] != "same":
                ops.append((event["metadata"]["op"], event["metadata"]["urn"].rsplit("::", 1)[1]))
        return ops
