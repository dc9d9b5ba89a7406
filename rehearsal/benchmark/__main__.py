"""`python -m rehearsal.benchmark`: our setup, the report's, and the candidate web servers, in one run.

Why: the README's claims (no failed request while a server crashes or hangs, DOWN within 1 s, at least
3x the report's throughput) and the choice of web server (docs/web-server.md) must rest on figures
measured on the same machine in the same run, printed with the exact command. Setups never run at the
same time (2 cores); throughput is measured in interleaved rounds (every setup once per round, the
order rotating) and the median kept, so a background job slows every setup alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from plan.stack_file import load_stack_file
from rehearsal.benchmark.baseline import baseline_setup
from rehearsal.benchmark.candidates import CANDIDATES, SHIPPED, by_key
from rehearsal.benchmark.ceiling import haproxy_ceiling
from rehearsal.benchmark.resources import cpu_seconds, pss_mib, rss_mib
from rehearsal.benchmark.slow_body import SlowBodyResult, slow_body_drill
from rehearsal.benchmark.throughput import CONNECTIONS, Throughput, measure
from rehearsal.checks import DrillResult, fault_drill
from rehearsal.load import FAIL_AFTER
from rehearsal.local_lab import LocalLab, stats_rows
from rehearsal.plan import RehearsalSetup, rehearsal_setup
from rehearsal.progress import progress, seconds, stop_like_ctrl_c

REPORT = "report"
GOAL_DOWN = 1.0
GOAL_UP = 2.0
GOAL_SLOWEST = 3.5
GOAL_RATIO_2 = 3.0
GOAL_RATIO_1 = 3.5
BASELINE_SERVER = "gunicorn-sync"  # the server before issue 11: memory must not grow past it


@dataclass(frozen=True)
class RunFigures:
    """One throughput run of one setup: the client's figures, the web tier's cost, HAProxy's connections."""

    throughput: Throughput
    server_cpu_seconds: float
    lb_cpu_seconds: float
    rss_mib: tuple[float, ...]
    pss_mib: tuple[float, ...]
    server_connections: int
    server_requests: int

    @property
    def requests_per_cpu_second(self) -> float:
        return self.throughput.requests / self.server_cpu_seconds if self.server_cpu_seconds > 0 else 0.0

    @property
    def requests_per_lb_cpu_second(self) -> float:
        return self.throughput.requests / self.lb_cpu_seconds if self.lb_cpu_seconds > 0 else 0.0


@dataclass
class SetupFigures:
    """Everything measured on one setup over the whole run."""

    key: str
    description: str
    deployed_workers: int
    two: list[RunFigures] = field(default_factory=list)
    one: list[RunFigures] = field(default_factory=list)
    crash: DrillResult | None = None
    hang: DrillResult | None = None
    slow_body: SlowBodyResult | None = None
    deployed: RunFigures | None = None

    def rps(self, count: int) -> float:
        runs = self.two if count == 2 else self.one
        return statistics.median(run.throughput.ok_per_second for run in runs) if runs else 0.0

    def _median(self, values: list[float]) -> float | None:
        return statistics.median(values) if values else None

    @property
    def requests_per_cpu_second(self) -> float | None:
        return self._median([run.requests_per_cpu_second for run in self.two + self.one])

    @property
    def p99_seconds(self) -> float | None:
        return self._median([run.throughput.p99_seconds for run in self.two if run.throughput.p99_seconds is not None])

    @property
    def requests_per_lb_cpu_second(self) -> float | None:
        return self._median([run.requests_per_lb_cpu_second for run in self.two + self.one])

    @property
    def rss_mib_per_server(self) -> float | None:
        """With 2 servers (one worker each here): the larger of the two, median over the rounds."""
        return self._median([max(run.rss_mib) for run in self.two if run.rss_mib])

    @property
    def pss_mib_per_server(self) -> float | None:
        return self._median([max(run.pss_mib) for run in self.two if run.pss_mib])

    @property
    def connections_per_1000_requests(self) -> float | None:
        return self._median(
            [1000 * run.server_connections / run.server_requests for run in self.two if run.server_requests]
        )


def _backend_counters(local_lab: LocalLab) -> tuple[int, int]:
    """(connections HAProxy opened to the servers, requests it sent them) since it started."""
    backend = stats_rows(local_lab.stats_csv(), local_lab.lb.backend)["BACKEND"]
    return int(backend.get("connect") or 0), int(backend.get("stot") or 0)


def throughput_run(label: str, setup: RehearsalSetup, *, seconds: float, use_wrk: bool) -> RunFigures:
    """Start the setup, load it for `seconds` with 32 kept-alive client connections, stop it."""
    workdir = Path(tempfile.mkdtemp(prefix=f"haproxy-lab-bench-{label}-"))
    try:
        with LocalLab(setup.lb, setup.servers, workdir, disposable_workdir=True) as local_lab:
            local_lab.start()
            groups = [local_lab.server_group(index) for index in range(len(setup.servers))]
            connections_before, requests_before = _backend_counters(local_lab)
            lb = [local_lab.haproxy_group()]
            cpu_before, lb_before = cpu_seconds(groups), cpu_seconds(lb)
            throughput = measure(local_lab.lb.host, local_lab.lb.port, seconds=seconds, use_wrk=use_wrk)
            cpu_used, lb_used = cpu_seconds(groups) - cpu_before, cpu_seconds(lb) - lb_before
            rss = tuple(rss_mib(group) for group in groups)
            pss = tuple(pss_mib(group) for group in groups)
            connections_after, requests_after = _backend_counters(local_lab)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return RunFigures(
        throughput,
        cpu_used,
        lb_used,
        rss,
        pss,
        connections_after - connections_before,
        requests_after - requests_before,
    )


def drill_run(figures: SetupFigures, setup: RehearsalSetup, *, drill_seconds: float) -> None:
    """On a two-server setup: a crash drill (then restart), a hang drill, and slow bodies at one server."""
    workdir = Path(tempfile.mkdtemp(prefix=f"haproxy-lab-bench-{figures.key}-drills-"))
    try:
        with LocalLab(setup.lb, setup.servers, workdir, disposable_workdir=True) as local_lab:
            local_lab.start()
            figures.crash = fault_drill(local_lab, 1, "crash", seconds=drill_seconds)
            progress(f"{figures.key}: crash drill: {figures.crash.check('crash').figures}")
            figures.hang = fault_drill(local_lab, 0, "hang", seconds=drill_seconds)
            progress(f"{figures.key}: hang drill: {figures.hang.check('hang').figures}")
            server = local_lab.servers[0]
            figures.slow_body = slow_body_drill(server.host, server.port)
            progress(
                f"{figures.key}: {figures.slow_body.stalled} stalled uploads: "
                f"{figures.slow_body.answered}/{figures.slow_body.probes} GETs answered"
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# --- output ----------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _after_fault(drill: DrillResult | None) -> str:
    return "-" if drill is None else f"{drill.failed} / {drill.failed_after_fault} of {drill.total:,}"


def _slowest(drill: DrillResult | None) -> str:
    if drill is None:
        return "-"
    capped = " (client cap)" if drill.slowest >= FAIL_AFTER - 0.05 else ""
    return f"{drill.slowest:.2f} s{capped}"


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(head, widths, strict=True)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines.extend("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in rows)
    return "\n".join(lines)


def candidates_table(setups: Sequence[SetupFigures], ceiling: float) -> str:
    """One column per setup: every figure the choice of web server rests on."""
    measures: list[tuple[str, Callable[[SetupFigures], str]]] = [
        ("req/s, 2 servers (median)", lambda f: _num(f.rps(2))),
        ("req/s, 1 server (median)", lambda f: _num(f.rps(1))),
        ("requests per CPU-second of the web tier", lambda f: _num(f.requests_per_cpu_second)),
        ("requests per CPU-second of HAProxy", lambda f: _num(f.requests_per_lb_cpu_second)),
        ("p99 latency, 2 servers", lambda f: "-" if f.p99_seconds is None else f"{1000 * f.p99_seconds:.1f} ms"),
        (
            "memory per server in the 2-server runs, RSS / PSS (MiB)",
            lambda f: _memory(f.rss_mib_per_server, f.pss_mib_per_server),
        ),
        ("memory as deployed on this many CPUs", _deployed_memory),
        ("server connections per 1000 requests", lambda f: _num(f.connections_per_1000_requests, 1)),
        ("crash: failed, total / after fault", lambda f: _after_fault(f.crash)),
        ("crash: DOWN after / back UP after", lambda f: "-" if f.crash is None else _down_up(f.crash)),
        ("hang: failed, total / after fault", lambda f: _after_fault(f.hang)),
        ("hang: DOWN after / back UP after", lambda f: "-" if f.hang is None else _down_up(f.hang)),
        ("hang: slowest answer", lambda f: _slowest(f.hang)),
        (
            "50 stalled uploads: GETs answered",
            lambda f: "-" if f.slow_body is None else f"{f.slow_body.answered}/{f.slow_body.probes}",
        ),
    ]
    head = ["measure", *(f.key for f in setups)]
    rows = [[name, *(cell(f) for f in setups)] for name, cell in measures]
    rows.append(["HAProxy alone (answers by itself)", f"{ceiling:,.0f} req/s", *([""] * (len(setups) - 1))])
    return _table(head, rows)


def _memory(rss: float | None, pss: float | None) -> str:
    return "-" if rss is None or pss is None else f"{rss:.1f} / {pss:.1f}"


def _deployed_memory(figures: SetupFigures) -> str:
    if figures.deployed is None:
        return "-"
    memory = _memory(max(figures.deployed.rss_mib), max(figures.deployed.pss_mib))
    return f"{memory} ({figures.deployed_workers} proc)"


def _down_up(drill: DrillResult) -> str:
    return f"{seconds(drill.down_after)} / {seconds(drill.up_after)}"


def _ratio(ours: float, report: float) -> float:
    return ours / report if report else 0.0


def goals(ours: SetupFigures, report: SetupFigures, before: SetupFigures | None) -> list[tuple[str, str, bool]]:
    """(goal, figure, met) for our setup against the report's (and the server it replaced)."""
    ratio_2 = _ratio(ours.rps(2), report.rps(2))
    ratio_1 = _ratio(ours.rps(1), report.rps(1))
    crash, hang = ours.crash, ours.hang
    result = [
        (f"2 servers: >= {GOAL_RATIO_2:g}x the report's req/s", f"x{ratio_2:.2f}", ratio_2 >= GOAL_RATIO_2),
        (f"1 server: >= {GOAL_RATIO_1:g}x the report's req/s", f"x{ratio_1:.2f}", ratio_1 >= GOAL_RATIO_1),
        (
            "crash drill: 0 failed after the fault",
            _after_fault(crash),
            crash is not None and not crash.failed_after_fault,
        ),
        ("hang drill: 0 failed after the fault", _after_fault(hang), hang is not None and not hang.failed_after_fault),
        (
            f"dead server DOWN within {GOAL_DOWN:g} s",
            seconds(None if crash is None else crash.down_after),
            crash is not None and crash.down_after is not None and crash.down_after <= GOAL_DOWN,
        ),
        (
            f"restarted server UP within {GOAL_UP:g} s",
            seconds(None if crash is None else crash.up_after),
            crash is not None and crash.up_after is not None and crash.up_after <= GOAL_UP,
        ),
        (
            f"slowest answer in the hang drill <= {GOAL_SLOWEST:g} s",
            _slowest(hang),
            hang is not None and hang.slowest <= GOAL_SLOWEST,
        ),
        (
            "stalled uploads do not stop the server",
            "-" if ours.slow_body is None else f"{ours.slow_body.answered}/{ours.slow_body.probes} answered",
            ours.slow_body is not None and ours.slow_body.passed,
        ),
    ]
    if before is not None and before.deployed is not None and ours.deployed is not None:
        ours_rss, before_rss = max(ours.deployed.rss_mib), max(before.deployed.rss_mib)
        result.append(
            (
                f"memory per server as deployed <= {before.key}'s ({before_rss:.1f} MiB RSS)",
                f"{ours_rss:.1f} MiB RSS",
                ours_rss <= before_rss,
            )
        )
    return result


def _drill_json(drill: DrillResult | None) -> dict[str, Any] | None:
    if drill is None:
        return None
    return {
        "total": drill.total,
        "failed": drill.failed,
        "failed_after_fault": drill.failed_after_fault,
        "down_after_s": drill.down_after,
        "up_after_s": drill.up_after,
        "slowest_s": round(drill.slowest, 3),
    }


def _setup_json(figures: SetupFigures) -> dict[str, Any]:
    return {
        "description": figures.description,
        "throughput_2_servers": round(figures.rps(2), 1),
        "throughput_1_server": round(figures.rps(1), 1),
        "rounds_2_servers": [round(run.throughput.ok_per_second, 1) for run in figures.two],
        "rounds_1_server": [round(run.throughput.ok_per_second, 1) for run in figures.one],
        "requests_per_cpu_second": _round(figures.requests_per_cpu_second),
        "requests_per_haproxy_cpu_second": _round(figures.requests_per_lb_cpu_second),
        "p99_ms": None if figures.p99_seconds is None else round(1000 * figures.p99_seconds, 2),
        "rss_mib_per_server": _round(figures.rss_mib_per_server, 1),
        "pss_mib_per_server": _round(figures.pss_mib_per_server, 1),
        "deployed": None
        if figures.deployed is None
        else {
            "workers": figures.deployed_workers,
            "rss_mib": round(max(figures.deployed.rss_mib), 1),
            "pss_mib": round(max(figures.deployed.pss_mib), 1),
        },
        "server_connections_per_1000_requests": _round(figures.connections_per_1000_requests, 1),
        "crash": _drill_json(figures.crash),
        "hang": _drill_json(figures.hang),
        "slow_body": None
        if figures.slow_body is None
        else {
            "stalled": figures.slow_body.stalled,
            "probes": figures.slow_body.probes,
            "answered": figures.slow_body.answered,
        },
    }


def _round(value: float | None, digits: int = 0) -> float | None:
    return None if value is None else round(value, digits)


def summary_json(
    ours: SetupFigures,
    report: SetupFigures,
    candidates: Sequence[SetupFigures],
    ceiling: float,
    met: list[tuple[str, str, bool]],
    machine: dict[str, Any],
) -> dict[str, Any]:
    """The one-line JSON the benchmark ends with under --json."""

    def versus(count: int) -> dict[str, Any]:
        return {
            "ours": round(ours.rps(count), 1),
            "report": round(report.rps(count), 1),
            "ratio": round(_ratio(ours.rps(count), report.rps(count)), 2),
        }

    return {
        "throughput_2_servers": versus(2),
        "throughput_1_server": versus(1),
        "crash": _drill_json(ours.crash),
        "hang": _drill_json(ours.hang),
        "slow_body": _setup_json(ours)["slow_body"],
        "haproxy_ceiling": round(ceiling, 1),
        "chosen": ours.key,
        "candidates": {figures.key: _setup_json(figures) for figures in candidates},
        "report": _setup_json(report),
        "goals": [{"goal": goal, "figure": figure, "met": ok} for goal, figure, ok in met],
        "goals_met": all(ok for _, _, ok in met),
        "machine": machine,
    }


def _haproxy_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return result.stdout.splitlines()[0] if result.stdout else "unknown"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(prog="python -m rehearsal.benchmark", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved throughput rounds (default 3)")
    parser.add_argument("--throughput-seconds", type=float, default=5.0, help="each throughput run (default 5)")
    parser.add_argument("--drill-seconds", type=float, default=10.0, help="each crash/hang drill (default 10)")
    parser.add_argument(
        "--candidates",
        default=",".join(c.key for c in CANDIDATES),
        help=f"comma-separated web servers to compare (default: all; {SHIPPED} is always run)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="worker processes per web server, every candidate (default: the CPUs each server gets here, "
        "CPUs // servers, at least 1: one with 2 servers on 2 CPUs, two with 1 server, as serve.py sizes itself)",
    )
    parser.add_argument("--python-client", action="store_true", help="measure throughput with Python, not wrk")
    parser.add_argument("--haproxy", default=None, metavar="PATH", help="haproxy binary (default: on PATH)")
    parser.add_argument("--json", action="store_true", help="end with one line of JSON holding every figure")
    args = parser.parse_args(argv)
    if not 1 <= args.rounds <= 20 or not 1.0 <= args.throughput_seconds <= 30.0:
        parser.error("--rounds must be 1..20 and --throughput-seconds 1..30")
    if not 4.0 <= args.drill_seconds <= 60.0:
        parser.error("--drill-seconds must be 4..60 (the fault comes at 2 s; the report needs ~6 s to notice it)")
    if not 0 <= args.workers <= 16:
        parser.error("--workers must be 1..16 (0: the CPUs each server gets here)")
    try:
        keys = {by_key(key.strip()).key for key in args.candidates.split(",") if key.strip()} | {SHIPPED}
    except ValueError as error:
        parser.error(str(error))
    args.candidate_keys = [c.key for c in CANDIDATES if c.key in keys and c.available()]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Measure every setup, print the tables (and the JSON line); exit 1 when a goal is missed."""
    args = parse_args(argv)
    stop_like_ctrl_c()
    command = "python -m rehearsal.benchmark" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    plan = load_stack_file("dev")
    haproxy_bin = rehearsal_setup(plan, 1, haproxy_bin=args.haproxy).lb.haproxy_bin

    cpus = len(os.sched_getaffinity(0))

    def workers_for(count: int) -> int:
        """Worker processes per server with `count` servers: --workers, else the CPUs each server gets here."""
        return args.workers or max(1, cpus // count)

    def make(key: str, count: int, workers: int | None = None) -> RehearsalSetup:
        """A fresh setup (new free ports) of `key` with `count` web servers of `workers` processes each."""
        if key == REPORT:
            return baseline_setup(args.haproxy, count)
        setup = rehearsal_setup(plan, count, haproxy_bin=args.haproxy)
        return by_key(key).apply(setup, workers if workers is not None else workers_for(count))

    figures = {
        key: SetupFigures(key, by_key(key).description, by_key(key).deployed_workers(cpus))
        for key in args.candidate_keys
    }
    figures[REPORT] = SetupFigures(REPORT, "the report: its haproxy.cfg, Werkzeug dev server", 1)
    keys = list(figures)
    ceilings: list[float] = []
    started = time.monotonic()
    use_wrk = not args.python_client
    try:
        for round_index in range(args.rounds):
            order = keys[round_index % len(keys) :] + keys[: round_index % len(keys)]
            ceilings.append(
                haproxy_ceiling(haproxy_bin, seconds=args.throughput_seconds, use_wrk=use_wrk).ok_per_second
            )
            progress(f"round {round_index + 1}/{args.rounds}: HAProxy alone {ceilings[-1]:,.0f} req/s")
            for key in order:
                for count, runs in ((2, figures[key].two), (1, figures[key].one)):
                    run = throughput_run(key, make(key, count), seconds=args.throughput_seconds, use_wrk=use_wrk)
                    runs.append(run)
                    progress(
                        f"round {round_index + 1}/{args.rounds}: {key}, {count} server(s): "
                        f"{run.throughput.ok_per_second:,.0f} req/s, {run.requests_per_cpu_second:,.0f} req per CPU-s"
                    )
        for key in keys:
            workers = figures[key].deployed_workers
            deployed = throughput_run(key, make(key, 1, workers), seconds=args.throughput_seconds, use_wrk=use_wrk)
            figures[key].deployed = deployed
            progress(f"{key}: as deployed ({workers} process(es)): {max(deployed.rss_mib):.1f} MiB RSS")
        for key in keys:
            progress(f"{key}: drills ({args.drill_seconds:g} s each)")
            drill_run(figures[key], make(key, 2), drill_seconds=args.drill_seconds)
    except KeyboardInterrupt:
        print("\nbenchmark: interrupted, every process stopped", file=sys.stderr)
        return 130
    ceiling = statistics.median(ceilings)
    ours, report = figures[SHIPPED], figures[REPORT]
    met = goals(ours, report, figures.get(BASELINE_SERVER))
    machine = {
        "nproc": os.cpu_count(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "haproxy": _haproxy_version(haproxy_bin),
        "client": f"{ours.two[0].throughput.client}, {CONNECTIONS} connections, {args.throughput_seconds:g} s per run",
        "rounds": args.rounds,
        "workers_per_server": {"2_servers": workers_for(2), "1_server": workers_for(1)},
    }
    print()
    print(f"command:  {command}")
    print(f"machine:  nproc={machine['nproc']}, {machine['system']}, Python {machine['python']}, {machine['haproxy']}")
    print(
        f"load:     {machine['client']}, median of {args.rounds} interleaved round(s); worker processes per server: "
        f"{workers_for(2)} with 2 servers, {workers_for(1)} with 1 (the report: one Werkzeug process)"
    )
    print(
        f"drills:   {args.drill_seconds:g} s of 16 concurrent keep-alive clients, fault at 2 s; a request fails on "
        f"error, non-200, bad body or no answer within {FAIL_AFTER:g} s"
    )
    for key in keys:
        print(f"  {key:<17} {figures[key].description}")
    print()
    print(candidates_table([figures[key] for key in keys], ceiling))
    print()
    print(
        _table(["goal (ours = " + SHIPPED + ")", "figure", "met"], [[g, f, "yes" if ok else "NO"] for g, f, ok in met])
    )
    all_met = all(ok for _, _, ok in met)
    print(f"\n{'every goal met' if all_met else 'SOME GOALS MISSED'}; total run {time.monotonic() - started:.0f} s")
    if args.json:
        candidates = [figures[key] for key in keys if key != REPORT]
        print(json.dumps(summary_json(ours, report, candidates, ceiling, met, machine), sort_keys=True), flush=True)
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
