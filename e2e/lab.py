"""Everything one end-to-end run stands on, started in order and removed on every exit path: the kill -9
guard, the guests (NspawnMachines: bridge, proxy, nspawn), the fake Proxmox node on loopback with a token of
exactly the README's role, the load client's namespace, and a workspace running the real engine with the
command plugin executing over SSH (only to 127.0.0.0/8 and 198.18.0.0/15).

Why a guard process besides the `with` blocks: a `with` block unwinds on an error, Ctrl-C or SIGTERM (the CLI
turns SIGTERM into KeyboardInterrupt), never on SIGKILL. The guard (rehearsal/watchdog.py) then kills the pulumi
sessions and runs the guests' cleanup from their journal (bridge, nftables, netns, cgroups, overlays).
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from e2e.engine import Engine, Workspace
from e2e.guests.machines import NspawnMachines
from e2e.pve_running import RunningPve, running_pve
from e2e.stack import client_address, gateway
from e2e.traffic import Client
from plan.model import LabConfig
from plan.parse import parse_lab_config
from rehearsal.results import CheckResult
from rehearsal.watchdog import Watchdog

STACK = "e2e"
PROJECT_PREFIX = "haproxy-lab:"
# Tasks run in the background as on PVE (the provider polls them); 0 would hold a request for a guest's halt.
TIME_SCALE = 0.001


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str


def announce(row: CheckResult) -> CheckResult:
    """A row as it is decided, on stderr (the table and the JSON line come at the end)."""
    print(f"[{time.strftime('%H:%M:%S')}] {row.name}: {row.result} {row.figures[:300]}", file=sys.stderr, flush=True)
    return row


def new_key(directory: Path, name: str) -> KeyPair:
    path = directory / name
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"haproxy-lab-e2e-{name}", "-f", str(path)],
        check=True,
        capture_output=True,
    )
    return KeyPair(path, (directory / f"{name}.pub").read_text().strip())


@dataclass
class Lab:
    """A running end-to-end lab: the stack's plan (haproxy-lab: keys), the pieces, and what to change it with."""

    plan: dict[str, Any]
    workdir: Path
    machines: NspawnMachines
    pve: RunningPve
    workspace: Workspace
    client: Client
    key: KeyPair
    stats_password: str
    figures: dict[str, Any] = field(default_factory=dict)
    watched: dict[str, set[str]] = field(default_factory=dict)
    """Each server's statuses on the stats page during the last day-2 change (e2e/day2.py)."""
    watch_most_out: int = 0

    @property
    def config(self) -> LabConfig:
        raw = {key[len(PROJECT_PREFIX) :]: value for key, value in self.plan.items()}
        return parse_lab_config(raw)

    def write_plan(self) -> None:
        """The plan into the workspace's stack file (the proxmoxve: settings and the secrets stay)."""
        doc = yaml.safe_load(self.workspace.stack_file.read_text())
        doc["config"].update(self.plan)
        self.workspace.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def set_secret(self, key: str, value: str) -> None:
        self.workspace.pulumi("config", "set", "--secret", key, stdin=value)

    def ssh(
        self, ip: str, command: str, key: KeyPair | None = None, timeout: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run `command` on a VM as the admin user, as an operator would (from the host, the lab's gateway)."""
        return subprocess.run(
            [
                "ssh", "-i", str((key or self.key).private), "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=5",
                "-o", "LogLevel=ERROR", f"{self.plan['haproxy-lab:ssh']['user']}@{ip}", command,
            ],
            capture_output=True, text=True, check=False, timeout=timeout,
        )  # fmt: skip


def _stack_file(workspace: Workspace, plan: dict[str, Any], pve: RunningPve) -> None:
    workspace.pulumi("stack", "init", workspace.stack)  # writes the passphrase's salt into the stack file
    salt = yaml.safe_load(workspace.stack_file.read_text())
    config: dict[str, Any] = {
        "proxmoxve:endpoint": pve.endpoint,
        "proxmoxve:insecure": "true",
        "proxmoxve:ssh": {key: value for key, value in pve.ssh_config.items() if key != "privateKey"},
        **plan,
    }
    workspace.stack_file.write_text(yaml.safe_dump({**salt, "config": config}, sort_keys=False))


class LabRun:
    """The context manager: `with LabRun(plan, engine, keep_logs=...) as lab:`."""

    def __init__(self, plan: dict[str, Any], engine: Engine, *, keep_logs: bool = False) -> None:
        self.plan, self.engine, self.keep_logs = plan, engine, keep_logs
        self.lab: Lab | None = None
        self._stack = ExitStack()
        self.left: list[str] = []

    def __enter__(self) -> Lab:
        try:
            return self._start()
        except BaseException:
            self.close()
            raise

    def _start(self) -> Lab:
        parse_lab_config({key[len(PROJECT_PREFIX) :]: value for key, value in self.plan.items()})  # bad input: now
        watchdog = Watchdog()
        self._stack.callback(watchdog.bye)
        workdir = Path(tempfile.mkdtemp(prefix="haproxy-lab-e2e-", dir="/var/tmp"))
        watchdog.tell(f"dir {workdir}")
        if not self.keep_logs:
            self._stack.callback(shutil.rmtree, workdir, True)
        machines = NspawnMachines(gateway(self.plan), keep_run_dir=self.keep_logs)
        machines.__enter__()  # entered by hand: the guard must learn its run directory before anything else
        self.machines = machines
        self._stack.callback(self._close_machines, machines)
        watchdog.tell("run " + json.dumps([sys.executable, "-m", "e2e.guests", "cleanup", str(machines.run_dir)]))
        pve = self._stack.enter_context(running_pve(workdir / "pve", machines=machines, time_scale=TIME_SCALE))
        netns, procs = machines.client_namespace(client_address(self.plan))
        workspace = Workspace(workdir / "engine", self.engine, stack=STACK, execute_commands=True)
        workspace.on_session = lambda session: watchdog.tell(f"session {session}")
        key = new_key(workdir, "admin")
        stats_password = secrets.token_urlsafe(18)
        plan = json.loads(json.dumps(self.plan))
        plan["haproxy-lab:ssh"]["publicKey"] = key.public
        _stack_file(workspace, plan, pve)
        workspace.pulumi(
            "config", "set-all",
            "--secret", f"proxmoxve:apiToken={pve.token}",
            "--secret", f"haproxy-lab:statsPassword={stats_password}",
        )  # fmt: skip
        workspace.pulumi("config", "set", "--secret", "haproxy-lab:sshPrivateKey", stdin=key.private.read_text())
        workspace.pulumi(
            "config", "set", "--path", "--secret", "proxmoxve:ssh.privateKey", stdin=pve.ssh_config["privateKey"]
        )
        self.lab = Lab(plan, workdir, machines, pve, workspace, Client(netns, procs), key, stats_password)
        return self.lab

    def _close_machines(self, machines: NspawnMachines) -> None:
        try:
            machines.close()
        except RuntimeError as error:
            self.left.append(str(error))
        self.left += machines.made()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._stack.close()
        if self.lab is not None:
            workdir = str(self.lab.workdir)
            if not self.keep_logs and self.lab.workdir.exists():
                self.left.append(f"dir {workdir}")
            self.left += [f"process {pid}" for pid in processes_mentioning(workdir)]


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line mentions `text` (e.g. the run's directory): none may outlive the run."""
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            if text in cmdline.read_bytes().decode(errors="replace"):
                found.append(int(cmdline.parent.name))
    return found


def network_of(plan: dict[str, Any]) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(plan["haproxy-lab:network"]["cidr"])
