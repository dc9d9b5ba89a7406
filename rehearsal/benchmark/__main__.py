"""`python -m rehearsal.benchmark`: our setup and the report's, side by side on loopback, in one run.

Why: the README's claims (dead server DOWN within 1 s, back UP within 2 s, no failed request while a
server crashes or hangs, >= 2.5x the report's throughput) must be figures measured on the same machine
in the same run, printed with the exact command. Each setup runs alone (never both at once on 2 cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from plan.stack_file import load_stack_file
from rehearsal.benchmark.baseline import baseline_setup
from rehearsal.benchmark.throughput import Throughput, measure
from rehearsal.checks import DrillResult, fault_drill
from rehearsal.load import FAIL_AFTER
from rehearsal.local_lab import LocalLab
from rehearsal.plan import RehearsalSetup, rehearsal_setup
from rehearsal.progress import progress, seconds, stop_like_ctrl_c

GOAL_DOWN = 1.0
GOAL_UP = 2.0
GOAL_SLOWEST = 3.5
GOAL_RATIO = 2.5


@dataclass(frozen=True)
class SetupFigures:
    """Everything measured on one setup."""

    label: str
    throughput: Throughput
    crash: DrillResult
    hang: DrillResult
    single_server: Throughput


def single_server_throughput(label: str, setup: RehearsalSetup, *, seconds: float, use_wrk: bool) -> Throughput:
    """Throughput with one web server behind the load balancer: what one server carries.

    Why a separate figure: here both servers, HAProxy and the client share 2 cores, so the two-server run
    compares the two stacks' CPU cost per request; on the lab each web server is a VM with cores of its
    own, which gunicorn's worker processes use and a single Werkzeug process (one GIL) cannot.
    """
    workdir = Path(tempfile.mkdtemp(prefix=f"haproxy-lab-bench-{label}-1-"))
    try:
        with LocalLab(setup.lb, setup.servers, workdir, progress, disposable_workdir=True) as local_lab:
            local_lab.start()
            progress(f"{label}: one web server, 32 connections for {seconds:g} s")
            return measure(local_lab.lb.host, local_lab.lb.port, seconds=seconds, use_wrk=use_wrk)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def measure_setup(
    label: str,
    setup: RehearsalSetup,
    single: RehearsalSetup,
    *,
    drill_seconds: float,
    throughput_seconds: float,
    use_wrk: bool,
) -> SetupFigures:
    """Start the setup, measure throughput, a crash drill (then restart) and a hang drill, stop it all;
    then the one-server setup's throughput."""
    workdir = Path(tempfile.mkdtemp(prefix=f"haproxy-lab-bench-{label}-"))
    try:
        with LocalLab(setup.lb, setup.servers, workdir, progress, disposable_workdir=True) as local_lab:
            local_lab.start()
            progress(f"{label}: throughput, 32 connections for {throughput_seconds:g} s")
            throughput = measure(local_lab.lb.host, local_lab.lb.port, seconds=throughput_seconds, use_wrk=use_wrk)
            progress(f"{label}: {throughput.ok_per_second:.0f} req/s; crash drill ({drill_seconds:g} s)")
            crash = fault_drill(local_lab, 1, "crash", seconds=drill_seconds)
            progress(f"{label}: crash drill: {crash.check('crash').figures}; hang drill ({drill_seconds:g} s)")
            hang = fault_drill(local_lab, 0, "hang", seconds=drill_seconds)
            progress(f"{label}: hang drill: {hang.check('hang').figures}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    single_server = single_server_throughput(label, single, seconds=throughput_seconds, use_wrk=use_wrk)
    return SetupFigures(label, throughput, crash, hang, single_server)


def _failed(drill: DrillResult) -> str:
    return f"{drill.failed} / {drill.failed_after_fault} of {drill.total}"


def _slowest(drill: DrillResult) -> str:
    capped = " (client cap)" if drill.slowest >= FAIL_AFTER - 0.05 else ""
    return f"{drill.slowest:.2f} s{capped}"


def _ratio(ours: Throughput, report: Throughput) -> float:
    return ours.ok_per_second / report.ok_per_second if report.ok_per_second else 0.0


def figures_table(ours: SetupFigures, report: SetupFigures) -> tuple[str, bool]:
    """The comparison table, and whether every goal was met by our setup."""
    ratio = _ratio(ours.throughput, report.throughput)
    single_ratio = _ratio(ours.single_server, report.single_server)
    rows: list[tuple[str, str, str, str, bool]] = [
        (
            "crash drill: failed requests (total / started after fault)",
            _failed(ours.crash),
            _failed(report.crash),
            "0 after fault",
            ours.crash.failed_after_fault == 0,
        ),
        (
            "hang drill: failed requests (total / started after fault)",
            _failed(ours.hang),
            _failed(report.hang),
            "0 after fault",
            ours.hang.failed_after_fault == 0,
        ),
        (
            "time to mark a dead (SIGKILLed) server DOWN",
            seconds(ours.crash.down_after),
            seconds(report.crash.down_after),
            f"<= {GOAL_DOWN:g} s",
            ours.crash.down_after is not None and ours.crash.down_after <= GOAL_DOWN,
        ),
        (
            "time for a restarted server to be back UP (from its start)",
            seconds(ours.crash.up_after),
            seconds(report.crash.up_after),
            f"<= {GOAL_UP:g} s",
            ours.crash.up_after is not None and ours.crash.up_after <= GOAL_UP,
        ),
        (
            "time to mark a frozen (SIGSTOPped) server DOWN",
            seconds(ours.hang.down_after),
            seconds(report.hang.down_after),
            "(figure)",
            True,
        ),
        (
            "slowest answer during the hang drill",
            _slowest(ours.hang),
            _slowest(report.hang),
            f"<= {GOAL_SLOWEST:g} s",
            ours.hang.slowest <= GOAL_SLOWEST,
        ),
        (
            "steady throughput, 2 servers, 32 connections (successful req/s)",
            f"{ours.throughput.ok_per_second:.0f}",
            f"{report.throughput.ok_per_second:.0f}",
            f">= {GOAL_RATIO:g}x report (x{ratio:.2f})",
            ratio >= GOAL_RATIO,
        ),
        (
            "steady throughput, 1 server behind the LB (successful req/s)",
            f"{ours.single_server.ok_per_second:.0f}",
            f"{report.single_server.ok_per_second:.0f}",
            f">= {GOAL_RATIO:g}x report (x{single_ratio:.2f})",
            single_ratio >= GOAL_RATIO,
        ),
    ]
    head = ("measure", "ours", "report", "goal")
    cells_by_row = [row[:4] for row in rows]
    widths = [max(len(h), *(len(cells[i]) for cells in cells_by_row)) for i, h in enumerate(head)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)) + "  met"]
    lines.append("-" * len(lines[0]))
    for cells, row in zip(cells_by_row, rows, strict=True):
        text = "  ".join(str(c).ljust(w) for c, w in zip(cells, widths, strict=True))
        lines.append(text + ("  yes" if row[4] else "  NO"))
    return "\n".join(lines), all(row[4] for row in rows)


def _haproxy_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return result.stdout.splitlines()[0] if result.stdout else "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    """Run both setups one after the other and print the figures; exit 1 when a goal is missed."""
    parser = argparse.ArgumentParser(prog="python -m rehearsal.benchmark", description=__doc__)
    parser.add_argument("--drill-seconds", type=float, default=10.0, help="length of each drill (default 10)")
    parser.add_argument("--throughput-seconds", type=float, default=5.0, help="throughput run length (default 5)")
    parser.add_argument("--python-client", action="store_true", help="measure throughput with Python, not wrk")
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help="gunicorn workers per server (default 1: both servers, HAProxy and the client share 2 cores here)",
    )
    parser.add_argument("--haproxy", default=None, metavar="PATH", help="haproxy binary (default: on PATH)")
    args = parser.parse_args(argv)
    if not 8.0 <= args.drill_seconds <= 60.0 or not 1.0 <= args.throughput_seconds <= 30.0:
        parser.error("--drill-seconds must be 8..60 (the report needs ~6 s to notice) and --throughput-seconds 1..30")
    stop_like_ctrl_c()
    command = "python -m rehearsal.benchmark" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    ours_setup = rehearsal_setup(load_stack_file("dev"), 2, haproxy_bin=args.haproxy, workers=args.workers)
    report_setup = baseline_setup(args.haproxy)
    ours_single = rehearsal_setup(load_stack_file("dev"), 1, haproxy_bin=args.haproxy, workers=args.workers)
    report_single = baseline_setup(args.haproxy, 1)
    run: Callable[[str, RehearsalSetup, RehearsalSetup], SetupFigures] = lambda label, setup, single: measure_setup(  # noqa: E731
        label,
        setup,
        single,
        drill_seconds=args.drill_seconds,
        throughput_seconds=args.throughput_seconds,
        use_wrk=not args.python_client,
    )
    started = time.monotonic()
    try:
        ours = run("ours", ours_setup, ours_single)
        report = run("report", report_setup, report_single)
    except KeyboardInterrupt:
        print("\nbenchmark: interrupted, every process stopped", file=sys.stderr)
        return 130
    table, met = figures_table(ours, report)
    print()
    print(f"command:  {command}")
    print(
        f"machine:  nproc={os.cpu_count()}, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, {_haproxy_version(ours_setup.lb.haproxy_bin)}"
    )
    print(
        f"setups:   ours = files/haproxy.cfg.j2 + gunicorn ({args.workers} sync worker(s) per server); "
        "report = rehearsal/report_baseline (its haproxy.cfg, Werkzeug dev server); 2 web servers each"
    )
    print(
        f"drills:   {args.drill_seconds:g} s of 16 concurrent keep-alive clients, fault at 2 s; a request fails on "
        f"error, non-200, bad body or no answer within {FAIL_AFTER:g} s (the report's 50 s stalls are cut there)"
    )
    print(f"throughput client: {ours.throughput.client} (ours) / {report.throughput.client} (report)")
    print()
    print(table)
    print(
        "note:     every process (servers, HAProxy, wrk) shares this machine's cores; on the lab each web server\n"
        "          is a VM with cores of its own, which the one-server figure approaches"
    )
    print(f"\n{'every goal met' if met else 'SOME GOALS MISSED'}; total run {time.monotonic() - started:.0f} s")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
