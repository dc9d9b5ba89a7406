"""The rehearsal end to end: real HAProxy and web servers (serve.py) on loopback, the six checks, the day-2 drills, and
cleanup.

Why end to end: the drills are the proof that the template's timeouts, retries and health checks hide
a crashed or frozen server from clients; only real processes under real load can show it.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import pytest

from plan.model import LabConfig
from rehearsal import checks
from rehearsal import day2 as checks_day2
from rehearsal.__main__ import run_checks
from rehearsal.local_lab import LocalLab, ServerSpec
from rehearsal.loopback import planned_servers, rehearsal_setup
from rehearsal.results import CheckResult, format_table
from rehearsal.runtime import cli, show_proc
from rehearsal.stats import parse_stats_csv

REPO = Path(__file__).resolve().parent.parent
DRILL_SECONDS = 5.0


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


@contextlib.contextmanager
def running_setup(plan: LabConfig, count: int, workdir: Path) -> Iterator[tuple[LocalLab, ServerSpec]]:
    """A started rehearsal lab and its spare server; afterwards every process group it started must be gone."""
    setup = rehearsal_setup(plan, count)
    assert setup.spare is not None
    lab = LocalLab(setup.lb, setup.servers, workdir)
    try:
        with lab:
            lab.start()
            yield lab, setup.spare
    finally:
        assert not [pgid for pgid in lab.groups if group_alive(pgid)], "processes left behind"


@contextlib.contextmanager
def running_lab(plan: LabConfig, count: int, workdir: Path) -> Iterator[LocalLab]:
    with running_setup(plan, count, workdir) as (lab, _):
        yield lab


# --- pure parts --------------------------------------------------------------------------------------------------


def test_plan_maps_to_loopback_and_derives_extra_servers(dev: LabConfig) -> None:
    servers = planned_servers(dev, 4)
    assert [s.name for s in servers] == ["WEB1-SAM", "WEB2-SAM", "WEB3-SAM", "WEB4-SAM"]
    assert [s.message for s in servers] == ["Serveur 1", "Serveur 2", "Serveur 3", "Serveur 4"]
    assert [s.host for s in servers] == ["127.0.0.31", "127.0.0.32", "127.0.0.33", "127.0.0.34"]
    assert [s.name for s in planned_servers(dev)] == ["WEB1-SAM", "WEB2-SAM"]
    with pytest.raises(ValueError, match="web servers"):
        planned_servers(dev, 0)


def test_rendered_rehearsal_config_never_points_at_the_plan_addresses(dev: LabConfig) -> None:
    cfg = rehearsal_setup(dev, 3).lb.cfg_text
    addresses = set(re.findall(r"\b\d+\.\d+\.\d+\.\d+\b", cfg))
    assert addresses
    assert all(address.startswith("127.") for address in addresses), addresses
    global_section = cfg.split("\nglobal\n", 1)[1].split("\ndefaults\n", 1)[0]
    directives = [line.split()[0] for line in global_section.splitlines() if line.strip() and "#" not in line]
    assert directives
    assert not set(directives) & {"chroot", "user", "group", "daemon"}


def test_parse_stats_csv_reads_server_rows_of_one_backend() -> None:
    csv_text = (
        "# pxname,svname,qcur,status,\n"
        "web_frontend,FRONTEND,,OPEN,\n"
        "web_servers,WEB1-SAM,0,UP,\n"
        "web_servers,WEB2-SAM,0,DOWN,\n"
        "web_servers,BACKEND,0,UP,\n"
        "stats,FRONTEND,,OPEN,\n"
    )
    assert parse_stats_csv(csv_text, "web_servers") == {"WEB1-SAM": "UP", "WEB2-SAM": "DOWN"}
    with pytest.raises(ValueError, match="CSV"):
        parse_stats_csv("<html>", "web_servers")


def test_in_rotation_needs_every_server_in_every_window() -> None:
    messages = frozenset({"S1", "S2", "S3"})
    assert checks.in_rotation(["S1", "S2", "S3", "S1", "S2", "S3"], messages)
    assert checks.in_rotation(["S2", "S3", "S1", "S2"], messages)
    assert not checks.in_rotation(["S1", "S1", "S2", "S3"], messages)
    assert not checks.in_rotation(["S1", "S2"], messages)


def test_table_has_one_row_per_check() -> None:
    table = format_table([CheckResult("round-robin", True, "S1, S2"), CheckResult("stats", False, "x " * 80)])
    lines = table.splitlines()
    assert lines[2].split()[:3] == ["1", "round-robin", "PASS"]
    assert lines[3].split()[:3] == ["2", "stats", "FAIL"]


# --- end to end --------------------------------------------------------------------------------------------------


def run_six_checks(lab: LocalLab) -> None:
    names = [server.name for server in lab.servers]
    n = len(names)

    rr = checks.round_robin(lab)
    assert rr.passed, rr.figures
    answers = rr.figures.split(", ")
    assert len(answers) == max(6, 2 * n)
    assert all(set(answers[i : i + n]) == set(lab.messages) for i in range(len(answers) - n + 1))

    stats = checks.stats_page(lab)
    assert stats.passed, stats.figures
    assert lab.server_states() == dict.fromkeys(names, "UP")
    assert "no credentials -> 401" in stats.figures

    failover = checks.failover(lab, 0)
    assert failover.passed, failover.figures
    assert lab.servers[0].message not in failover.figures.split(":", 1)[1].split(";")[0]

    recovery = checks.recovery(lab, 0)
    assert recovery.passed, recovery.figures
    assert "strict rotation again" in recovery.figures
    assert lab.servers[0].message in recovery.figures.split(":", 1)[1]
    assert lab.server_states()[names[0]] == "UP"

    crash = checks.fault_drill(lab, 1 % n, "crash", seconds=DRILL_SECONDS)
    assert crash.failed_after_fault == 0, crash
    assert crash.down_after is not None, crash
    assert crash.up_after is not None, crash
    assert crash.total > 100

    hang = checks.fault_drill(lab, 0, "hang", seconds=DRILL_SECONDS)
    assert hang.failed_after_fault == 0, hang
    assert hang.down_after is not None, hang
    assert hang.up_after is not None, hang
    assert hang.slowest < 5.0
    assert lab.server_states() == dict.fromkeys(names, "UP")


def run_day2_drills(lab: LocalLab, spare: ServerSpec) -> None:
    names = [server.name for server in lab.servers]
    groups = len(lab.groups)

    rolling = checks_day2.rolling_update(lab)
    assert rolling.passed, rolling.figures
    assert ", failed 0," in rolling.figures
    per_server = rolling.figures.split("per server: ", 1)[1]
    assert all(f"{name} " in per_server for name in names)
    assert len(lab.groups) == groups + len(names), "every server was restarted once"
    assert lab.server_states() == dict.fromkeys(names, "UP")

    served_before = lab.cfg_path.read_text()
    added = checks_day2.server_set(lab, spare)
    assert added.passed, added.figures
    assert ", failed 0," in added.figures
    assert int(added.figures.split(" answers;", 1)[0].rsplit(" ", 1)[1]) > 0
    assert [server.name for server in lab.servers] == names
    assert not group_alive(lab.groups[-1]), "the removed server is stopped"
    assert lab.server_states() == dict.fromkeys(names, "UP")
    # Back to the same set: the same file, and the worker serving it is the one the master CLI confirms.
    assert lab.cfg_path.read_text() == served_before
    newest = show_proc(lab.master_socket).newest
    served = cli(lab.master_socket, f"@!{newest} show env HAPROXY_LAB_CONFIG_ID").strip()
    assert served.split("=", 1)[1] in served_before


def test_spare_server_follows_the_plan(dev: LabConfig) -> None:
    setup = rehearsal_setup(dev, 2)
    assert setup.spare is not None
    assert (setup.spare.name, setup.spare.message, setup.spare.host) == ("WEB3-SAM", "Serveur 3", "127.0.0.33")
    assert "stats socket unix@admin.sock " in setup.lb.cfg_text
    assert "WEB3-SAM" not in setup.lb.cfg_text


@pytest.mark.slow
@pytest.mark.timeout(240)
@pytest.mark.parametrize("count", [2, 3])
def test_rehearsal_end_to_end(dev: LabConfig, count: int, tmp_path: Path) -> None:
    with running_setup(dev, count, tmp_path) as (lab, spare):
        assert len(lab.servers) == count
        run_six_checks(lab)
        run_day2_drills(lab, spare)


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_lab_close_reaps_frozen_and_running_servers(dev: LabConfig, tmp_path: Path) -> None:
    with running_lab(dev, 2, tmp_path) as lab:
        lab.signal_server(0, signal.SIGSTOP)
        # leaving the block must SIGCONT + stop the frozen group too; running_lab asserts nothing is left


def listening(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=1):
        return True
    return False


@pytest.mark.slow
@pytest.mark.timeout(60)
def test_cli_ctrl_c_stops_every_process() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "rehearsal", "--drill-seconds", "20"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    endpoints: set[tuple[str, int]] = set()
    try:
        assert proc.stdout is not None
        deadline = time.monotonic() + 40
        for line in proc.stdout:
            found = re.search(r"(?:on|listening on) (127\.0\.0\.\d+):(\d+)", line)
            if found:
                endpoints.add((found.group(1), int(found.group(2))))
            if "check: crash drill" in line or time.monotonic() > deadline:
                break
        assert len(endpoints) == 3  # two web servers and haproxy
        assert all(listening(host, port) for host, port in endpoints)
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        assert proc.returncode == 130
        assert not any(listening(host, port) for host, port in endpoints)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


class _NoLab:
    """Stands in for a lab that cannot do anything: every check must turn that into a FAIL row."""

    def __init__(self) -> None:
        self.servers: list[ServerSpec] = []

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"no lab ({name})")


def test_cli_runs_the_six_checks_then_the_day2_drills() -> None:
    rows = run_checks(
        cast(LocalLab, _NoLab()), balance="roundrobin", drill_seconds=4, spare=None, progress=lambda _: None
    )
    assert [row.name for row in rows] == [
        "round-robin",
        "stats",
        "failover",
        "recovery",
        "crash drill",
        "hang drill",
        "rolling update",
        "server set",
    ]
    assert not any(row.passed for row in rows)
    with_tls = run_checks(
        cast(LocalLab, _NoLab()), balance="roundrobin", drill_seconds=4, spare=None, progress=lambda _: None, https=True
    )
    assert [row.name for row in with_tls[8:]] == [
        "https",
        "stats over TLS",
        "tls rotation",
        "crash drill https",
        "hang drill https",
    ]
    assert not any(row.passed for row in with_tls)
