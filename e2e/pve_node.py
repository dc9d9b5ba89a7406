"""The Proxmox node's SSH side: a real OpenSSH sshd on loopback, for the provider's snippet uploads.

bpg's provider writes snippets over SSH, not through the API (docs/e2e.md): `id -u`, then
`/bin/bash -c '... try_sudo /usr/bin/tee <storage path>/snippets/<file>'` with the file on stdin, then
an SFTP stat. So the node is a real sshd: its own host key and authorized key, key-only, bash as the
login shell, the SFTP subsystem, listening on 127.0.0.1 only, in the foreground (never a daemon), and
killed with every process it started when the node stops, or when the thread that started it dies.
What it writes lands in the fake's dir storage, whose snippets the fake lists from the disk.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import pwd
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SSHD = "/usr/sbin/sshd"
# sshd refuses to start without its privilege separation directory (Debian's package makes it at boot).
PRIVSEP_DIR = Path("/run/sshd")
READY_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class NodeSsh:
    """A running node sshd: where it listens and how the provider logs in."""

    port: int
    username: str
    private_key: str
    host_public_key: str

    def provider_config(self, node: str) -> dict[str, Any]:
        """The stack's `proxmoxve:ssh` value (the private key must then be set as a secret)."""
        return {
            "username": self.username,
            "privateKey": self.private_key,
            "nodes": [{"name": node, "address": "127.0.0.1", "port": self.port}],
        }


def _keypair(path: Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)], check=True, capture_output=True
    )


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it when the thread that started it dies, even by kill -9
    (prctl PR_SET_PDEATHSIG), so no sshd outlives its harness."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG = 1


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _config(directory: Path, port: int, user: str) -> Path:
    config = directory / "sshd_config"
    config.write_text(
        "\n".join(
            [
                f"Port {port}",
                "ListenAddress 127.0.0.1",
                f"HostKey {directory / 'host_key'}",
                f"AuthorizedKeysFile {directory / 'authorized_keys'}",
                f"AllowUsers {user}",
                "PermitRootLogin prohibit-password",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "UsePAM no",
                # Its files live in a temp dir whose parents (/tmp) are world-writable.
                "StrictModes no",
                "PidFile none",
                "PrintMotd no",
                "UseDNS no",
                "Subsystem sftp internal-sftp",
                "LogLevel VERBOSE",
            ]
        )
        + "\n"
    )
    return config


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (its per-connection sshd children and their sessions)."""
    found: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return found
    for task in tasks:
        try:
            children = Path(f"/proc/{pid}/task/{task}/children").read_text().split()
        except FileNotFoundError:
            continue
        for child in map(int, children):
            found.append(child)
            found.extend(_descendants(child))
    return found


def _kill(pids: list[int], sig: signal.Signals) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    children = _descendants(proc.pid)
    _kill([proc.pid, *children], signal.SIGTERM)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(Path(f"/proc/{pid}").exists() for pid in children):
        time.sleep(0.05)
    _kill(children, signal.SIGKILL)


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> bool:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            return False
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return True
        time.sleep(0.05)
    raise RuntimeError(f"the node sshd did not listen on 127.0.0.1:{port} within {READY_TIMEOUT_S} s (log: {log})")


@contextmanager
def node_sshd(directory: Path) -> Iterator[NodeSsh]:
    """Run the node's sshd (as the current user, whose login shell must be bash) until the block ends."""
    if not Path(SSHD).is_file():
        raise RuntimeError(f"{SSHD} is missing: install openssh-server (tools/setup.sh does)")
    user = pwd.getpwuid(os.getuid())
    if not user.pw_shell.endswith("/bash"):
        raise RuntimeError(
            f"the node's SSH user {user.pw_name} must have bash as its login shell (has {user.pw_shell})"
        )
    directory.mkdir(parents=True, exist_ok=True)
    _keypair(directory / "host_key", "fake-pve-node")
    _keypair(directory / "client_key", "haproxy-lab-tests")
    (directory / "authorized_keys").write_text((directory / "client_key.pub").read_text())
    if os.geteuid() == 0:  # as another user, sshd runs without privilege separation
        PRIVSEP_DIR.mkdir(mode=0o755, exist_ok=True)
    log = directory / "sshd.log"
    for _attempt in range(5):  # another process may take the free port before sshd binds it
        port = _free_port()
        config = _config(directory, port, user.pw_name)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                [SSHD, "-D", "-e", "-f", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=out,
                preexec_fn=_die_with_parent,  # a prctl call only, before exec
            )
        try:
            if _wait_listening(proc, port, log):
                break
        except BaseException:
            _stop(proc)
            raise
    else:
        raise RuntimeError(f"the node sshd would not start (log: {log}):\n{log.read_text()[-2000:]}")
    try:
        yield NodeSsh(
            port=port,
            username=user.pw_name,
            private_key=(directory / "client_key").read_text(),
            host_public_key=(directory / "host_key.pub").read_text().strip(),
        )
    finally:
        _stop(proc)
