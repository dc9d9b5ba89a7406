"""A guard process that cleans up after the rehearsal (or ./tools/e2e) when it dies without cleaning up
itself (kill -9).

Why a separate process: nothing runs inside a SIGKILLed process, and a parent-death signal only reaches
the direct child (gunicorn's workers would live on). The guard reads, on a pipe only the rehearsal holds,
the process groups it starts and the directory it writes; when the pipe closes without a `bye` (the
rehearsal died), it SIGKILLs every group and session still registered, runs the registered cleanup
commands, then removes the directory. Protocol, one command a line: `group PGID`, `reaped PGID`,
`session SID` (every process of that session: a pulumi CLI and its plugins), `run ["argv", ...]` (JSON),
`dir PATH`, `bye`.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import IO

REPO_ROOT = Path(__file__).resolve().parent.parent


def _kill_groups(groups: set[int]) -> None:
    for pgid in groups:
        for sig in (signal.SIGCONT, signal.SIGKILL):  # a frozen (SIGSTOPped) group dies too
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, sig)


def kill_sessions(sessions: set[int]) -> None:
    """SIGKILL every process whose session id is listed (/proc/<pid>/stat: after ") state ppid pgrp")."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) in sessions:
                os.kill(int(stat.parent.name), signal.SIGKILL)


def guard(commands: IO[str]) -> None:
    """Follow the commands until the pipe closes; clean up unless the last one was `bye`."""
    groups: set[int] = set()
    sessions: set[int] = set()
    cleanups: list[list[str]] = []
    directory: Path | None = None
    said_bye = False
    for line in commands:
        verb, _, argument = line.rstrip("\n").partition(" ")
        said_bye = verb == "bye"
        if verb == "group":
            groups.add(int(argument))
        elif verb == "reaped":
            groups.discard(int(argument))
        elif verb == "session":
            sessions.add(int(argument))
        elif verb == "run":
            cleanups.append([str(arg) for arg in json.loads(argument)])
        elif verb == "dir":
            directory = Path(argument)
    if not said_bye:
        _kill_groups(groups)
        if sessions:
            kill_sessions(sessions)
        for argv in cleanups:
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    argv, cwd=REPO_ROOT, stdin=subprocess.DEVNULL, capture_output=True, check=False, timeout=300
                )
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


class Watchdog:
    """The caller's end of the guard: start it, tell it what to clean, and say bye on a clean exit."""

    def __init__(self) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "rehearsal.watchdog"],
            cwd=REPO_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,  # Ctrl-C in the terminal must not kill the guard before the rehearsal
        )

    def tell(self, line: str) -> None:
        if self._proc.stdin is None or self._proc.stdin.closed:
            return
        with contextlib.suppress(BrokenPipeError):
            self._proc.stdin.write(line + "\n")
            self._proc.stdin.flush()

    def bye(self) -> None:
        """A clean exit: the guard leaves everything as it is and ends."""
        self.tell("bye")
        if self._proc.stdin is not None:
            with contextlib.suppress(BrokenPipeError):
                self._proc.stdin.close()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=5)


def main() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal closing is the rehearsal's business
    guard(sys.stdin)


if __name__ == "__main__":
    main()
