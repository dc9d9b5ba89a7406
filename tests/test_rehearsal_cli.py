"""`python -m rehearsal` leaves nothing behind, whatever way it ends, and reports setup errors plainly.

kill -9 runs no cleanup code in the rehearsal: its guard process (rehearsal/watchdog.py) must kill every
process group and remove the work directory, which holds haproxy.cfg with the run's password. Ctrl-C
removes the directory too, unless --keep-logs asks to keep it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
STARTED = "check: round-robin"  # printed once HAProxy and every server are up


def _stat(pid: int) -> tuple[int, str, str] | None:
    """(parent pid, state, start time) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return int(fields[1]), fields[0], fields[19]


def descendants(root: int) -> dict[int, str]:
    """Every process below `root`, with its start time (to tell it from a later process with its pid)."""
    parents: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None:
            parents.setdefault(stat[0], []).append(int(entry.name))
            starts[int(entry.name)] = stat[2]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in parents.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def survivors(processes: dict[int, str]) -> list[int]:
    return [pid for pid, start in processes.items() if (stat := _stat(pid)) and stat[1] != "Z" and stat[2] == start]


@contextmanager
def rehearsal(tmp_path: Path, *args: str) -> Iterator[subprocess.Popen[str]]:
    """The rehearsal CLI with its temporary files under tmp_path, stopped after the block if still running."""
    env = {**os.environ, "TMPDIR": str(tmp_path)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "rehearsal", "--drill-seconds", "20", *args],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        for line in proc.stdout:
            if STARTED in line or time.monotonic() > deadline:
                break
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)


def workdirs(tmp_path: Path) -> list[Path]:
    return sorted(tmp_path.glob("haproxy-lab-rehearsal-*"))


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_kill_9_leaves_no_process_and_no_directory(tmp_path: Path) -> None:
    with rehearsal(tmp_path) as proc:
        children = descendants(proc.pid)
        assert len(children) >= 4, children  # the guard, haproxy, two gunicorn masters (and their workers)
        assert len(workdirs(tmp_path)) == 1
        proc.kill()  # SIGKILL to the rehearsal alone, not its group: no cleanup code of its own runs
        proc.wait(timeout=10)
        deadline = time.monotonic() + 15
        while survivors(children) and time.monotonic() < deadline:
            time.sleep(0.1)
    left = survivors(children)
    print(f"\n{len(children)} processes below the rehearsal; alive after its kill -9: {left}")
    assert left == []
    assert workdirs(tmp_path) == []


@pytest.mark.slow
@pytest.mark.timeout(120)
@pytest.mark.parametrize("keep_logs", [False, True], ids=["default", "keep-logs"])
def test_ctrl_c_removes_the_work_directory_unless_asked(tmp_path: Path, keep_logs: bool) -> None:
    with rehearsal(tmp_path, *(["--keep-logs"] if keep_logs else [])) as proc:
        children = descendants(proc.pid)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=30)
        assert proc.returncode == 130
    assert survivors(children) == []
    if keep_logs:
        [kept] = workdirs(tmp_path)
        assert (kept / "haproxy.log").is_file()
    else:
        assert workdirs(tmp_path) == []


def test_a_missing_haproxy_binary_is_a_setup_error_not_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "rehearsal", "--haproxy", str(tmp_path / "nonexistent")],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert f"rehearsal: cannot set up the lab: {tmp_path / 'nonexistent'} is not an executable" in result.stderr
    assert "Traceback" not in result.stderr
