"""`python -m rehearsal`: run the stack's plan on loopback and print the six checks and the two day-2
drills as a table.

Why a CLI of its own: it proves, before any VM exists, that the shipped haproxy.cfg template, web app and
scripts balance, fail over, recover, survive a crash and a hang, a rolling update of every server and a
server added then removed, without a client-visible error.
Exit status: 0 when every check passes, 1 when one fails, 2 when the lab could not be set up.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from plan.model import ConfigError
from plan.stack_file import load_stack_file
from rehearsal import checks, day2
from rehearsal.checks import CheckResult
from rehearsal.local_lab import LocalLab, ServerSpec
from rehearsal.plan import rehearsal_setup
from rehearsal.progress import progress, stop_like_ctrl_c

FIGURES_WIDTH = 88


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m rehearsal",
        description="Run the lab's plan on loopback (real HAProxy + the web app under serve.py) and check balancing, "
        "stats, failover, recovery, a crash drill, a hang drill, a rolling update and a server added then removed.",
        epilog="--ha: the HA pair in network namespaces instead (see `python -m rehearsal --ha --help`).",
    )
    parser.add_argument("--stack", default="dev", help="stack whose Pulumi.<stack>.yaml plan to use (default: dev)")
    parser.add_argument("--web-servers", type=int, default=None, metavar="N", help="web servers (default: the plan's)")
    parser.add_argument("--drill-seconds", type=float, default=10.0, metavar="S", help="length of each drill (10)")
    parser.add_argument("--keep", action="store_true", help="leave the lab running after the checks until Ctrl-C")
    parser.add_argument("--haproxy", default=None, metavar="PATH", help="haproxy binary (default: haproxy on PATH)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per web server (default: 2)")
    parser.add_argument(
        "--keep-logs",
        action="store_true",
        help="keep the work directory (logs, haproxy.cfg with the run's throw-away password); removed otherwise",
    )
    args = parser.parse_args(argv)
    if args.web_servers is not None and args.web_servers < 2:
        parser.error("--web-servers must be at least 2 (failover needs a second server)")
    if not 4.0 <= args.drill_seconds <= 120.0:
        parser.error("--drill-seconds must be between 4 and 120 (the fault comes at 2 s)")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be between 1 and 16")
    return args


def format_table(rows: Sequence[CheckResult]) -> str:
    """The checks as an aligned text table, long figures wrapped under their column."""
    name_width = max([len("check"), *(len(row.name) for row in rows)])
    header = f"{'#':>2}  {'check':<{name_width}}  result  figures"
    lines = [header, "-" * (len(header) + FIGURES_WIDTH - len("figures"))]
    indent = " " * (2 + 2 + name_width + 2 + 6 + 2)
    for number, row in enumerate(rows, start=1):
        wrapped = textwrap.wrap(row.figures, FIGURES_WIDTH) or [""]
        lines.append(f"{number:>2}  {row.name:<{name_width}}  {row.result:<6}  {wrapped[0]}")
        lines.extend(indent + more for more in wrapped[1:])
    return "\n".join(lines)


def _needs(spare: ServerSpec | None, drill: Callable[[ServerSpec], CheckResult]) -> CheckResult:
    if spare is None:
        raise RuntimeError("the setup has no spare web server")
    return drill(spare)


def run_checks(
    local_lab: LocalLab,
    *,
    balance: str,
    drill_seconds: float,
    spare: ServerSpec | None,
    progress: Callable[[str], None],
) -> list[CheckResult]:
    """The six checks and the two day-2 drills, in order, on a started lab; an unexpected error becomes a
    FAIL row, not a crash."""
    n = len(local_lab.servers)
    steps: list[tuple[str, Callable[[], CheckResult]]] = [
        ("round-robin", lambda: checks.round_robin(local_lab, balance)),
        ("stats", lambda: checks.stats_page(local_lab)),
        ("failover", lambda: checks.failover(local_lab, 0)),
        ("recovery", lambda: checks.recovery(local_lab, 0, balance)),
        (
            "crash drill",
            lambda: checks.fault_drill(local_lab, 1 % n, "crash", seconds=drill_seconds).check("crash drill"),
        ),
        ("hang drill", lambda: checks.fault_drill(local_lab, 0, "hang", seconds=drill_seconds).check("hang drill")),
        ("rolling update", lambda: day2.rolling_update(local_lab)),
        ("server set", lambda: _needs(spare, lambda server: day2.server_set(local_lab, server))),
    ]
    results: list[CheckResult] = []
    for name, step in steps:
        progress(f"check: {name}")
        try:
            results.append(step())
        except Exception as error:  # reported as a failed check, the run goes on
            results.append(CheckResult(name, False, f"error: {error}"))
        progress(f"  {results[-1].result}: {results[-1].figures}")
    return results


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rehearsal; the exit status says whether every check passed."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if "--ha" in arguments:  # the active/standby pair, in network namespaces (rehearsal/ha)
        from rehearsal.ha.__main__ import main as ha_main

        return ha_main([a for a in arguments if a != "--ha"])
    args = parse_args(argv)
    stop_like_ctrl_c()
    try:
        plan = load_stack_file(args.stack)
        setup = rehearsal_setup(plan, args.web_servers, haproxy_bin=args.haproxy, workers=args.workers)
    except (ConfigError, OSError, ValueError, RuntimeError) as error:
        print(f"rehearsal: cannot set up the lab: {error}", file=sys.stderr)
        return 2
    workdir = Path(tempfile.mkdtemp(prefix="haproxy-lab-rehearsal-"))
    ok = False
    try:
        with LocalLab(setup.lb, setup.servers, workdir, progress, disposable_workdir=not args.keep_logs) as local_lab:
            progress(f"stack {args.stack}: {len(local_lab.servers)} web servers, logs in {workdir}")
            try:
                local_lab.start()
            except (RuntimeError, OSError) as error:
                print(f"rehearsal: the lab did not start: {error}", file=sys.stderr)
                return 2
            results = run_checks(
                local_lab,
                balance=plan.haproxy.balance,
                drill_seconds=args.drill_seconds,
                spare=setup.spare,
                progress=progress,
            )
            print()
            print(format_table(results))
            ok = all(result.passed for result in results)
            print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'} ({len(results)} checks)", flush=True)
            if args.keep:
                print(f"\nload balancer: http://{local_lab.lb.host}:{local_lab.lb.port}/")
                print(f"stats page:    http://{local_lab.lb.host}:{local_lab.lb.stats_port}/stats")
                print(f"credentials:   {local_lab.lb.stats_user} / {local_lab.lb.stats_password}")
                print("the lab keeps running: press Ctrl-C to stop it", flush=True)
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        print("\nrehearsal: interrupted, stopping every process", file=sys.stderr)
        return 130 if not args.keep else (0 if ok else 1)
    finally:
        if args.keep_logs:
            print(f"rehearsal: logs kept in {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
            if not ok:
                print("rehearsal: logs removed; run again with --keep-logs to keep them", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
