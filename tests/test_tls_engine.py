"""The lab's certificate under the real engine: the dynamic resource of components/tls.py is created by
pulumi-resource-pulumi-python, its keys are secrets in the state, a second preview shows no change
(`--expect-no-changes`), and new names give a new server certificate from the same CA.

Fault seen failing: `diff` reporting a change every time (the second preview failed `--expect-no-changes`)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

from tests.engine_harness import REPO, STACK, Workspace, engine

pytestmark = pytest.mark.timeout(300)


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "source"
    shutil.copytree(Path(__file__).resolve().parent / "tls_project", source)
    for package in ("components", "plan", "render", "files"):
        shutil.copytree(REPO / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    return source


def test_the_certificate_is_kept_in_state_as_secrets_and_stays_put(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws", engine(), _source(tmp_path))
    workspace.pulumi("stack", "init", STACK)
    workspace.pulumi("up", "--yes", "--skip-preview", "--stack", STACK)
    first = workspace.pulumi("stack", "output", "--json", "--show-secrets", "--stack", STACK).json()
    assert first["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    plain = workspace.pulumi("stack", "output", "--json", "--stack", STACK).json()
    assert plain["privateKey"] == "[secret]"
    state = workspace.pulumi("stack", "export", "--stack", STACK).stdout
    assert "PRIVATE KEY" not in state, "both private keys are encrypted in the state"
    workspace.pulumi("preview", "--expect-no-changes", "--stack", STACK)
    workspace.pulumi("up", "--yes", "--skip-preview", "--stack", STACK)
    assert workspace.pulumi("stack", "output", "--json", "--show-secrets", "--stack", STACK).json() == first
    names = {"dns": ["haproxy-sam.mvgroup.local"], "ips": ["10.0.0.30", "10.0.0.33"]}
    with workspace.stack_file.open("a", encoding="utf-8") as stack_file:
        stack_file.write(yaml.safe_dump({"config": {"tls-certificate-test:names": names}}))
    workspace.pulumi("up", "--yes", "--skip-preview", "--stack", STACK)
    renewed = workspace.pulumi("stack", "output", "--json", "--show-secrets", "--stack", STACK).json()
    assert renewed["caCertificate"] == first["caCertificate"]
    assert renewed["serial"] != first["serial"]
