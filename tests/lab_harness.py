"""The real engine against the fake Proxmox node (e2e.pve_running): the Proxmox resources of a stack
applied and destroyed with `pulumi up --target` / `pulumi destroy`, with a given API token.

The stacks are the repository's own (Pulumi.dev.yaml, Pulumi.ha.yaml) moved onto test addresses:
every address in 198.18.0.0/15 (198.18.40.0/24), the endpoint and the node's SSH on loopback, and
each stack its own vmIds and stack name, so that stacks can share one fake (file names carry the stack
name). Remote commands are not targeted: the command plugin is plan-only here.
"""

from __future__ import annotations

import itertools
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.pve_running import PveState, RunningPve
from e2e.stack import hosts as _hosts
from e2e.stack import repository_plan
from tests.engine_harness import REPO, SECRETS, Engine, Result, Workspace
from tests.engine_state import forget_deployment

LAB_CIDR = "198.18.40.0/24"
COMMAND = "command:remote:Command"


def lab_config(shape: str, vm_id_base: int) -> dict[str, Any]:
    """The program's config of Pulumi.<shape>.yaml on test addresses, vmIds from `vm_id_base` on."""
    plan = repository_plan(shape, LAB_CIDR)
    for offset, host in enumerate(_hosts(plan)):
        host["vmId"] = vm_id_base + offset
    return plan


@dataclass
class LabRun:
    """One stack's `up` (its Proxmox resources) and `destroy` against the fake node."""

    workspace: Workspace
    vm_ids: list[int]

    @property
    def file_prefix(self) -> str:
        """The prefix of the stack's snippet and image file names (render/file_names.py)."""
        return f"haproxy-lab-{self.workspace.stack}-"

    def proxmox_targets(self) -> list[str]:
        """The URN of every resource but the remote commands (their components included)."""
        steps = self.workspace.preview().json()["steps"]
        return [step["urn"] for step in steps if step["urn"].split("::")[2].rsplit("$", 1)[-1] != COMMAND]

    def up(self, targets: list[str], *, check: bool = True) -> Result:
        args = [arg for urn in targets for arg in ("--target", urn)]
        result = self.workspace.pulumi(
            "up", "--yes", "--skip-preview", "--stack", self.workspace.stack, *args, check=check, timeout=600
        )
        if result.returncode == 0:
            forget_deployment(self.workspace)
        return result

    def destroy(self, *, check: bool = True) -> Result:
        return self.workspace.pulumi(
            "destroy", "--yes", "--skip-preview", "--stack", self.workspace.stack, check=check, timeout=600
        )

    def use_token(self, token: str) -> None:
        self.workspace.pulumi("config", "set", "--secret", "proxmoxve:apiToken", stdin=token)

    def left_in(self, state: PveState) -> dict[str, Any]:
        return state.of_stack(self.vm_ids, self.file_prefix)


def lab_run(
    root: Path, pulumi_engine: Engine, pve: RunningPve, *, stack: str, shape: str, vm_id_base: int, token: str
) -> LabRun:
    """A stack of this shape on the fake node, with this token, ready for `up` (nothing applied yet)."""
    workspace = Workspace(root, pulumi_engine, stack=stack)
    workspace.pulumi("stack", "init", stack)  # writes the passphrase's salt into the stack file
    salt = yaml.safe_load(workspace.stack_file.read_text())
    plan = lab_config(shape, vm_id_base)
    plan["proxmoxve:endpoint"] = pve.endpoint
    plan["proxmoxve:insecure"] = "true"
    ssh = pve.ssh_config
    plan["proxmoxve:ssh"] = {key: value for key, value in ssh.items() if key != "privateKey"}
    workspace.stack_file.write_text(yaml.safe_dump({**salt, "config": plan}, sort_keys=False))
    secrets = {**SECRETS, "proxmoxve:apiToken": token}
    workspace.pulumi(
        "config", "set-all", *(arg for key, value in secrets.items() for arg in ("--secret", f"{key}={value}"))
    )
    workspace.pulumi("config", "set", "--path", "--secret", "proxmoxve:ssh.privateKey", stdin=ssh["privateKey"])
    return LabRun(workspace, sorted(int(host["vmId"]) for host in _hosts(plan)))


# The program's CD drive (components/vm.py); without it, a VM asks for the node's own drive (issue 20).
CDROM_FIX = '            cdrom=proxmoxve.VmLegacyCdromArgs(file_id="none"),\n'
# A day-2 change the provider applies in place: DNS (cloud-init), cores and disk size (README, Updates).
DAY2_DNS, DAY2_CORES, DAY2_DISK_GB = ["198.18.40.2"], 3, 24


def as_before_the_cdrom_fix(workspace: Workspace) -> None:
    """Make the workspace's program the one before the CD-ROM fix: the VMs declare no CD drive."""
    vm_py = workspace.project / "components" / "vm.py"
    text = vm_py.read_text()
    assert CDROM_FIX in text, "components/vm.py no longer declares the CD drive as tests/lab_harness.py expects"
    vm_py.write_text(text.replace(CDROM_FIX, ""))


def with_the_cdrom_fix(workspace: Workspace) -> None:
    (workspace.project / "components" / "vm.py").write_text((REPO / "components" / "vm.py").read_text())


def change_day2(workspace: Workspace) -> None:
    doc = yaml.safe_load(workspace.stack_file.read_text())
    doc["config"]["haproxy-lab:network"]["dns"] = DAY2_DNS
    doc["config"]["haproxy-lab:vm"].update(cores=DAY2_CORES, diskGb=DAY2_DISK_GB)
    workspace.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))


def retarget(urns: list[str], stack: str) -> list[str]:
    """Another stack's URNs for the same resources: `urn:pulumi:<stack>::...`, and the stack resource's
    own name `<project>-<stack>`."""
    renamed = [re.sub(r"^urn:pulumi:[^:]+::", f"urn:pulumi:{stack}::", urn) for urn in urns]
    return [
        re.sub(r"::pulumi:pulumi:Stack::haproxy-lab-.*$", f"::pulumi:pulumi:Stack::haproxy-lab-{stack}", urn)
        for urn in renamed
    ]


@dataclass
class Outcome:
    """What a sequence of steps did: the first step that failed (None: all passed) and its output, the
    fake's state after each step that passed, and what was left of the stack after its destroy."""

    stack: str
    vm_ids: list[int]
    failed: str | None = None
    output: str = ""
    states: dict[str, PveState] = field(default_factory=dict)
    left: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0

    def errors(self) -> list[str]:
        """The error lines of the failed step's output, each once (the engine repeats them), Proxmox's
        own answers (`Reason: ...`) first."""
        lines = [line.strip() for line in self.output.splitlines() if "error" in line.lower() or "Reason:" in line]
        return list(dict.fromkeys(sorted(lines, key=lambda line: "Reason:" not in line)))

    def vms(self, step: str) -> dict[int, Mapping[str, str]]:
        """The stack's VMs in the fake after this step: vmid -> config."""
        state = self.states[step]
        return {vmid: state.vms[vmid] for vmid in self.vm_ids if vmid in state.vms}

    def held(self, step: str) -> dict[str, Any]:
        """What the fake held of the stack after this step (PveState.of_stack)."""
        return self.states[step].of_stack(self.vm_ids, f"haproxy-lab-{self.stack}-")


def run_steps(
    run: LabRun, pve: RunningPve, steps: list[tuple[str, Callable[[], Result]]], cleanup_token: str
) -> Outcome:
    """Run the steps in order until one fails; then destroy with `cleanup_token`, so the shared fake
    keeps nothing of this stack that its state knows (a VM the state never recorded stays)."""
    outcome = Outcome(run.workspace.stack, run.vm_ids)
    started = time.monotonic()
    for name, step in steps:
        result = step()
        if result.returncode != 0:
            outcome.failed, outcome.output = name, result.output
            run.use_token(cleanup_token)
            run.destroy(check=False)
            break
        outcome.states[name] = pve.state()
    outcome.left = run.left_in(pve.state())
    outcome.seconds = time.monotonic() - started
    return outcome


def fresh_run(run: LabRun, targets: list[str], pve: RunningPve, cleanup_token: str, *, day2: bool) -> Outcome:
    """A new stack: up, the day-2 change (DAY2_*) if asked, destroy."""

    def change() -> Result:
        change_day2(run.workspace)
        return run.up(targets, check=False)

    steps = [("up", lambda: run.up(targets, check=False))]
    if day2:
        steps.append(("day 2", change))
    steps.append(("destroy", lambda: run.destroy(check=False)))
    return run_steps(run, pve, steps, cleanup_token)


def migration_run(run: LabRun, targets: list[str], pve: RunningPve, token: str, setup_token: str) -> Outcome:
    """A stack built by the program before the CD-ROM fix (with a token that had Sys.Console, as it
    needed), then brought up to date by this program with `token`, then destroyed."""
    as_before_the_cdrom_fix(run.workspace)
    run.use_token(setup_token)

    def upgrade() -> Result:
        with_the_cdrom_fix(run.workspace)
        run.use_token(token)
        return run.up(targets, check=False)

    steps = [
        ("up before the fix", lambda: run.up(targets, check=False)),
        ("up after the fix", upgrade),
        ("destroy", lambda: run.destroy(check=False)),
    ]
    return run_steps(run, pve, steps, setup_token)


class LabFactory:
    """Stacks on one shared fake node: each its own stack name and vmIds, the targets computed once
    per shape (a preview) and renamed for each stack."""

    def __init__(self, root: Path, pulumi_engine: Engine, pve: RunningPve) -> None:
        self.root, self.engine, self.pve = root, pulumi_engine, pve
        self._ids = itertools.count(200, 10)
        self._targets: dict[str, list[str]] = {}
        self._lock = threading.Lock()

    def run(self, stack: str, shape: str, token: str) -> tuple[LabRun, list[str]]:
        with self._lock:
            vm_id_base = next(self._ids)
        run = lab_run(
            self.root / stack, self.engine, self.pve, stack=stack, shape=shape, vm_id_base=vm_id_base, token=token
        )
        with self._lock:
            if shape not in self._targets:
                self._targets[shape] = run.proxmox_targets()
            targets = retarget(self._targets[shape], stack)
        return run, targets
