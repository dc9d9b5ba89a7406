"""Run a remote step's command line here the way the VM runs it: the login shell's `sh -c '<line>'`,
stdin from the step, as root.

sudo is not installed here and the tests run as root, so a `sudo` first on PATH drops `-n` and execs
the rest: what `sudo -n` does for root, but for the process it leaves in between (real sudo forks, waits
and relays signals to the command; the VM-side bounds signal the command's own process group, so the
outcome is the same). Everything else on the command line is the real tool (coreutils `timeout`).
Each command line runs in a session of its own, and whatever is left of it is killed on the way out
(a test whose bound is broken on purpose must not leave a `sleep infinity` behind).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

from components.remote import Budget, RootScript
from render.shipping import script_text

# Budgets for tests only (the program's are minutes). SHORT: TERM at 2 s and KILL at 3 s inside sudo,
# TERM at 3 s and KILL at 4 s around it. ROOMY: for a step that must end on its own.
SHORT = Budget(seconds=4, grace_seconds=1)
ROOMY = Budget.minutes(5)
# A stopped step's exit status: 137 once something was killed (after SIGTERM the reap kills what is left of
# the step's process group, itself included), 124 when SIGTERM alone ended it (a hung sudo, outside).
STOPPED = (124, 137)

SUDO_AS_ROOT = '#!/bin/sh\n[ "${1:-}" = -n ] && shift\nexec "$@"\n'


def sudo_dir(where: Path, sudo: str = SUDO_AS_ROOT) -> Path:
    """A directory holding a `sudo` (by default the root-only stand-in), to put first on PATH."""
    directory = where / "sudo-bin"
    directory.mkdir(exist_ok=True)
    path = directory / "sudo"
    path.write_text(sudo)
    path.chmod(0o755)
    return directory


def line_env(where: Path, env: dict[str, str] | None = None, sudo: str = SUDO_AS_ROOT) -> dict[str, str]:
    """This process's environment plus `env`, with the `sudo` first on PATH."""
    base = {**os.environ, **(env or {})}
    base["PATH"] = f"{sudo_dir(where, sudo)}:{base.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return base


def end_session(sid: int) -> None:
    """SIGKILL every process of session `sid` (process groups inside it included: `timeout` makes its own)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            # After the command name in parentheses: state, ppid, pgrp, session.
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                os.kill(int(stat.parent.name), signal.SIGKILL)


@contextlib.contextmanager
def started(
    command_line: str, where: Path, *, env: dict[str, str] | None = None, sudo: str = SUDO_AS_ROOT
) -> Iterator[subprocess.Popen[str]]:
    """`command_line` running with dash (Ubuntu's /bin/sh) as the login shell, pipes on its stdio; `env`
    adds to this process's. Whatever is left of it is killed on exit."""
    with subprocess.Popen(
        ["dash", "-c", command_line],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=line_env(where, env, sudo),
        start_new_session=True,
    ) as process:
        try:
            yield process
        finally:
            end_session(process.pid)


def run_line(
    command_line: str,
    where: Path,
    *,
    stdin: str = "",
    env: dict[str, str] | None = None,
    sudo: str = SUDO_AS_ROOT,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `command_line` to its end (or `timeout`: TimeoutExpired) and return what it printed."""
    with started(command_line, where, env=env, sudo=sudo) as process:
        out, err = process.communicate(stdin, timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def stopped_message(label: str) -> str:
    """What a step stopped by its SHORT budget says on stderr."""
    return f"haproxy-lab: {label} ran past its {SHORT} budget on the VM and was stopped"


def run_step(
    where: Path,
    name: str,
    *args: str,
    budget: Budget = ROOMY,
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """files/scripts/<name> (includes inlined) run as its step runs it on the VM, within `budget`."""
    line = RootScript(script_text(name), name, args).command_line(budget)
    return run_line(line, where, stdin=stdin, env=env, timeout=timeout)


def cut_step(
    where: Path, name: str, *args: str, stdin: str = "", env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """The step with something in it hanging, stopped by its SHORT budget: checks that it was, and said so."""
    result = run_step(where, name, *args, budget=SHORT, stdin=stdin, env=env, timeout=30)
    assert result.returncode in STOPPED, result.stdout + result.stderr
    assert stopped_message(" ".join([name, *args])) in result.stderr.splitlines()
    return result
