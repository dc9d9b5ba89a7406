"""HAProxy's runtime API from Python: one command to a CLI socket, and the master's `show proc`.

Why here: the rehearsal and the tests wait on HAProxy's real state (which worker runs, whether a
reload failed) instead of sleeping; the shell scripts shipped to the VMs ask the same questions.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rehearsal.poll import poll_until


def _connect(sock: socket.socket, path: Path) -> None:
    """Connect to a Unix socket; a path over AF_UNIX's ~100 bytes is reached through its directory's fd."""
    if len(bytes(path)) < 100:
        sock.connect(str(path))
        return
    directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        sock.connect(f"/proc/self/fd/{directory}/{path.name}")
    finally:
        os.close(directory)


def cli(path: Path | str, command: str, timeout: float = 5.0) -> str:
    """Send one command to an HAProxy CLI socket and return the whole answer.

    The write side is shut down after the command: the master CLI answers only then.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        _connect(sock, Path(path))
        sock.sendall(command.encode() + b"\n")
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks).decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Processes:
    """The master's `show proc`: its pid, reload and failed-reload counts, and workers as (pid, reloads)."""

    master: int
    reloads: int
    failed: int
    workers: tuple[tuple[int, int], ...]

    @property
    def newest(self) -> int | None:
        """The worker started by the last successful (re)load: the one with 0 reloads."""
        return next((pid for pid, reloads in self.workers if reloads == 0), None)


def parse_show_proc(text: str) -> Processes:
    """Parse `show proc` (HAProxy 2.6 to 3.0 layout)."""
    master: tuple[int, int, int] | None = None
    workers: list[tuple[int, int]] = []
    for line in text.splitlines():
        fields = line.split()
        if len(fields) >= 3 and fields[1] == "master":
            failed = int(fields[4].rstrip("]")) if len(fields) > 4 and fields[3] == "[failed:" else 0
            master = (int(fields[0]), int(fields[2]), failed)
        elif len(fields) >= 3 and fields[1] == "worker":
            workers.append((int(fields[0]), int(fields[2])))
    if master is None:
        raise ValueError(f"not a `show proc` answer: {text[:200]!r}")
    return Processes(*master, workers=tuple(workers))


def show_proc(master_socket: Path | str) -> Processes:
    """The master's process list (raises OSError while the master re-executes)."""
    return parse_show_proc(cli(master_socket, "show proc"))


def wait_processes(
    master_socket: Path | str, predicate: Callable[[Processes], bool], timeout: float = 10.0
) -> Processes:
    """Poll `show proc` until predicate(processes) holds (bounded); the last state seen."""
    seen: list[Processes] = []

    def reached() -> bool:
        seen.append(show_proc(master_socket))
        return predicate(seen[-1])

    if poll_until(reached, timeout, not_yet=(OSError, ValueError)) is None:
        last = seen[-1] if seen else None
        raise TimeoutError(f"HAProxy's master did not reach the expected state within {timeout} s: {last}")
    return seen[-1]
