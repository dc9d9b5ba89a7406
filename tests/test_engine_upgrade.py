"""The upgrade from an existing stack: the dev stack as main at ca181c7 deployed it (the state its `pulumi up`
would leave, built by tests/engine_state.py from that commit's program and stored in tests/data/), previewed
by today's program with the real engine.

No resource may be created, deleted or renamed (URNs and type tokens stay); only the remote commands whose
shipped text changed since run again, as the README's "Updates" says: the load balancer's config apply (its
script now includes lib/apply-config.sh; the haproxy.cfg it ships is byte-identical, so HAProxy sees no
change) and each web server's rollout, one at a time (drain, deploy, ready: the bundle's compose.yaml names
the project the VMs already run under, tests/test_scripts.py's upgrade test).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from tests.engine_harness import REPO, Engine, Workspace, engine
from tests.engine_state import import_state
from tests.fake_proxmox import fake_proxmox

pytestmark = pytest.mark.timeout(600)

MAIN_STATE = REPO / "tests" / "data" / "main-ca181c7-dev-state.json.gz"
RERUN = {
    "haproxy-lab-haproxy-sam-apply-haproxy-cfg",
    *(f"haproxy-lab-web{i}-sam-{step}" for i in (1, 2) for step in ("drain", "deploy-webapp", "ready")),
}


def main_state() -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = json.loads(gzip.decompress(MAIN_STATE.read_bytes()))
    return resources


@pytest.fixture(scope="module")
def pulumi_engine() -> Engine:
    return engine()


def test_a_stack_deployed_by_main_plans_only_the_stated_reruns(tmp_path: Path, pulumi_engine: Engine) -> None:
    (tmp_path / "fake").mkdir()
    with fake_proxmox(tmp_path / "fake") as fake:
        workspace = Workspace(tmp_path / "ws", pulumi_engine)
        workspace.init_stack(fake.endpoint)
        import_state(workspace, main_state())
        steps = workspace.preview().json()["steps"]
        assert fake.requests == []
    ops: dict[str, set[str]] = {}
    for step in steps:
        ops.setdefault(step["op"], set()).add(step["urn"].rsplit("::", 1)[1])
    # A renamed or retyped resource would be a create plus a delete.
    assert set(ops) <= {"same", "replace"}, {op: sorted(names) for op, names in ops.items() if op != "same"}
    assert ops.get("replace", set()) == RERUN
