"""`python -m benchmark`: our setup, the report's, and the candidate web servers, in one run.

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
from collections.abc import Sequence
from pathlib import Path

from benchmark.baseline import baseline_setup
from benchmark.candidates import CANDIDATES, SHIPPED, by_key
from benchmark.ceiling import haproxy_ceiling
from benchmark.figures import (
    BASELINE_SERVER,
    REPORT,
    RunFigures,
    SetupFigures,
    candidates_table,
    goals,
    summary_json,
    table,
)
from benchmark.resources import cpu_seconds, pss_mib, rss_mib
from benchmark.slow_body import slow_body_drill
from benchmark.throughput import CONNECTIONS, measure
from benchmark.tls_study import HAPROXY3, tls_report
from plan.stack_file import load_stack_file
from rehearsal.checks import fault_drill
from rehearsal.load import FAIL_AFTER
from rehearsal.local_lab import LocalLab
from rehearsal.loopback import RehearsalSetup, rehearsal_setup
from rehearsal.progress import progress, stop_like_ctrl_c
from rehearsal.stats import stats_rows


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


def _haproxy_version(binary: str) -> str:
    result = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10, check=False)
    return result.stdout.splitlines()[0] if result.stdout else "unknown"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(prog="python -m benchmark", description=__doc__)
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
    parser.add_argument(
        "--tls",
        action="store_true",
        help="the TLS study alone: HTTP vs HTTPS keep-alive, new handshakes RSA 2048 vs ECDSA P-256, openssl speed",
    )
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
    command = "python -m benchmark" + (" " + " ".join(sys.argv[1:]) if sys.argv[1:] else "")
    plan = load_stack_file("dev")
    if args.tls:
        binaries = [("2.6" if args.haproxy is None else args.haproxy, args.haproxy or shutil.which("haproxy") or "")]
        if args.haproxy is None and HAPROXY3.is_file():
            binaries.append(("3.0", str(HAPROXY3)))
        seconds = max(1, int(args.throughput_seconds))
        print(
            "\n".join(
                [
                    f"command:  {command}",
                    *tls_report(binaries, plan, seconds=seconds, rounds=args.rounds, progress=progress),
                ]
            )
        )
        return 0
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
        table(["goal (ours = " + SHIPPED + ")", "figure", "met"], [[g, f, "yes" if ok else "NO"] for g, f, ok in met])
    )
    all_met = all(ok for _, _, ok in met)
    print(f"\n{'every goal met' if all_met else 'SOME GOALS MISSED'}; total run {time.monotonic() - started:.0f} s")
    if args.json:
        candidates = [figures[key] for key in keys if key != REPORT]
        print(json.dumps(summary_json(ours, report, candidates, ceiling, met, machine), sort_keys=True), flush=True)
    return 0 if all_met else 1


if __name__ == "__main__":
    sys.exit(main())
