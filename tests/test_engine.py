"""The real Pulumi engine on the real program: `pulumi preview` with the CLI, the language host and the
provider plugins that tools/build-pulumi.sh builds (README, "The real engine").

Every stack points proxmoxve:endpoint at a fake Proxmox API on loopback (tests/fake_proxmox.py); the
state lives in a temp file backend, secrets are encrypted with a passphrase. Plans of changes start
from a state imported with `pulumi stack import` (built from the engine's own plan, see
`imported_workspace`), so nothing is ever created anywhere.
"""

from __future__ import annotations

import copy
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.engine_harness import (
    REPO,
    SECRETS,
    STACK,
    Result,
    Workspace,
    engine_bin,
    versions,
)
from tests.fake_proxmox import FakeProxmox, fake_proxmox
from tests.pulumi_harness import run_program, stack_config

pytestmark = pytest.mark.timeout(600)

VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"
IMAGE = "proxmoxve:download/file:File"
RULES = "proxmoxve:firewall/rulesLegacy:RulesLegacy"
OPTIONS = "proxmoxve:firewall/optionsLegacy:OptionsLegacy"
COMMAND = "command:remote:Command"
COPY = "command:remote:CopyToRemote"
UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's marker for a value known only after apply
SECRET_SIG = "4dabf18193072939515e22adb298388d"


def dev_plan() -> dict[str, Any]:
    config = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    return {k.removeprefix("haproxy-lab:"): v for k, v in config.items() if k.startswith("haproxy-lab:")}


def servers(count: int) -> list[dict[str, Any]]:
    return [
        {"name": f"WEB{i}-SAM", "ip": f"10.0.0.{30 + i}", "message": f"Serveur {i}", "vmId": 130 + i}
        for i in range(1, count + 1)
    ]


@pytest.fixture(scope="module")
def bin_dir() -> Path:
    return engine_bin()


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeProxmox]:
    with fake_proxmox(tmp_path) as running:
        yield running


@pytest.fixture
def workspace(tmp_path: Path, bin_dir: Path) -> Workspace:
    return Workspace(tmp_path / "ws", bin_dir)


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
def test_preview_plans_exactly_the_expected_creates(workspace: Workspace, fake: FakeProxmox, count: int) -> None:
    plan = dev_plan()
    plan["webServers"] = servers(count)
    workspace.init_stack(fake.endpoint, {"haproxy-lab:webServers": plan["webServers"]})
    result = workspace.preview()
    ops = steps_by_op(result)
    assert set(ops) == {"create"}, f"only creates expected, got {sorted(ops)}"
    creates = Counter(type_of(s) for s in ops["create"])
    assert creates == expected_creates(plan)
    assert creates[VM] == count + 1
    assert creates[SNIPPET] == count + 1
    assert creates[IMAGE] == 1
    assert creates[RULES] == creates[OPTIONS] == count + 1


# ------------------------------------------------------------------------------------------- refusals


def test_bad_config_fails_preview_with_the_programs_message(workspace: Workspace, fake: FakeProxmox) -> None:
    bad = servers(2)
    bad[1]["ip"] = bad[0]["ip"]
    workspace.init_stack(fake.endpoint, {"haproxy-lab:webServers": bad})
    result = workspace.pulumi("preview", "--stack", STACK, check=False)
    assert result.returncode != 0
    assert "haproxy-lab:webServers[1].ip: 10.0.0.31 is already used by webServers[0]" in result.output
    assert "Traceback" not in result.output
    assert fake.requests == []


def test_the_provider_plugin_validates_what_the_program_passes_through(workspace: Workspace, fake: FakeProxmox) -> None:
    """bpg's provider schema refuses an endpoint that is not http(s) (validation.IsURLWithHTTPorHTTPS).
    The program never reads proxmoxve:endpoint, so only the plugin's CheckConfig can refuse it."""
    endpoint = fake.endpoint.replace("https://", "ftp://")
    workspace.init_stack(endpoint)
    result = workspace.pulumi("preview", "--stack", STACK, check=False)
    assert result.returncode != 0
    assert re.search(
        r'expected "endpoint" to have a url with schema of: "http,https", got ftp://127\.0\.0\.1', result.output
    )
    assert "Traceback" not in result.output


# -------------------------------------------------------------------------------------------- secrets


def assert_no_plain_secret(where: str, text: str) -> None:
    for key, value in SECRETS.items():
        for fragment in {value, value.strip(), *value.strip().splitlines()[1:2]}:
            assert fragment not in text, f"{key} in plain text in {where}"


def test_no_secret_in_plain_text_in_preview_output_or_backend(workspace: Workspace, fake: FakeProxmox) -> None:
    workspace.init_stack(fake.endpoint)
    result = workspace.preview()
    assert_no_plain_secret("pulumi preview --json", result.output)
    assert_no_plain_secret("the stack file", workspace.stack_file.read_text())
    for path in workspace.state.rglob("*"):
        if path.is_file():
            assert_no_plain_secret(str(path), path.read_text(errors="replace"))


# ------------------------------------------------------------------------------- plans of changes


def _at(value: Any, path: list[Any]) -> Any:
    for part in path:
        if (isinstance(value, dict) and part in value) or (
            isinstance(value, list) and isinstance(part, int) and part < len(value)
        ):
            value = value[part]
        else:
            return None
    return value


def _known(value: Any, mocked: Any, path: list[Any]) -> Any:
    """`value` with every unknown replaced by what the mocks run computed at the same place."""
    if value == UNKNOWN:
        found = _at(mocked, path)
        return "placeholder" if found is None else found
    if isinstance(value, dict):
        return {k: _known(v, mocked, [*path, k]) for k, v in value.items()}
    if isinstance(value, list):
        return [_known(v, mocked, [*path, i]) for i, v in enumerate(value)]
    return value


def _secret_wrapped(value: Any) -> Any:
    """Values holding one of our secrets become state secrets (the engine re-encrypts them on import)."""
    if isinstance(value, dict):
        if SECRET_SIG in value:
            return value
        return {k: _secret_wrapped(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_secret_wrapped(v) for v in value]
    if isinstance(value, str) and any(s.strip() in value for s in SECRETS.values()):
        return {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "plaintext": json.dumps(value)}
    return value


def _resource_id(state: dict[str, Any], inputs: dict[str, Any]) -> str:
    name = state["urn"].rsplit("::", 1)[1]
    kind = state["type"]
    if kind.startswith("pulumi:providers:"):
        return "00000000-0000-0000-0000-000000000000"
    if kind == VM:
        return str(inputs["vmId"])
    if kind == IMAGE:
        return f"{inputs['datastoreId']}:import/{inputs['fileName']}"
    if kind == SNIPPET:
        return f"{inputs['datastoreId']}:snippets/{inputs['sourceRaw']['fileName']}"
    return f"{name}-id"


def import_planned_state(workspace: Workspace, plan: dict[str, Any]) -> None:
    """Give the engine the state a successful `pulumi up` of this stack would leave, without Proxmox.

    The engine's own plan (`preview --json --show-secrets`) gives every resource's checked inputs
    (with the providers' defaults), parent, provider and dependencies; values known only after apply
    are taken from a mocks run of the same program (ids as Proxmox forms them); outputs = inputs + id.
    """
    planned = workspace.preview("--show-secrets")
    config, secret_keys = stack_config(plan)
    mocked = {r.urn: r.inputs for r in run_program(config, secret_keys).resources}
    exported = workspace.pulumi("stack", "export", "--stack", STACK).json()
    resources = []
    ids: dict[str, str] = {}
    for step in planned.json()["steps"]:
        state = copy.deepcopy(step["newState"])
        inputs = _known(state.get("inputs", {}), mocked.get(state["urn"], {}), [])
        if state.get("custom"):
            ids[state["urn"]] = _resource_id(state, inputs)
            state["id"] = ids[state["urn"]]
            state["outputs"] = {**inputs, "id": state["id"]}
        else:
            state["outputs"] = {}
        state["inputs"] = inputs
        resources.append(state)
    for state in resources:
        provider = state.get("provider", "")
        if provider:
            urn = provider.rsplit("::", 1)[0]
            state["provider"] = f"{urn}::{ids[urn]}"
        state["inputs"] = _secret_wrapped(state["inputs"])
        state["outputs"] = _secret_wrapped(state["outputs"])
    exported["deployment"]["resources"] = resources
    deployment = workspace.root / "deployment.json"
    deployment.write_text(json.dumps(exported))
    workspace.pulumi("stack", "import", "--stack", STACK, "--file", str(deployment))


@pytest.fixture
def deployed(workspace: Workspace, fake: FakeProxmox) -> Workspace:
    """The dev stack, as if deployed: state imported, nothing to change."""
    workspace.init_stack(fake.endpoint)
    import_planned_state(workspace, dev_plan())
    return workspace


def test_an_unchanged_stack_plans_nothing(deployed: Workspace) -> None:
    assert changed(deployed.preview()) == {}


def test_a_web_message_change_reruns_that_servers_deploy_only(deployed: Workspace) -> None:
    web = servers(2)
    web[1]["message"] = "Serveur 2 (v2)"
    deployed.set_config("haproxy-lab:webServers", web)
    plan = changed(deployed.preview())
    touched = sorted(name for names in plan.values() for name in names)
    assert touched, "a new message must change something"
    assert all("WEB2" in name.upper() for name in touched), plan
    assert not any(t for t in touched if "vm" in t.lower() and "deploy" not in t.lower()), plan


def test_a_stats_password_change_reruns_the_lb_config_command_only(deployed: Workspace) -> None:
    deployed.set_config("haproxy-lab:statsPassword", "another-Stats-Pa55word", secret=True)
    plan = changed(deployed.preview())
    touched = sorted(name for names in plan.values() for name in names)
    assert touched, "a new password must change the load balancer's config"
    assert all(name.upper().startswith("HAPROXY") or "lb" in name.lower() for name in touched), plan
    assert all("config" in name.lower() or "cfg" in name.lower() for name in touched), plan


def test_a_vm_id_change_replaces_that_vm_delete_before_replace(deployed: Workspace) -> None:
    web = servers(2)
    web[0]["vmId"] = 231
    deployed.set_config("haproxy-lab:webServers", web)
    result = deployed.preview()
    ops = steps_by_op(result)
    replaced = [s for s in ops.get("delete-replaced", []) + ops.get("replace", []) if type_of(s) == VM]
    assert {name_of(s) for s in replaced} == {name_of(s) for s in ops.get("replace", []) if type_of(s) == VM}
    assert [type_of(s) for s in ops.get("replace", []) if type_of(s) == VM] == [VM], changed(result)
    vm_replace = next(s for s in ops["replace"] if type_of(s) == VM)
    assert "WEB1" in name_of(vm_replace).upper()
    # delete-before-replace: the engine deletes the old VM first (a `delete-replaced` step before `create-replacement`).
    order = [s["op"] for s in result.json()["steps"] if s["urn"] == vm_replace["urn"]]
    assert "delete-replaced" in order, order
    assert order.index("delete-replaced") < order.index("create-replacement"), order


def test_an_ssh_key_change_recreates_every_vm(deployed: Workspace) -> None:
    """README, Updates: the SSH key lives in cloud-init; changing it re-creates the VMs."""
    ssh = dev_plan()["ssh"]
    ssh["publicKey"] = ssh["publicKey"].replace("AAAAIH0", "AAAAIH1")
    deployed.set_config("haproxy-lab:ssh", ssh)
    ops = steps_by_op(deployed.preview())
    replaced_vms = {name_of(s) for s in ops.get("replace", []) if type_of(s) == VM}
    assert len(replaced_vms) == 3, changed(deployed.preview())
