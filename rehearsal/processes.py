"""The rehearsal's one process runner: every process it starts (HAProxy, a web server, keepalived; on loopback
or inside a network namespace) runs in a process group of its own, logs to the work directory, and is gone
after close(), on every exit path.

Why process groups: a web server is a master plus workers (granian), keepalived a parent plus its VRRP child
and scripts; a drill must kill or freeze the whole of it at once (like `docker stop -s KILL` / `docker pause`),
so every signal goes to the group. Why a guard process (rehearsal/watchdog.py): nothing runs inside a
SIGKILLed rehearsal, so the guard kills the groups (and removes a disposable work directory) then.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from rehearsal.poll import poll_until
from rehearsal.watchdog import Watchdog


def _group_exists(pgid: int) -> bool:
    """Whether any process (a zombie not yet reaped included) is still in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class ProcessGroups:
    """Processes by key ("haproxy", a server's name, "lb1-keepalived"...), each the leader of its group."""

    def __init__(self, workdir: Path, *, disposable_workdir: bool = False) -> None:
        """`disposable_workdir`: the guard process also removes `workdir` if the rehearsal dies uncleanly."""
        self.workdir = workdir
        self.disposable_workdir = disposable_workdir
        self._watchdog: Watchdog | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self.groups: list[int] = []  # every process group ever started, for tests to prove they are gone

    def log_path(self, key: str) -> Path:
        return self.workdir / f"{key}.log"

    def _guard(self) -> Watchdog:
        if self._watchdog is None:
            # Before the first process or namespace: a kill -9 of the rehearsal must not leave any behind.
            self._watchdog = Watchdog()
            if self.disposable_workdir:
                self._watchdog.tell(f"dir {self.workdir}")
        return self._watchdog

    def undo_on_death(self, argv: Sequence[str]) -> None:
        """Have the guard run argv if the rehearsal dies without closing (e.g. `ip netns del NAME`)."""
        self._guard().tell("run " + json.dumps(list(argv)))

    def spawn(
        self, key: str, argv: Sequence[str], env: Mapping[str, str] | None = None, cwd: Path | None = None
    ) -> subprocess.Popen[bytes]:
        """Start argv as `key` in a new process group, stdout and stderr appended to workdir/<key>.log."""
        watchdog = self._guard()
        self.workdir.mkdir(parents=True, exist_ok=True)
        with self.log_path(key).open("ab") as log:
            proc = subprocess.Popen(
                list(argv),
                cwd=str(cwd) if cwd else None,
                env={**os.environ, **(env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals reach master and workers together
            )
        self._procs[key] = proc
        self.groups.append(proc.pid)
        watchdog.tell(f"group {proc.pid}")
        return proc

    def pid(self, key: str) -> int:
        """The process (and group) id of `key`, while it runs."""
        return self._procs[key].pid

    def names(self) -> list[str]:
        return list(self._procs)

    def raise_if_exited(self, key: str) -> None:
        """Raise with the end of its log if `key` has exited (a wait on it would only time out)."""
        proc = self._procs.get(key)
        if proc is not None and proc.poll() is not None:
            log = self.log_path(key)
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{key} exited with status {proc.returncode}; its log ends with:\n{tail}")

    def signal(self, key: str, sig: signal.Signals) -> None:
        """Send `sig` to the whole group of `key`."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self._procs[key].pid, sig)

    def _reaped(self, proc: subprocess.Popen[bytes]) -> None:
        """The group is gone: the guard must never signal its id again (it may be reused)."""
        if self._watchdog is not None and proc.returncode is not None:
            self._watchdog.tell(f"reaped {proc.pid}")

    def kill(self, key: str) -> None:
        """SIGKILL the whole group (like `docker stop -s KILL` or a power loss) and reap its leader."""
        proc = self._procs[key]
        for sig in (signal.SIGKILL, signal.SIGCONT):  # a frozen process dies only once continued
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=10)
        self._reaped(proc)

    def stop(self, key: str, timeout: float = 15.0) -> None:
        """Graceful stop, like `docker stop`: SIGTERM to the leader only, wait, then SIGKILL what is left."""
        proc = self._procs[key]
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=timeout)
        self.kill(key)  # the leader if it did not stop in time, and any worker left behind

    def close(self) -> None:
        """Stop every group: SIGCONT (frozen ones), SIGTERM, then SIGKILL after 3 s; wait until each is empty."""
        procs = list(self._procs.values())
        for proc in procs:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 3.0
        for proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        for proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group, workers included
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            self._reaped(proc)
        # A worker whose master died first is reparented to init, which reaps it a moment later: wait
        # (bounded) until every group is empty, so nothing started here outlives close().
        poll_until(lambda: not any(_group_exists(proc.pid) for proc in procs), 5.0)
        self._procs.clear()
        if self._watchdog is not None:
            self._watchdog.bye()
            self._watchdog = None
