"""A deployed stack's state for the real engine, without Proxmox: built from the engine's own plan.

`import_planned_state` gives the engine the state a successful `pulumi up` would leave, so that a
following `pulumi preview` plans changes (updates, replacements) instead of creates:

1. `pulumi preview --json` of the empty stack gives every resource's checked inputs (with the
   providers' defaults), parent, provider and dependencies; its event log, the ids a provider mints
   in a preview (pulumi-command does, and the program saw them);
2. what only Proxmox or a run would know (other ids, secrets, values known after apply) comes from a
   mocks run of the same program (tests/pulumi_harness.py), ids formed as Proxmox forms them;
3. that state is imported (`pulumi stack import`), then previewed: each resource the provider still
   wants to change gets the provider's own planned outputs as its outputs, and is imported again, until
   nothing changes (a few rounds: the first one fills the attributes the provider computes).

Default providers are not steps of a preview: their state is their package's stack config.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from plan.parse import parse_lab_config
from tests.engine_harness import Workspace
from tests.pulumi_harness import VM, run_program, stack_config

UNKNOWN = "04da6b54-80e4-46f7-96ec-b56ff0331ba9"  # the engine's marker for a value known only after apply
SECRET_SIG = "4dabf18193072939515e22adb298388d"
SECRET_MARK = "1b47061264138c4ac30d75fd1eb44270"
HIDDEN = "[secret]"  # how `preview --json` shows a secret
PROVIDER_ID = "00000000-0000-0000-0000-000000000000"

# Values Proxmox computes, for attributes the provider plans as unknown until a real create.
COMPUTED_GUESSES: dict[str, Any] = {
    "bootOrders": ["virtio0", "net0"],
    "units": 100,
    "fileFormat": "raw",
    "pathInDatastore": "vm-100-disk-0",
    "macAddresses": [],
    "ipv4Addresses": [],
    "ipv6Addresses": [],
    "networkInterfaceNames": [],
    "size": 0,
}


def _unwrapped(value: Any) -> Any:
    while isinstance(value, dict) and value.get(SECRET_SIG) == SECRET_MARK:
        value = value.get("value")
    return value


def _at(value: Any, path: list[Any]) -> Any:
    for part in path:
        value = _unwrapped(value)
        in_dict = isinstance(value, dict) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and part < len(value)
        if not (in_dict or in_list):
            return None
        value = value[part]
    return value


def _plain(value: Any) -> Any:
    """A mocks-run value with its secret wrappers removed."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_MARK:
            return _plain(value.get("value"))
        return {k: _plain(v) for k, v in value.items() if v is not None}  # the engine drops null inputs
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _state_secret(value: Any) -> dict[str, str]:
    return {SECRET_SIG: SECRET_MARK, "plaintext": json.dumps(value)}


def _fill(value: Any, mocked: Any, path: list[Any]) -> Any:
    """`value` with unknowns and hidden secrets replaced by the mocks run's values (secrets kept secret)."""
    if value == HIDDEN:
        return _state_secret(_plain(_at(mocked, path)))
    if value == UNKNOWN:
        found = _at(mocked, path)
        if found is not None:
            return _plain(found)
        key = next((p for p in reversed(path) if isinstance(p, str)), "")
        return COMPUTED_GUESSES.get(key)
    if isinstance(value, dict):
        return {k: _fill(v, mocked, [*path, k]) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill(v, mocked, [*path, i]) for i, v in enumerate(value)]
    return value


def _with_mocked(value: Any, mocked: Any) -> Any:
    """`value` completed with what the mocks computed where it has nothing (a VM's MAC address...)."""
    mocked = _unwrapped(mocked)
    if isinstance(value, dict) and SECRET_SIG in value:
        return value  # already a state secret: keep it whole (and secret)
    if isinstance(value, dict) and isinstance(mocked, dict):
        merged = dict(value)
        for key, theirs in mocked.items():
            merged[key] = _plain(theirs) if merged.get(key) is None else _with_mocked(merged[key], theirs)
        return {k: v for k, v in merged.items() if v is not None}
    if isinstance(value, list) and isinstance(mocked, list) and len(value) == len(mocked):
        return [_with_mocked(mine, theirs) for mine, theirs in zip(value, mocked, strict=True)]
    return value


def _resource_id(kind: str, inputs: dict[str, Any], planned_id: str, mocked_id: str) -> str:
    """What the program saw as `.id` in the preview: the id the provider planned where it gives one
    (pulumi-command mints one even in a preview), else the mocks' id; Proxmox's form for a VM."""
    if kind == VM:
        return str(inputs["vmId"])  # bpg compares vm_id with the resource id (ForceNew on a change)
    return planned_id or mocked_id


def _default_providers(workspace: Workspace, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    config = workspace.pulumi("config", "--json", "--show-secrets", "--stack", workspace.stack).json()
    providers = []
    for urn in sorted({r["provider"].rsplit("::", 1)[0] for r in resources if r.get("provider")}):
        package = urn.split("::")[2].removeprefix("pulumi:providers:")
        # default_<version>[_<server>], or a bare `default` (pulumi-python's, for dynamic resources: no version).
        version, _, server = urn.rsplit("::", 1)[1].removeprefix("default").removeprefix("_").partition("_")
        inputs: dict[str, Any] = {}
        for key, entry in config.items():
            if key.startswith(f"{package}:"):
                name = key.split(":", 1)[1]
                inputs[name] = _state_secret(entry["value"]) if entry.get("secret") else entry["value"]
        if version:  # neither pulumi-python's nor the engine's builtin provider (the StackReference's) has one
            inputs["version"] = version.replace("_", ".")
        if server:
            inputs["pluginDownloadURL"] = server.replace("_/", "://", 1)
        providers.append(
            {"urn": urn, "custom": True, "id": PROVIDER_ID, "type": f"pulumi:providers:{package}", "inputs": inputs}
            | {"outputs": inputs}
        )
    return providers


def import_state(workspace: Workspace, resources: list[dict[str, Any]]) -> None:
    """Replace the stack's state by these resources (`pulumi stack import`; secrets in plain text are
    encrypted by the engine with the stack's own secrets provider)."""
    exported = workspace.pulumi("stack", "export", "--stack", workspace.stack).json()
    exported["deployment"]["resources"] = resources
    deployment = workspace.root / "deployment.json"
    deployment.write_text(json.dumps(exported))
    workspace.pulumi("stack", "import", "--stack", workspace.stack, "--file", str(deployment))


def deployed_outputs(plan: dict[str, Any]) -> dict[str, Any]:
    """The outputs this program leaves after deploying `plan`, which its next run reads back (__main__)."""
    lab = parse_lab_config(plan)
    return {"deployed": sorted(host.key for host in lab.hosts)}


def _stack_state(workspace: Workspace, outputs: dict[str, Any]) -> dict[str, Any]:
    """The stack's root resource holding `outputs` (what the program reads back with readStackOutputs)."""
    urn = f"urn:pulumi:{workspace.stack}::haproxy-lab::pulumi:pulumi:Stack::haproxy-lab-{workspace.stack}"
    return {"urn": urn, "custom": False, "type": "pulumi:pulumi:Stack", "outputs": dict(outputs)}


def import_planned_state(
    workspace: Workspace, plan: dict[str, Any], rounds: int = 3, *, deployed: bool = True
) -> list[dict[str, Any]]:
    """Import the state of this stack as deployed (see the module's docstring); return its resources.
    `deployed`: the stack's outputs say so (this program deployed it); else as a stack whose previous
    outputs the program does not find (one deployed before the rolling order: a new stack's plan)."""
    config, secret_keys = stack_config(plan)
    previous = deployed_outputs(plan) if deployed else None
    if previous is not None:
        # The program reads the stack's last outputs (readStackOutputs): the preview below must see them.
        import_state(workspace, [_stack_state(workspace, previous)])
    # By name (unique in this program): the mocks' URNs name only the direct parent's type.
    registered = {r.name: r for r in run_program(config, secret_keys, previous=previous).resources}
    mocked = {name: r.inputs for name, r in registered.items()}
    mocked_outputs = {name: r.outputs for name, r in registered.items()}
    by_urn: dict[str, dict[str, Any]] = {}
    log = workspace.root / "events.jsonl"
    log.unlink(missing_ok=True)
    steps = workspace.preview("--event-log", str(log)).json()["steps"]
    planned_ids = _planned_ids(log)
    for step in steps:
        state = copy.deepcopy(step["newState"])
        for noise in ("sourcePosition", "stackTrace"):
            state.pop(noise, None)
        state["inputs"] = _fill(state.get("inputs", {}), mocked.get(state["urn"].rsplit("::", 1)[1], {}), [])
        if state["type"] == "pulumi:pulumi:Stack":
            state = {**state, **_stack_state(workspace, previous or {})} if previous else {**state, "outputs": {}}
        elif state.get("custom"):
            name = state["urn"].rsplit("::", 1)[1]
            planned_id = planned_ids.get(state["urn"], "")
            state["id"] = _resource_id(state["type"], _plain(state["inputs"]), planned_id, registered[name].id)
            outputs = _with_mocked(state["inputs"], mocked_outputs.get(name, {}))
            state["outputs"] = {**outputs, "id": state["id"]}
        else:
            state["outputs"] = {}
        if state.get("provider"):
            state["provider"] = f"{state['provider'].rsplit('::', 1)[0]}::{PROVIDER_ID}"
        by_urn[state["urn"]] = state
    resources = list(by_urn.values())
    resources[1:1] = _default_providers(workspace, resources)
    import_state(workspace, resources)

    for _ in range(rounds):
        planned = _planned_outputs(workspace)
        if not planned:
            break
        for urn, outputs in planned.items():
            state = by_urn.get(urn)
            if state is not None and state.get("custom"):
                # Values the provider computes (a VM's MAC address...) as the mocks gave them to the program.
                filled = _fill(_state_secrets(outputs), mocked_outputs.get(urn.rsplit("::", 1)[1], {}), [])
                state["outputs"] = {**filled, "id": state["id"]}
        import_state(workspace, resources)
    return resources


def _state_secrets(value: Any) -> Any:
    """Event-log secrets in the state's form: {sig, value} -> {sig, plaintext}; a hidden one -> HIDDEN,
    for `_fill` to take from the mocks run."""
    if isinstance(value, dict):
        if value.get(SECRET_SIG) == SECRET_MARK:
            return _state_secret(_plain(value["value"])) if "value" in value else HIDDEN
        return {k: _state_secrets(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_state_secrets(v) for v in value]
    return value


def _planned_ids(log: Path) -> dict[str, str]:
    """urn -> the id a provider planned in a preview (`preview --json` does not show it; its event log does)."""
    ids = {}
    for line in log.read_text().splitlines():
        event = json.loads(line).get("resOutputsEvent")
        if event and (event["metadata"].get("new") or {}).get("id"):
            ids[event["metadata"]["urn"]] = event["metadata"]["new"]["id"]
    return ids


def _planned_outputs(workspace: Workspace) -> dict[str, dict[str, Any]]:
    """urn -> the provider's planned outputs, for every resource the next preview would change.

    The engine's event log carries them (`preview --json` shows outputs only for replacements)."""
    log = workspace.root / "events.jsonl"
    log.unlink(missing_ok=True)
    workspace.pulumi("preview", "--stack", workspace.stack, "--event-log", str(log), "--show-secrets")
    planned = {}
    for line in log.read_text().splitlines():
        event = json.loads(line).get("resOutputsEvent")
        if not event or event["metadata"]["op"] == "same":
            continue
        new = event["metadata"].get("new") or {}
        if new.get("outputs"):
            planned[event["metadata"]["urn"]] = new["outputs"]
    return planned


def forget_deployment(workspace: Workspace) -> None:
    """Drop the stack output that tells the program it deployed the stack (__main__: `deployed`), for runs
    that apply the Proxmox resources only: no remote command ran, so no VM was provisioned, and the next up
    must declare no rolling order (its steps would log in to them)."""
    exported = workspace.pulumi("stack", "export", "--stack", workspace.stack).json()
    for resource in exported["deployment"].get("resources") or []:
        if resource["type"] == "pulumi:pulumi:Stack":
            resource.get("outputs", {}).pop("deployed", None)
    deployment = workspace.root / "deployment.json"
    deployment.write_text(json.dumps(exported))
    workspace.pulumi("stack", "import", "--stack", workspace.stack, "--file", str(deployment))
