"""A real OpenSSH server on loopback and a tiny Pulumi project of remote.Command resources, for
tests/test_command_plugin.py: the command plugin (our stand-in) run by the real engine against it.

The sshd runs as root, non-daemon, on a free port of 127.0.0.1, with its own host key and one
authorized test key, as PID 1 of its own PID namespace (with a private /run for its privilege
separation directory): when it goes, every session and command it started goes with it, and it goes
when the test process dies (PR_SET_PDEATHSIG) or the test ends.
"""

from __future__ import annotations

import ctypes
import json
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.engine_harness import STACK, Engine, Result, Workspace

PROJECT_SOURCE = Path(__file__).resolve().parent / "command_project"
PROJECT = "command-plugin-test"
SSHD = "/usr/sbin/sshd"
# Runs the CLI in a network namespace of its own with only loopback: nothing it sends can leave.
NO_NETWORK = ("unshare", "--net", "sh", "-c", 'ip link set lo up && exec "$@"', "no-network")


@dataclass(frozen=True)
class Sshd:
    port: int
    private_key: str  # the authorized client key (OpenSSH format)
    log: Path

    def connections(self) -> int:
        """How many TCP connections the server has accepted so far (its VERBOSE log)."""
        return self.log.read_text().count("Connection from 127.0.0.1")


def _die_with_parent() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port bound without listening: a connection to it is refused, and nobody can take it."""
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port: int = held.getsockname()[1]
        yield port


def keygen(path: Path) -> Path:
    """A new ed25519 key pair: `path` (private) and `path`.pub."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


def _sshd_config(workdir: Path, port: int, accept_env: str, path: str) -> Path:
    config = workdir / "sshd_config"
    lines = [
        "ListenAddress 127.0.0.1",
        f"Port {port}",
        f"HostKey {workdir / 'host_key'}",
        f"AuthorizedKeysFile {workdir / 'authorized_keys'}",
        "PidFile none",
        "StrictModes no",  # the temp dirs above it are not root's alone
        "PermitRootLogin prohibit-password",
        "AllowUsers root",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "UsePAM no",
        "LogLevel VERBOSE",
        *([f"AcceptEnv {accept_env}"] if accept_env else []),
        *([f"SetEnv PATH={path}"] if path else []),
    ]
    config.write_text("\n".join(lines) + "\n")
    return config


@contextmanager
def sshd(workdir: Path, client_key: Path, *, accept_env: str = "", path: str = "") -> Iterator[Sshd]:
    """A running sshd (see the module's docstring) that lets `client_key` (made by keygen) log in as root;
    `accept_env`: its AcceptEnv patterns (none: a stock server, which refuses every variable a client sets);
    `path`: the sessions' PATH (none: sshd's default)."""
    workdir.mkdir(parents=True)
    keygen(workdir / "host_key")
    (workdir / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    log = workdir / "sshd.log"
    for _ in range(5):
        port = free_port()
        config = _sshd_config(workdir, port, accept_env, path)
        with log.open("w") as stderr:
            proc = subprocess.Popen(
                [
                    *("unshare", "--pid", "--kill-child", "--mount-proc", "sh", "-c"),
                    f'mount -t tmpfs -o mode=0755 tmpfs /run && mkdir /run/sshd && exec {SSHD} -D -e -f "$0"',
                    str(config),
                ],
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
                preexec_fn=_die_with_parent,  # gone with the test process, whatever ends it
            )
        try:
            deadline = time.monotonic() + 20
            while f"listening on 127.0.0.1 port {port}" not in log.read_text():
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            else:
                yield Sshd(port=port, private_key=client_key.read_text(), log=log)
                return
        finally:
            # unshare ignores SIGTERM while it waits; SIGKILL takes sshd with it (--kill-child), and
            # with sshd, PID 1 of its namespace, every process it started.
            proc.kill()
            proc.wait()
        if "Address already in use" not in log.read_text():
            break
    raise RuntimeError(f"sshd did not start:\n{log.read_text()}")


class CommandProject:
    """tests/command_project in a Workspace: one stack whose commands the test sets (see its __main__.py),
    connected to `port` on 127.0.0.1 as root with `private_key`."""

    def __init__(
        self,
        root: Path,
        pulumi_engine: Engine,
        private_key: str,
        port: int,
        *,
        execute: bool = True,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.workspace = Workspace(root, pulumi_engine, PROJECT_SOURCE, execute_commands=execute, prefix=prefix)
        self.workspace.pulumi("stack", "init", STACK)
        # In plain text in the stack file (a throwaway key, and one CLI call less per test): the program
        # reads it with require_secret, so the engine sees a secret all the same.
        self.set("privateKey", private_key)
        self.set("connection", {"host": "127.0.0.1", "port": port, "user": "root", "dialErrorLimit": 2})
        self.events = root / "events.jsonl"

    def set(self, key: str, value: Any) -> None:
        stack_file = self.workspace.project / f"Pulumi.{STACK}.yaml"
        doc = yaml.safe_load(stack_file.read_text())
        doc.setdefault("config", {})[f"{PROJECT}:{key}"] = value
        stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def commands(self, commands: dict[str, dict[str, Any]]) -> None:
        self.set("commands", commands)

    def run(self, *args: str, check: bool = True, timeout: int = 120) -> Result:
        """A pulumi command on the stack, its engine events in self.events (replaced each time)."""
        self.events.unlink(missing_ok=True)
        return self.workspace.pulumi(
            *args, "--stack", STACK, "--event-log", str(self.events), check=check, timeout=timeout
        )

    def up(self, *extra: str, check: bool = True, timeout: int = 120) -> Result:
        return self.run("up", "--yes", "--skip-preview", *extra, check=check, timeout=timeout)

    def state(self, *, show_secrets: bool = False) -> dict[str, Any]:
        """The stack's resources as stored (secrets encrypted unless `show_secrets`), by name."""
        args = ("stack", "export", "--stack", STACK, *(["--show-secrets"] if show_secrets else []))
        exported = self.workspace.pulumi(*args).json()
        return {r["urn"].rsplit("::", 1)[1]: r for r in exported["deployment"].get("resources", [])}

    def _events(self, kind: str) -> Iterator[dict[str, Any]]:
        for line in self.events.read_text().splitlines():
            event = json.loads(line).get(kind)
            if event is not None:
                yield event

    def outputs(self) -> dict[str, Any]:
        """The stack's outputs after the last run (from its events; secrets shown as "[secret]")."""
        outputs: dict[str, Any] = {}
        for event in self._events("resOutputsEvent"):
            if event["metadata"]["type"] == "pulumi:pulumi:Stack":
                outputs = event["metadata"]["new"]["outputs"]
        return outputs

    def ops(self, name: str) -> list[str]:
        """The engine's steps on command `name` in the last run, in order (create, update, replace...)."""
        return [
            event["metadata"]["op"]
            for event in self._events("resourcePreEvent")
            if event["metadata"]["urn"].endswith(f"::{name}")
        ]

    def logged(self, name: str, *, ephemeral: bool | None = None) -> list[tuple[str, str]]:
        """(severity, message) of the engine's diagnostics for command `name` in the last run."""
        return [
            (event["severity"], event["message"].removesuffix("\n"))
            for event in self._events("diagnosticEvent")
            if event.get("urn", "").endswith(f"::{name}")
            and (ephemeral is None or bool(event.get("ephemeral")) == ephemeral)
        ]
