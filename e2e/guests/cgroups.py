"""Cgroup directories of our own for every process the guests' machinery starts.

Why: there is no host systemd here to give each container a unit; systemd-nspawn with `--keep-unit` uses the
cgroup it is started in, so each guest gets its own directory (one per hierarchy it looks at: the cgroup2
`unified` one and the `name=systemd` one on this hybrid host, /sys/fs/cgroup alone on a pure cgroup2 host),
and the proxy one too. All of them sit under one directory per run, which cleanup() kills and removes.
"""

from __future__ import annotations

from pathlib import Path

from e2e.guests.record import Journal

ROOT = Path("/sys/fs/cgroup")


def hierarchies() -> list[Path]:
    """The cgroup mounts nspawn uses: the cgroup2 root first (the one with cgroup.kill)."""
    if (ROOT / "cgroup.controllers").exists():
        return [ROOT]
    found = [ROOT / name for name in ("unified", "systemd") if (ROOT / name / "cgroup.procs").exists()]
    if not found:
        raise RuntimeError(f"no cgroup2 or name=systemd hierarchy under {ROOT}: systemd-nspawn cannot run here")
    return found


def make(journal: Journal, relative: str) -> list[Path]:
    """Create `relative` (e.g. `haproxy-lab-guests-ab12cd/vm101`) in every hierarchy; returns the cgroup.procs
    files a process writes its pid to, to move itself there before it execs."""
    procs = []
    for hierarchy in hierarchies():
        path = hierarchy / relative
        journal.add("cgroup", str(path))
        path.mkdir(parents=True, exist_ok=True)
        procs.append(path / "cgroup.procs")
    return procs


def paths(relative: str) -> list[Path]:
    return [hierarchy / relative for hierarchy in hierarchies()]
