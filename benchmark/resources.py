"""What a web server costs while it serves: CPU seconds and resident memory of its whole process group.

Why process groups: a server is a master plus workers (gunicorn, granian, uWSGI) or one process
(Werkzeug); the local lab starts each in its own group, so summing over the group counts them all.
Read from /proc, Linux only, like the rest of the rehearsal.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from pathlib import Path

PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat after the command name (which may hold spaces), or None if the process is gone."""
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()


def group_pids(pgid: int) -> list[int]:
    """Every live process of process group `pgid`."""
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[2]) == pgid:
                found.append(int(entry.name))
    return found


def cpu_seconds(pgids: Iterable[int]) -> float:
    """User + system CPU seconds used so far by the live processes of these groups."""
    total = 0
    for pgid in pgids:
        for pid in group_pids(pgid):
            fields = _stat_fields(pid)
            if fields is not None:
                total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat)
    return total / _TICKS


def rss_mib(pgid: int) -> float:
    """Resident memory of a process group (sum of VmRSS; pages shared between forked workers count
    once per process, as `ps` and `docker stats` show them)."""
    total_kib = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in (PROC / str(pid) / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def pss_mib(pgid: int) -> float:
    """Proportional memory of a process group (sum of Pss: a page shared by k processes counts 1/k in
    each), i.e. what the server really adds to the machine."""
    total_kib = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError):
            for line in (PROC / str(pid) / "smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024
