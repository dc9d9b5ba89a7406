"""The rows of the README's "Updates" table that tests/test_day2.py does not cover: what each kind of
change re-creates and runs again, compared between two evaluations under Pulumi's mocks."""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from typing import Any

import pytest

import render.webapp
from tests.change_diff import all_steps, changed, re_created_vms, re_run_steps
from tests.plans import dev_raw, raw_with_servers
from tests.program_harness import commands_of, evaluate, vm_named
from tests.pulumi_harness import REPO_ROOT, TEST_API_TOKEN, TEST_PRIVATE_KEY, VM, Run

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def dev_run() -> Run:
    return evaluate(dev_raw())


def test_an_app_change_rolls_out_to_every_server_one_at_a_time(dev_run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    original = render.webapp._read_webapp_file
    monkeypatch.setattr(
        render.webapp, "_read_webapp_file", lambda name: original(name) + ("# v2\n" if name == "app.py" else "")
    )
    after = evaluate(dev_raw())
    assert re_run_steps(dev_run, after) == {
        f"haproxy-lab-{host}-{step}"
        for host in ("web1-sam", "web2-sam")
        for step in ("drain", "deploy-webapp", "ready")
    }
    assert re_created_vms(dev_run, after) == set()


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: p["haproxy"].update(balance="leastconn"), id="balance"),
        pytest.param(lambda p: p["haproxy"].update(statsUser="ops"), id="statsUser"),
        pytest.param(lambda p: p["haproxy"].update(clientCidr="10.0.0.0/24"), id="clientCidr"),
    ],
)
def test_a_haproxy_setting_change_re_applies_only_the_config(
    dev_run: Run, mutate: Callable[[dict[str, Any]], None]
) -> None:
    after = changed(mutate)
    assert re_run_steps(dev_run, after) == {"haproxy-lab-haproxy-sam-apply-haproxy-cfg"}
    assert re_created_vms(dev_run, after) == set()


def test_a_stats_password_change_re_applies_only_the_config(dev_run: Run) -> None:
    secrets = {
        "haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY,
        "haproxy-lab:statsPassword": "another-Stats-Pa55word",
        "proxmoxve:apiToken": TEST_API_TOKEN,
    }
    after = evaluate(dev_raw(), secrets=secrets)
    assert re_run_steps(dev_run, after) == {"haproxy-lab-haproxy-sam-apply-haproxy-cfg"}


def test_adding_or_removing_a_web_server_touches_no_other_server() -> None:
    two, three = evaluate(raw_with_servers(2)), evaluate(raw_with_servers(3))
    added = {r.name for r in three.resources} - {r.name for r in two.resources}
    assert added
    assert all(name.startswith("haproxy-lab-web3-sam") for name in added)
    assert re_run_steps(two, three) == {
        "haproxy-lab-haproxy-sam-apply-haproxy-cfg",
        # its steps but its pauses (a new server is not served: nothing to take out of service)
        *(name for name in added if name in all_steps(three) and not name.endswith("pause")),
    }
    assert re_created_vms(two, three) == {"haproxy-lab-web3-sam-machine-vm"}
    # The new server is drained only once HAProxy's config lists it, and after the others' rollouts.
    drain = commands_of(three, "haproxy-lab-web3-sam")["drain"]
    waited = {three.by_urn(urn).name for urn in drain.dependencies}
    assert {"haproxy-lab-haproxy-sam-apply-haproxy-cfg", "haproxy-lab-web2-sam-ready"} <= waited
    # Removing it: only the config changes for what stays (the VM is deleted after the new config is applied).
    assert re_run_steps(three, two) == {"haproxy-lab-haproxy-sam-apply-haproxy-cfg"}


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda p: p["vm"].update(cores=4), id="cores"),
        pytest.param(lambda p: p["vm"].update(memoryMb=4096), id="memoryMb"),
        pytest.param(lambda p: p["vm"].update(diskGb=40), id="diskGb"),
        pytest.param(lambda p: p["network"].update(dns=["10.0.200.3"]), id="network.dns"),
    ],
)
def test_a_size_or_dns_change_updates_the_vms_in_place(
    dev_run: Run, mutate: Callable[[dict[str, Any]], None], request: pytest.FixtureRequest
) -> None:
    """cores, memory, disk size and DNS servers are updated in place: same instances, so nothing is
    provisioned again. The provider reboots the VM for cores, memory and cloud-init settings: each web server
    is drained before (pause) and set ready after, the load balancer waited for after (back); the disk grows
    online, nothing runs."""
    after = changed(mutate)
    assert re_created_vms(dev_run, after) == set()
    reboots = request.node.callspec.id != "diskGb"
    around_reboots = {f"haproxy-lab-{host}-{step}" for host in ("web1-sam", "web2-sam") for step in ("pause", "ready")}
    expected = {*around_reboots, "haproxy-lab-haproxy-sam-back"} if reboots else set()
    assert re_run_steps(dev_run, after) == expected


def test_a_vm_id_change_re_creates_that_vm_under_the_same_resource_names(dev_run: Run) -> None:
    after = changed(lambda p: p["webServers"][0].update(vmId=141))
    assert sorted(r.name for r in after.resources) == sorted(r.name for r in dev_run.resources)
    vm = vm_named(after, "WEB1-SAM")
    assert vm.inputs["vmId"] == 141  # vm_id is ForceNew (the provider's CustomizeDiff): a replacement
    assert vm.delete_before_replace


def test_a_new_boot_disk_interface_is_a_new_vm(dev_run: Run) -> None:
    for vm in dev_run.of_type(VM):
        assert vm.replace_on_changes == ["disks[*].interface"]


def test_every_test_the_updates_table_names_exists() -> None:
    """The README's "Updates" rows cite their tests by name: a renamed test must not leave a dead name."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Updates\n") : readme.index("## Security\n")]
    cited = set(re.findall(r"`(test_[a-z0-9_]+)", section))
    defined = {
        node.name
        for path in (REPO_ROOT / "tests").glob("test_*.py")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.FunctionDef)
    }
    assert len(cited) >= 15
    assert cited <= defined, f"cited but not defined: {sorted(cited - defined)}"


def e2e_rows() -> set[str]:
    """The row names of ./tools/e2e's table: the first text argument of each CheckResult(...) or change(lab, ...)
    call in e2e/."""
    names = set()
    for path in (REPO_ROOT / "e2e").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in ("CheckResult", "change")
            ):
                texts = [
                    arg.value for arg in node.args[:2] if isinstance(arg, ast.Constant) and isinstance(arg.value, str)
                ]
                names.update(texts[:1])
    return names


def test_every_e2e_row_the_updates_table_names_exists() -> None:
    """Rows the end-to-end run exercises cite its check by row name (`e2e: <row>`): it must be a row of the flow."""
    readme = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Updates\n") : readme.index("## Security\n")]
    cited = set(re.findall(r"`e2e: ([^`]+)`", section))
    assert len(cited) >= 7
    assert cited <= e2e_rows(), f"cited but not rows of ./tools/e2e: {sorted(cited - e2e_rows())}"
