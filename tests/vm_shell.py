"""Run a remote step's command line here the way the VM runs it: the login shell's `sh -c '<line>'`,
stdin from the step, as root.

sudo is not installed here and the tests run as root, so a `sudo` first on PATH drops `-n` and execs
the rest: what `sudo -n` does for root, but for the process it leaves in between (real sudo forks, waits
and relays signals to the command; the VM-side bounds signal the command's own process group, so the
outcome is the same). Everything else on the command line is the real tool (coreutils `timeout`).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

SUDO_AS_ROOT = '#!/bin/sh\n[ "${1:-}" = -n ] && shift\nexec "$@"\n'


def sudo_dir(where: Path) -> Path:
    """A directory holding the root-only `sudo` stand-in, to put first on PATH."""
    directory = where / "sudo-bin"
    directory.mkdir(exist_ok=True)
    sudo = directory / "sudo"
    sudo.write_text(SUDO_AS_ROOT)
    sudo.chmod(0o755)
    return directory


def run_line(
    command_line: str,
    where: Path,
    *,
    stdin: str = "",
    env: dict[str, str] | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[str]:
    """Run `command_line` with dash (Ubuntu's /bin/sh) as the login shell; `env` adds to this process's."""
    base = {**os.environ, **(env or {})}
    base["PATH"] = f"{sudo_dir(where)}:{base.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return subprocess.run(
        ["dash", "-c", command_line],
        input=stdin,
        env=base,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout,
    )
