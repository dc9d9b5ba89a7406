"""The upgrade from an existing stack: the dev stack as main at ca181c7 deployed it (the state its `pulumi up`
would leave, built by tests/engine_state.py from that commit's program and stored in tests/data/), previewed
by today's program with the real engine.

No resource may be created, deleted or renamed (URNs and type tokens stay); the VMs are updated in place to
drop the host's CD drive (issue 20), and every remote command runs once more, as the README's "No step
hangs." says: each command line now carries its step's VM-side time bound (an update, which re-runs the
same script), and the steps whose shipped text changed are replaced (their triggers hold the text's hash).
Each step is idempotent: the haproxy.cfg it ships is byte-identical, and the web servers' rollout goes one
at a time (the bundle's compose.yaml names the project the VMs already run under,
tests/test_deploy_webapp.py's upgrade test).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pytest

from e2e.pve_running import running_pve
from tests.engine_harness import REPO, Engine, Workspace
from tests.engine_state import import_state
from tests.pulumi_harness import VM

pytestmark = pytest.mark.timeout(600)

MAIN_STATE = REPO / "tests" / "data" / "main-ca181c7-dev-state.json.gz"
COMMAND = "command:remote:Command"


def main_state() -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = json.loads(gzip.decompress(MAIN_STATE.read_bytes()))
    return resources


def test_a_stack_deployed_by_main_plans_only_the_stated_reruns(tmp_path: Path, pulumi_engine: Engine) -> None:
    with running_pve(tmp_path / "fake") as fake:
        workspace = Workspace(tmp_path / "ws", pulumi_engine)
        workspace.init_stack(fake.endpoint)
        import_state(workspace, main_state())
        steps = workspace.preview().json()["steps"]
        assert fake.requests() == []
    ops: dict[str, set[str]] = {}
    for step in steps:
        ops.setdefault(step["op"], set()).add(step["urn"].rsplit("::", 1)[1])
    # Issue 18 turned TLS on in the dev stack: its certificate and the step installing it are new, nothing else.
    assert ops.pop("create", set()) == {"haproxy-lab-certificate", "haproxy-lab-haproxy-sam-apply-tls-cert"}
    # A renamed or retyped resource would be a create plus a delete.
    assert set(ops) <= {"same", "replace", "update"}, {op: sorted(names) for op, names in ops.items() if op != "same"}
    state = main_state()
    commands = {resource["urn"].rsplit("::", 1)[1] for resource in state if resource["type"] == COMMAND}
    vms = {resource["urn"].rsplit("::", 1)[1] for resource in state if resource["type"] == VM}
    # ... and the load balancer's firewall gains the HTTPS rule (updated in place, last in its list).
    firewall = "haproxy-lab-haproxy-sam-machine-firewall-rules"
    assert ops.get("replace", set()) | ops.get("update", set()) == commands | vms | {firewall}
    assert firewall in ops["update"]
    # The VMs only lose the host's CD drive (docs/e2e.md, "The CD-ROM"): in place, nothing else.
    for step in steps:
        if step["op"] == "update" and step["urn"].rsplit("::", 1)[1] in vms:
            assert set(step["detailedDiff"]) == {"cdrom.fileId"}, step["detailedDiff"]
