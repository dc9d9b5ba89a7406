"""A guard process that cleans up after the rehearsal when it dies without cleaning up itself (kill -9).

Why a separate process: nothing runs inside a SIGKILLed process, and a parent-death signal only reaches
the direct child (gunicorn's workers would live on). The guard reads, on a pipe only the rehearsal holds,
the process groups it starts and the directory it writes; when the pipe closes without a `bye` (the
rehearsal died), it SIGKILLs every group still registered, runs the undo commands (newest first: e.g. the
HA drill's `ip netns del`, `ip link del`) and removes the directory. Protocol, one command a line:
`group PGID`, `reaped PGID`, `undo ARGV-AS-JSON`, `dir PATH`, `bye`.
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


def _undo(commands: list[list[str]]) -> None:
    for argv in reversed(commands):  # a namespace before the bridge its veth is plugged into
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=30, check=False)


def guard(commands: IO[str]) -> None:
    """Follow the commands until the pipe closes; clean up unless the last one was `bye`."""
    groups: set[int] = set()
    undo: list[list[str]] = []
    directory: Path | None = None
    said_bye = False
    for line in commands:
        verb, _, argument = line.rstrip("\n").partition(" ")
        said_bye = verb == "bye"
        if verb == "group":
            groups.add(int(argument))
        elif verb == "reaped":
            groups.discard(int(argument))
        elif verb == "undo":
            undo.append([str(word) for word in json.loads(argument)])
        elif verb == "dir":
            directory = Path(argument)
    if not said_bye:
        _kill_groups(groups)
        _undo(undo)
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


class Watchdog:
    """The rehearsal's end of the guard: start it, tell it what to clean, and say bye on a clean exit."""

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
