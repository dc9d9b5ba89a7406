"""What the guests' machinery has made, recorded as it goes, and `cleanup(run_dir)` that undoes it all.

Why a journal on disk: the end-to-end run must leave nothing behind even when its process is killed with
SIGKILL; a guard process (or the next run) then calls `cleanup(run_dir)` from another process. Each thing is
appended (one JSON object a line, flushed and fsynced) *before* it is made, so a crash between the two only
leaves a line whose undo finds nothing to do. Every process we start lives in a cgroup of ours, so ending
them all is one `cgroup.kill` on our cgroup2 directory: no pid that may have been reused is ever signalled.

A run holds an flock on `owner.lock` in its directory while it lives; the kernel drops it however the run
ends. The next run sweeps (`sweep`) the directories whose lock is free and that still hold something: a run
killed together with its guard (e.g. every process of a machine ended at once) leaves its bridge routing the
guests' network, and a new bridge on that network would be unreachable behind it.

Kinds: `cgroup` (a directory under /sys/fs/cgroup/*/, removed depth-first after its processes are killed),
`mount` (unmounted), `link` (ip link del), `nft` (a table: family and name), `netns` (a named network
namespace, ip netns del), `dir` (a directory or a file, removed, unless a mount is still inside it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

JOURNAL = "made.jsonl"
OWNER = "owner.lock"
KINDS = ("cgroup", "mount", "link", "nft", "netns", "dir")


class Journal:
    """The append-only list of what this run made, in its run directory."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = run_dir
        self.path = run_dir / JOURNAL
        self._lock = threading.Lock()

    def add(self, kind: str, value: str) -> None:
        if kind not in KINDS:
            raise ValueError(f"unknown kind {kind!r}")
        line = json.dumps({"kind": kind, "value": value}) + "\n"
        with self._lock, self.path.open("a") as out:
            out.write(line)
            out.flush()
            os.fsync(out.fileno())


def entries(run_dir: Path) -> list[tuple[str, str]]:
    """(kind, value) in the order they were made; a torn last line (a crash mid-write) is skipped."""
    path = run_dir / JOURNAL
    if not path.exists():
        return []
    found: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            item = json.loads(line)
            found.append((str(item["kind"]), str(item["value"])))
    return found


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=False, timeout=30)


def cgroup_pids(path: Path) -> list[int]:
    """Every process in a cgroup directory and its descendants."""
    pids: list[int] = []
    for procs in path.rglob("cgroup.procs") if path.is_dir() else []:
        with contextlib.suppress(OSError):
            pids += [int(line) for line in procs.read_text().split()]
    return pids


def kill_cgroup(path: Path, timeout_s: float = 20.0) -> None:
    """SIGKILL every process in the cgroup tree and wait until none is left. cgroup2 has `cgroup.kill`;
    a cgroup1 hierarchy (name=systemd) is emptied by signalling its pids, which are alive while listed."""
    deadline = time.monotonic() + timeout_s
    while True:
        pids = cgroup_pids(path)
        if not pids:
            return
        if (path / "cgroup.kill").exists():
            with contextlib.suppress(OSError):
                (path / "cgroup.kill").write_text("1")
        else:
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, 9)
        if time.monotonic() > deadline:
            raise RuntimeError(f"processes survive in {path}: {pids}")
        time.sleep(0.05)


def remove_cgroup(path: Path) -> None:
    """Kill what runs in it, then rmdir it and every sub-directory, deepest first (nspawn and the guest's
    systemd leave theirs behind when there is no host systemd to do it)."""
    if not path.is_dir():
        return
    kill_cgroup(path)
    for sub in sorted((p for p in path.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True):
        with contextlib.suppress(FileNotFoundError):
            sub.rmdir()
    with contextlib.suppress(FileNotFoundError):
        path.rmdir()


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below `path` in this mount namespace (from /proc/self/mountinfo)."""
    prefix = str(path.resolve()) if path.exists() else str(path)
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == prefix or point.startswith(prefix.rstrip("/") + "/"):
            found.append(point)
    return found


def unmount(point: str) -> None:
    """Unmount `point` (and anything stacked on it); lazily if it is busy, so the directory can go."""
    for _ in range(8):
        if point not in mounts_under(Path(point)):
            return
        if _run("umount", point).returncode != 0:
            _run("umount", "-l", point)


def remove_path(path: Path) -> None:
    """Remove a directory tree or a file, if it is there."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def nft_table_exists(family: str, name: str) -> bool:
    return _run("nft", "list", "table", family, name).returncode == 0


def link_exists(name: str) -> bool:
    return _run("ip", "link", "show", "dev", name).returncode == 0


def netns_exists(name: str) -> bool:
    return (Path("/run/netns") / name).exists()


def leftovers(run_dir: Path) -> list[str]:
    """What the journal says was made and still exists (empty after cleanup; tests assert it)."""
    left: list[str] = []
    for kind, value in entries(run_dir):
        if kind == "cgroup" and Path(value).exists():
            left.append(f"cgroup {value} ({len(cgroup_pids(Path(value)))} processes)")
        elif kind == "mount" and mounts_under(Path(value)):
            left.append(f"mount {value}")
        elif kind == "link" and link_exists(value):
            left.append(f"link {value}")
        elif kind == "nft" and nft_table_exists(*value.split(" ", 1)):
            left.append(f"nft table {value}")
        elif kind == "netns" and netns_exists(value):
            left.append(f"netns {value}")
        elif kind == "dir" and Path(value).exists():
            left.append(f"dir {value}")
    return left


def cleanup(run_dir: Path, keep_run_dir: bool = False) -> list[str]:
    """Undo everything the journal in `run_dir` lists, whatever state it was left in; returns what could not
    be removed (empty when all went), and then removes `run_dir` itself unless `keep_run_dir` (its console
    logs and the proxy's log are there). Safe to call again, and from any process."""
    made = entries(run_dir)
    by_kind: dict[str, list[str]] = {kind: [value for k, value in reversed(made) if k == kind] for kind in KINDS}
    # Processes first: nothing may hold a mount, a link or a cgroup while it goes.
    for value in by_kind["cgroup"]:
        with contextlib.suppress(RuntimeError, OSError):
            kill_cgroup(Path(value))
    for value in by_kind["mount"]:
        unmount(value)
    for value in by_kind["link"]:
        if link_exists(value):
            _run("ip", "link", "del", "dev", value)
    for value in by_kind["netns"]:
        if netns_exists(value):
            _run("ip", "netns", "del", value)
    for value in by_kind["nft"]:
        family, name = value.split(" ", 1)
        if nft_table_exists(family, name):
            _run("nft", "delete", "table", family, name)
    for value in by_kind["cgroup"]:
        with contextlib.suppress(RuntimeError, OSError):
            remove_cgroup(Path(value))
    for value in by_kind["dir"]:
        path = Path(value)
        if path.exists() and not mounts_under(path):
            remove_path(path)
    left = leftovers(run_dir)
    if not left and not keep_run_dir:
        shutil.rmtree(run_dir, ignore_errors=True)
    return left


def claim(run_dir: Path) -> int:
    """Hold `run_dir` for this process's life: returns the descriptor of its flocked `owner.lock` (keep it open).
    The lock is taken under a temporary name first, so a sweep never finds the file unlocked."""
    temporary = run_dir / f".{OWNER}.{os.getpid()}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    temporary.rename(run_dir / OWNER)
    return fd


def sweep(parent: Path, prefix: str) -> list[Path]:
    """Clean up every run directory `parent/prefix*` whose owner is gone and that left something behind (as
    its guard would); a live run's (its lock held) and one not claimed yet are left alone. Returns those swept."""
    swept = []
    for run_dir in sorted(parent.glob(f"{prefix}*")):
        try:
            fd = os.open(run_dir / OWNER, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue
            if leftovers(run_dir):
                cleanup(run_dir)
                swept.append(run_dir)
        finally:
            os.close(fd)
    return swept
