"""Run the real Pulumi program (__main__.py) under Pulumi's own mocks and record what it registers.

Why a recording monitor: mocks alone do not show a resource's parent or dependencies; the monitor's
RegisterResource request does, so tests can check that every child is parented and that each
remote command waits for what it must follow. Inputs are recorded with secrets still wrapped, as
the engine would see them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import runpy
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc  # type: ignore[import-untyped]  # no stubs in the environment
import pulumi
import pulumi.runtime
from pulumi.runtime import mocks as pulumi_mocks
from pulumi.runtime import rpc

from components.tls import issue_material
from render.certificates import KEY_TYPE

REPO_ROOT = Path(__file__).resolve().parent.parent
PROJECT = "haproxy-lab"

TEST_PRIVATE_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n"
    "b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW\n"
    "QyNTUxOQAAACBkZXYtc3RhY2stdGVzdC1rZXktbm90LWEtcmVhbC1vbmUtAAAA\n"
    "-----END OPENSSH PRIVATE KEY-----\n"
)
TEST_STATS_PASSWORD = "s3cret-Stats-Pa55word"
TEST_API_TOKEN = "terraform@pve!lab=00000000-1111-2222-3333-444444444444"


# The resource type tokens the program registers (the tests' one definition of them).
VM = "proxmoxve:index/vmLegacy:VmLegacy"
SNIPPET = "proxmoxve:index/fileLegacy:FileLegacy"
IMAGE = "proxmoxve:download/file:File"
COMMAND = "command:remote:Command"
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
RULES = "proxmoxve:firewall/rulesLegacy:RulesLegacy"
OPTIONS = "proxmoxve:firewall/optionsLegacy:OptionsLegacy"
CERTIFICATE = "pulumi-python:dynamic/tls:LabCertificate"


@functools.cache
def mock_certificate_material(dns_names: tuple[str, ...], ip_addresses: tuple[str, ...]) -> dict[str, str]:
    """What the certificate's dynamic provider would keep in state: one set per names for the whole test
    session, so two runs of the program see the same certificate (as the real provider's diff says)."""
    props = {"dns_names": list(dns_names), "ip_addresses": list(ip_addresses), "key_type": KEY_TYPE}
    return dict(issue_material(props, None))


@dataclass
class Registered:
    """One resource registration as the engine saw it."""

    urn: str
    type: str
    name: str
    parent: str
    custom: bool
    dependencies: list[str]
    inputs: dict[str, Any]
    delete_before_replace: bool = False
    custom_timeouts: dict[str, str] = field(default_factory=dict)
    replace_with: list[str] = field(default_factory=list)
    replace_on_changes: list[str] = field(default_factory=list)
    ignore_changes: list[str] = field(default_factory=list)
    id: str = ""
    """The id the mocks gave it (tests/engine_state.py builds a deployed state from them)."""
    outputs: dict[str, Any] = field(default_factory=dict)
    additional_secret_outputs: list[str] = field(default_factory=list)
    deleted_with: str = ""


@dataclass
class Run:
    """What one evaluation of the program registered and exported."""

    resources: list[Registered] = field(default_factory=list)
    exports: dict[str, Any] = field(default_factory=dict)

    def of_type(self, type_token: str) -> list[Registered]:
        return [r for r in self.resources if r.type == type_token]

    def named(self, name: str) -> Registered:
        matches = [r for r in self.resources if r.name == name]
        assert len(matches) == 1, f"expected one resource named {name!r}, got {len(matches)}"
        return matches[0]

    def by_urn(self, urn: str) -> Registered:
        return next(r for r in self.resources if r.urn == urn)


def sha256_of(value: Any) -> str:
    """A stable hash of a (possibly secret-wrapped) input object."""
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()


def unwrap(value: Any) -> Any:
    """The plain value of a possibly-secret input."""
    return rpc.unwrap_rpc_secret(value) if rpc.is_rpc_secret(value) else value


def is_secret(value: Any) -> bool:
    return bool(rpc.is_rpc_secret(value))


def mock_mac_address(vm_name: str, generation: int) -> str:
    """The MAC address Proxmox would generate for one instance of a VM (a new one per re-creation)."""
    digest = hashlib.sha256(f"{vm_name}#{generation}".encode()).digest()
    return ":".join(f"{octet:02X}" for octet in (0xBC, 0x24, 0x11, *digest[:3]))


class _EngineError(grpc.RpcError):  # type: ignore[misc]  # grpc is untyped here
    """An error the engine answers an invoke with, as gRPC gives it to the SDK (a status and its details)."""

    def __init__(self, details: str) -> None:
        super().__init__(details)
        self._details = details

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNKNOWN

    def details(self) -> str:
        return self._details


class _Mocks(pulumi.runtime.Mocks):
    """Outputs = inputs, plus what Proxmox and the command provider would generate: vmIds, file volume
    ids, a MAC address per VM instance (`recreated` names VMs that are new instances in this run), and
    a remote command id per create (like pulumi-command's random id: it changes when the command is
    replaced, i.e. when its inputs change)."""

    def __init__(
        self,
        recreated: frozenset[str] = frozenset(),
        previous: Mapping[str, Any] | None = None,
        unreadable_checkpoint: int = 0,
    ) -> None:
        self._next_vm_id = 9000
        self._recreated = recreated
        self._previous = dict(previous or {})
        self._unreadable_checkpoint = unreadable_checkpoint
        self.reads = 0

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str | None, dict[str, Any]]:
        state = dict(args.inputs)
        resource_id = f"{args.name}-id"
        if args.typ == VM:
            if state.get("vmId") is None:
                self._next_vm_id += 1
                state["vmId"] = self._next_vm_id
            generation = 2 if args.name in self._recreated else 1
            state["networkDevices"] = [
                {**device, "macAddress": mock_mac_address(args.name, generation)}
                for device in state.get("networkDevices", [])
            ]
        if args.typ == COMMAND:
            resource_id = f"{args.name}-{sha256_of(args.inputs)[:8]}"
        if args.typ == IMAGE:
            resource_id = f"{state['datastoreId']}:import/{state['fileName']}"
        if args.typ == CERTIFICATE:
            state |= mock_certificate_material(tuple(state["dns_names"]), tuple(state["ip_addresses"]))
        if args.typ == SNIPPET:
            resource_id = f"{state['datastoreId']}:snippets/{state['sourceRaw']['fileName']}"
        return resource_id, state

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        if args.token == READ_STACK_OUTPUTS:
            # The program reads its own stack's previous outputs (none: a new stack); the file backend's
            # checkpoint may be mid-write (components/rolling.py read_previous).
            self.reads += 1
            if self.reads <= self._unreadable_checkpoint:
                raise _EngineError(
                    "invocation of pulumi:pulumi:readStackOutputs returned an error: failed to load checkpoint: EOF"
                )
            return {"name": args.args["name"], "outputs": self._previous, "secretOutputNames": []}, []
        return {}, None


class _RecordingMonitor(pulumi_mocks.MockMonitor):
    def __init__(self, mocks: pulumi.runtime.Mocks, run: Run) -> None:
        super().__init__(mocks)
        self._run = run

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 (the gRPC method's name)
        response = super().RegisterResource(request)  # type: ignore[no-untyped-call]
        if request.type != "pulumi:pulumi:Stack":
            self._run.resources.append(
                Registered(
                    urn=response.urn,
                    type=request.type,
                    name=request.name,
                    parent=request.parent,
                    custom=bool(request.custom),
                    dependencies=list(request.dependencies),
                    inputs=rpc.deserialize_properties(request.object, keep_unknowns=True),
                    delete_before_replace=bool(request.deleteBeforeReplace),
                    custom_timeouts={
                        kind: value
                        for kind in ("create", "update", "delete")
                        if (value := getattr(request.customTimeouts, kind))
                    },
                    replace_with=list(request.replace_with),
                    replace_on_changes=list(request.replaceOnChanges),
                    ignore_changes=list(request.ignoreChanges),
                    id=response.id,
                    outputs=rpc.deserialize_properties(response.object, keep_unknowns=True),
                    additional_secret_outputs=list(request.additionalSecretOutputs),
                    deleted_with=request.deletedWith,
                )
            )
        return response


def stack_config(
    plan: Mapping[str, Any],
    *,
    secrets: Mapping[str, str] | None = None,
    plain: Mapping[str, str] | None = None,
) -> tuple[dict[str, str], list[str]]:
    """Engine-style config (every value a string, objects as JSON) and the list of secret keys."""
    config = {f"{PROJECT}:{key}": value if isinstance(value, str) else json.dumps(value) for key, value in plan.items()}
    secret_values = (
        {
            f"{PROJECT}:sshPrivateKey": TEST_PRIVATE_KEY,
            f"{PROJECT}:statsPassword": TEST_STATS_PASSWORD,
            "proxmoxve:apiToken": TEST_API_TOKEN,
        }
        if secrets is None
        else dict(secrets)
    )
    config.update(secret_values)
    config.update(plain or {})
    return config, list(secret_values)


@contextmanager
def _recorded_exports(run: Run) -> Iterator[None]:
    original = pulumi.export

    def export(name: str, value: Any) -> None:
        run.exports[name] = value

    pulumi.export = export
    try:
        yield
    finally:
        pulumi.export = original


async def _resolve(value: Any) -> Any:
    if isinstance(value, pulumi.Output):
        is_secret_output = await value.is_secret()
        resolved = await _resolve(await value.future())
        return {"secret": resolved} if is_secret_output else resolved
    if isinstance(value, dict):
        return {k: await _resolve(v) for k, v in value.items()}
    return value


def run_program(
    config: Mapping[str, str],
    secret_keys: list[str],
    program: Callable[[], None] | None = None,
    run: Run | None = None,
    recreated: frozenset[str] = frozenset(),
    stack: str = "dev",
    previous: Mapping[str, Any] | None = None,
    unreadable_checkpoint: int = 0,
) -> Run:
    """Evaluate __main__.py (or `program`) under mocks with this config; return what it registered.

    Exports come back resolved; a secret export as {"secret": value}. Pass `run` to see what was
    registered even when the program raises. `recreated`: names of VM resources that come back as new
    instances (a new MAC address), as after a re-creation. `previous`: the stack's outputs of its last
    deployment, as the program reads them back (none: a new stack); the first `unreadable_checkpoint` reads
    fail as the file backend's does when it reads a checkpoint being written.
    """
    run = Run() if run is None else run
    mocks = _Mocks(recreated, previous, unreadable_checkpoint)
    pulumi.runtime.set_mocks(mocks, project=PROJECT, stack=stack, preview=False, monitor=_RecordingMonitor(mocks, run))
    pulumi.runtime.set_all_config(dict(config), secret_keys)

    def main() -> None:
        runpy.run_path(str(REPO_ROOT / "__main__.py"), run_name="__main__")

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def evaluate() -> None:
        with _recorded_exports(run):
            (program or main)()

    evaluate()
    resolved: dict[str, Any] = {}

    @pulumi.runtime.test  # type: ignore[untyped-decorator]
    def resolve_exports() -> Any:
        async def go() -> None:
            for key, value in run.exports.items():
                resolved[key] = await _resolve(value)

        return pulumi.Output.from_input(go())

    resolve_exports()
    run.exports = resolved
    return run
