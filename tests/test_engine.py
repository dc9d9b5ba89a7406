"""The real Pulumi engine on the real program: `pulumi preview` with the CLI, the language host and the
provider plugins, built by tools/build-pulumi.sh or installed the ordinary way (docs/engine.md).

Every stack points proxmoxve:endpoint at the fake Proxmox node on loopback (e2e/pve_running.py); the
state lives in a temp file backend, secrets are encrypted with a passphrase. Plans of changes start
from a state imported with `pulumi stack import` (built from the engine's own plan, see
tests/engine_state.py), so nothing is ever created anywhere, and no remote command ever runs.
"""

from __future__ import annotations

import copy
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.pve_running import RunningPve, running_pve
from tests.engine_harness import (
    REPO,
    SECRETS,
    STACK,
    Engine,
    Result,
    Workspace,
    versions,
)
from tests.engine_state import import_planned_state, import_state
from tests.lab_harness import as_before_the_cdrom_fix, with_the_cdrom_fix
from tests.pulumi_harness import IMAGE, OPTIONS, RULES, SNIPPET, VM, run_program, stack_config

pytestmark = pytest.mark.timeout(600)
NO_API_CALL = "preview called the Proxmox API: list the calls in docs/engine.md"


def dev_plan() -> dict[str, Any]:
    config = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    return {k.removeprefix("haproxy-lab:"): v for k, v in config.items() if k.startswith("haproxy-lab:")}


def servers(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"WEB{i}-SAM", "ip": f"10.0.0.{30 + i}", "message": f"Serveur {i}", "vmId": 130 + i}
        for i in range(1, count + 1)
    ]


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPve]:
    """One fake Proxmox node for the module: the same endpoint in every stack (it is provider config);
    fakepve logs every request it gets."""
    with running_pve(tmp_path_factory.mktemp("fake-pve")) as running:
        yield running


@pytest.fixture
def workspace(tmp_path: Path, pulumi_engine: Engine) -> Workspace:
    return Workspace(tmp_path / "ws", pulumi_engine)


def steps_by_op(result: Result) -> dict[str, list[dict[str, Any]]]:
    ops: dict[str, list[dict[str, Any]]] = {}
    for step in result.json().get("steps", []):
        ops.setdefault(step["op"], []).append(step)
    return ops


def type_of(step: dict[str, Any]) -> str:
    return str((step.get("newState") or step.get("oldState") or {}).get("type") or step["urn"].split("::")[2])


def name_of(step: dict[str, Any]) -> str:
    return str(step["urn"].rsplit("::", 1)[1])


def changed(result: Result) -> dict[str, list[str]]:
    """op -> sorted resource names, for every step that is not `same`."""
    out: dict[str, list[str]] = {}
    for op, steps in steps_by_op(result).items():
        if op != "same":
            out[op] = sorted(name_of(s) for s in steps)
    return out


# ---------------------------------------------------------------------------------------------- pins


def test_versions_are_pinned_in_one_place() -> None:
    """versions.env is the reference; constraints.txt and the wrapper modules' go.mod agree with it."""
    pins = versions()
    constraints = dict(
        line.split("==", 1)
        for line in (REPO / "constraints.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    )
    assert constraints["pulumi"] == pins["PULUMI_PY_VERSION"]
    assert constraints["pulumi_proxmoxve"] == pins["PROXMOXVE_PY_VERSION"]
    assert constraints["pulumi_command"] == pins["COMMAND_PY_VERSION"]

    def requires(module_dir: str) -> dict[str, str]:
        text = (REPO / "tools" / "pulumi-engine" / module_dir / "go.mod").read_text()
        return dict(re.findall(r"^\s*(\S+) (v\S+)(?: // indirect)?$", text, re.MULTILINE))

    assert requires("cli")["github.com/pulumi/pulumi/pkg/v3"] == f"v{pins['PULUMI_VERSION']}"
    assert requires("standins")["github.com/pulumi/pulumi/sdk/v3"] == f"v{pins['PULUMI_VERSION']}"
    proxmoxve = requires("proxmoxve")
    assert proxmoxve["github.com/bpg/terraform-provider-proxmox"] == f"v{pins['BPG_PROXMOX_VERSION']}"
    assert proxmoxve["github.com/pulumi/pulumi-terraform-bridge/v3"] == f"v{pins['TF_BRIDGE_VERSION']}"
    assert proxmoxve["github.com/pulumi/pulumi/sdk/v3"] == f"v{pins['BRIDGE_PULUMI_VERSION']}"


def test_engine_reports_the_pinned_version(workspace: Workspace) -> None:
    assert workspace.pulumi("version").stdout.strip() == f"v{versions()['PULUMI_VERSION']}"


# ------------------------------------------------------------------------------------------- creates


def expected_creates(plan: dict[str, Any]) -> Counter[str]:
    """What the program registers under mocks, by type, plus the stack (default providers are not steps)."""
    config, secret_keys = stack_config(plan)
    registered = Counter(r.type for r in run_program(config, secret_keys).resources)
    registered.update(["pulumi:pulumi:Stack"])
    return registered


@pytest.mark.parametrize("count", [1, 2, 4])
def test_preview_plans_exactly_the_expected_creates(workspace: Workspace, fake: RunningPve, count: int) -> None:
    plan = dev_plan()
    plan["webServers"] = servers(count)
    workspace.init_stack(fake.endpoint, {"haproxy-lab:webServers": plan["webServers"]})
    result = workspace.preview()
    ops = steps_by_op(result)
    # The program's read of its own stack's outputs (components/rolling.py) is an invoke: no step.
    assert set(ops) == {"create"}, f"only creates expected, got {sorted(ops)}"
    creates = Counter(type_of(s) for s in ops["create"])
    assert creates == expected_creates(plan)
    assert creates[VM] == count + 1
    assert creates[SNIPPET] == count + 1
    assert creates[IMAGE] == 1
    assert creates[RULES] == creates[OPTIONS] == count + 1
    assert fake.requests() == [], NO_API_CALL


# ------------------------------------------------------------------------------------------- refusals


def test_bad_config_fails_preview_with_the_programs_message(workspace: Workspace, fake: RunningPve) -> None:
    bad = servers(2)
    bad[1]["ip"] = bad[0]["ip"]
    workspace.init_stack(fake.endpoint, {"haproxy-lab:webServers": bad})
    result = workspace.pulumi("preview", "--stack", STACK, check=False)
    assert result.returncode != 0
    assert "haproxy-lab:webServers[1].ip: 10.0.0.31 is already used by webServers[0]" in result.output
    assert "Traceback" not in result.output
    assert fake.requests() == []


def test_the_provider_plugin_validates_what_the_program_passes_through(workspace: Workspace, fake: RunningPve) -> None:
    """bpg's provider schema refuses an endpoint that is not http(s) (validation.IsURLWithHTTPorHTTPS).
    The program never reads proxmoxve:endpoint, so only the plugin's CheckConfig can refuse it."""
    endpoint = fake.endpoint.replace("https://", "ftp://")
    workspace.init_stack(endpoint)
    result = workspace.pulumi("preview", "--stack", STACK, check=False)
    assert result.returncode != 0
    refusal = r'expected "endpoint" to have a url with schema of: "http,https", got ftp://127\.0\.0\.1'
    assert re.search(refusal, result.output), result.output[-3000:]
    # No "no traceback" check here: the engine stops while the SDK still has registrations in flight, and
    # the SDK's runner may print their RPC errors (it is Pulumi's own runner script, same with its host).


# -------------------------------------------------------------------------------------------- secrets


NEW_STATS_PASSWORD = "another-Stats-Pa55word"


def assert_no_plain_secret(where: str, text: str) -> None:
    for key, value in {**SECRETS, "a new statsPassword": NEW_STATS_PASSWORD}.items():
        for fragment in {value, value.strip(), *value.strip().splitlines()[1:2]}:
            assert fragment not in text, f"{key} in plain text in {where}"


def test_no_secret_in_plain_text_in_preview_output_or_backend(workspace: Workspace, fake: RunningPve) -> None:
    workspace.init_stack(fake.endpoint)
    result = workspace.preview()
    assert_no_plain_secret("pulumi preview --json", result.output)
    assert_no_plain_secret("the stack file", workspace.stack_file.read_text())
    for path in workspace.state.rglob("*"):
        if path.is_file():
            assert_no_plain_secret(str(path), path.read_text(errors="replace"))


# ------------------------------------------------------------------------------- plans of changes


@pytest.fixture(scope="module")
def dev_state(
    tmp_path_factory: pytest.TempPathFactory, pulumi_engine: Engine, fake: RunningPve
) -> list[dict[str, Any]]:
    """The dev stack's state as deployed, built once (tests/engine_state.py)."""
    workspace = Workspace(tmp_path_factory.mktemp("dev-state"), pulumi_engine)
    workspace.init_stack(fake.endpoint)
    return import_planned_state(workspace, dev_plan())


@pytest.fixture
def deployed(workspace: Workspace, fake: RunningPve, dev_state: list[dict[str, Any]]) -> Workspace:
    """A fresh dev stack whose state is the deployed one: the next preview plans changes only."""
    workspace.init_stack(fake.endpoint)
    import_state(workspace, copy.deepcopy(dev_state))
    return workspace


def test_an_unchanged_stack_plans_nothing(deployed: Workspace, fake: RunningPve) -> None:
    assert changed(deployed.preview()) == {}
    assert fake.requests() == [], NO_API_CALL


def test_no_secret_in_plain_text_in_a_deployed_stacks_backend(deployed: Workspace) -> None:
    """The imported state holds every secret (provider token, private key, rendered haproxy.cfg...):
    the backend keeps them encrypted, and a preview of changes shows none."""
    deployed.set_config("haproxy-lab:statsPassword", NEW_STATS_PASSWORD, secret=True)
    assert_no_plain_secret("pulumi preview --json", deployed.preview().output)
    for path in deployed.state.rglob("*"):
        if path.is_file():
            assert_no_plain_secret(str(path), path.read_text(errors="replace"))


def test_a_web_message_change_redeploys_that_server_only(deployed: Workspace) -> None:
    """The message is in the deploy step's triggers (a content hash): that server is drained, redeployed
    and made ready again (README, Updates: one server at a time); no VM, no other server, not the LB."""
    web = servers(2)
    web[1]["message"] = "Serveur 2 (v2)"
    deployed.set_config("haproxy-lab:webServers", web)
    steps = ("deploy-webapp", "drain", "ready")
    assert changed(deployed.preview()) == {"replace": [f"haproxy-lab-web2-sam-{step}" for step in steps]}


def test_a_stats_password_change_reruns_the_lb_config_command_only(deployed: Workspace) -> None:
    """The password is in haproxy.cfg: only the command that validates and applies it runs again."""
    deployed.set_config("haproxy-lab:statsPassword", NEW_STATS_PASSWORD, secret=True)
    assert changed(deployed.preview()) == {"replace": ["haproxy-lab-haproxy-sam-apply-haproxy-cfg"]}


def test_a_vm_id_change_replaces_that_vm_delete_before_replace(deployed: Workspace) -> None:
    """A new vmId replaces that VM only (bpg's ForceNew on vm_id), its firewall with it, and provisions
    the new instance again; the old VM goes first: it holds the static address, so create-before-delete
    would clash. Nothing of the other servers or the load balancer changes."""
    web = servers(2)
    web[0]["vmId"] = 231
    deployed.set_config("haproxy-lab:webServers", web)
    plan = changed(deployed.preview())
    assert "haproxy-lab-web1-sam-machine-vm" in plan.get("replace", []), plan
    touched = [name for names in plan.values() for name in names]
    assert all(name.startswith("haproxy-lab-web1-sam-") for name in touched), plan
    order = [op for op, name in deployed.planned_order() if name == "haproxy-lab-web1-sam-machine-vm"]
    assert order.index("delete-replaced") < order.index("create-replacement"), f"create-before-delete: {order}"


def _ssh_key_changed(deployed: Workspace) -> dict[str, list[str]]:
    ssh = dev_plan()["ssh"]
    ssh["publicKey"] = ssh["publicKey"].replace("AAAAIH0", "AAAAIH1")
    deployed.set_config("haproxy-lab:ssh", ssh)
    return changed(deployed.preview())


def test_an_ssh_key_change_recreates_every_vm(deployed: Workspace) -> None:
    """README, Updates: the SSH key lives in cloud-init (each VM's user-data snippet); changing it
    re-creates the snippets and the VMs."""
    plan = _ssh_key_changed(deployed)
    replaced = set(plan.get("replace", []))
    vms = {f"haproxy-lab-{host}-machine-vm" for host in ("haproxy-sam", "web1-sam", "web2-sam")}
    assert vms <= replaced, plan
    assert (
        len([name for name in replaced if "snippet" in name or "user-data" in name or "cloud-config" in name]) == 3
    ), plan


def test_a_recreated_vm_is_provisioned_again(deployed: Workspace) -> None:
    """A new VM from the new key is empty: its remote commands must run again (replace), not be kept."""
    plan = _ssh_key_changed(deployed)
    for host in ("haproxy-sam", "web1-sam", "web2-sam"):
        assert f"haproxy-lab-{host}-cloud-init" in plan.get("replace", []), plan


def test_the_cd_drive_fix_updates_an_existing_stacks_vms_in_place(workspace: Workspace, fake: RunningPve) -> None:
    """A stack built before the fix holds the provider's default CD drive (file "": the node's own drive).
    Its next `pulumi up` updates each VM in place to an empty drive: no VM is replaced, nothing else
    changes, and so no remote command runs again (tests/test_role.py applies it to VMs in the fake)."""
    workspace.init_stack(fake.endpoint)
    as_before_the_cdrom_fix(workspace)
    import_planned_state(workspace, dev_plan())
    with_the_cdrom_fix(workspace)
    result = workspace.preview()
    vms = [f"haproxy-lab-{host}-machine-vm" for host in ("haproxy-sam", "web1-sam", "web2-sam")]
    assert changed(result) == {"update": vms}
    for step in steps_by_op(result)["update"]:
        assert set(step["detailedDiff"]) == {"cdrom.fileId"}, step["detailedDiff"]
        assert step["oldState"]["inputs"]["cdrom"]["fileId"] == ""
        assert step["newState"]["inputs"]["cdrom"]["fileId"] == "none"
    assert fake.requests() == []
