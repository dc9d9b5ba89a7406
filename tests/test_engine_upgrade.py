"""The upgrade from an existing stack: the dev stack as main at ca181c7 deployed it (the state its `pulumi up`
would leave, built by tests/engine_state.py from that commit's program and stored in tests/data/), previewed
by today's program with the real engine.

No resource may be deleted or renamed (URNs and type tokens stay), and only the rolling steps of issue 17 are
created (they run nothing but the load balancer's `back`, which finds HAProxy answering); the VMs are updated
in place to drop the host's CD drive (issue 20), and every remote command runs once more, as the README's "No
step hangs." says: each command line now carries its step's VM-side time bound (an update, which re-runs the
same script), and the steps whose shipped text changed are replaced (their triggers hold the text's hash).
Each step is idempotent: the haproxy.cfg it ships is byte-identical, and the web servers' rollout goes one at
a time (the bundle's compose.yaml names the project the VMs already run under, tests/test_deploy_webapp.py's
upgrade test).
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
# main at d105d6f (the program before issue 17's rolling order), deployed: built the same way.
BEFORE_ROLLING = REPO / "tests" / "data" / "main-d105d6f-dev-state.json.gz"
COMMAND = "command:remote:Command"


def main_state(path: Path = MAIN_STATE) -> list[dict[str, Any]]:
    resources: list[dict[str, Any]] = json.loads(gzip.decompress(path.read_bytes()))
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
    # A renamed or retyped resource would be a create plus a delete.
    assert set(ops) <= {"same", "replace", "update", "create"}, {
        op: sorted(names) for op, names in ops.items() if op != "same"
    }
    # New: the rolling steps (issue 17): each web server's pause on the load balancer, the load balancer's back;
    # TLS turned on in the dev stack (issue 18): its certificate and the step installing it. A pause runs
    # nothing on create; back waits for HAProxy, which answers at once.
    new_steps = {f"haproxy-lab-{web}-pause" for web in ("web1-sam", "web2-sam")}
    tls = {"haproxy-lab-certificate", "haproxy-lab-haproxy-sam-apply-tls-cert"}
    assert ops.get("create", set()) == {*new_steps, "haproxy-lab-haproxy-sam-back", *tls}
    for step in steps:
        if step["op"] == "create" and step["urn"].split("::")[-1] not in tls:
            assert "create" not in step["newState"]["inputs"] or step["urn"].endswith("-back"), step["urn"]
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


def test_a_stack_deployed_before_the_rolling_order_gains_its_steps_and_replaces_no_vm(
    tmp_path: Path, pulumi_engine: Engine
) -> None:
    """The next `pulumi up` of a stack built by main before issue 17 (d105d6f): the rolling steps are created
    (the pauses run nothing, back finds HAProxy answering), each web server's ready runs once more (the
    disruption fingerprint joined its triggers; the server is UP: it returns at once), plus what turning TLS on
    brings; no VM is updated or replaced. The stack's outputs then say it is deployed: the up after is rolling."""
    with running_pve(tmp_path / "fake") as fake:
        workspace = Workspace(tmp_path / "ws", pulumi_engine)
        workspace.init_stack(fake.endpoint)
        import_state(workspace, main_state(BEFORE_ROLLING))
        steps = workspace.preview().json()["steps"]
        assert fake.requests() == []
    ops: dict[str, set[str]] = {}
    for step in steps:
        ops.setdefault(step["op"], set()).add(step["urn"].rsplit("::", 1)[1])
    webs = ("web1-sam", "web2-sam")
    # TLS came on in the dev stack too (issue 18): the certificate, its step, haproxy.cfg applied again with
    # the HTTPS bind, the firewall's HTTPS rule, and each server's drain re-run (the HAProxy CLI helper changed).
    tls = {"haproxy-lab-certificate", "haproxy-lab-haproxy-sam-apply-tls-cert"}
    assert ops.pop("create") == {
        *(f"haproxy-lab-{web}-pause" for web in webs),
        "haproxy-lab-haproxy-sam-back",
        *tls,
    }
    for step in steps:
        if step["op"] == "create" and not step["urn"].endswith("-back") and step["urn"].split("::")[-1] not in tls:
            assert "create" not in step["newState"]["inputs"], f"{step['urn']} would run at the upgrade"
    assert ops.pop("replace") == {
        *(f"haproxy-lab-{web}-{step}" for web in webs for step in ("drain", "ready")),
        "haproxy-lab-haproxy-sam-apply-haproxy-cfg",
    }
    assert ops.pop("update") == {"haproxy-lab-haproxy-sam-machine-firewall-rules"}
    assert set(ops) == {"same"}, ops
