"""`python -m rehearsal.ha` (also `python -m rehearsal --ha`, `./tools/rehearse --ha`): the HA pair for real.

Builds the stack's active/standby pair in network namespaces (real keepalived and HAProxy in the two
load-balancer namespaces, the real web app in the web-server namespaces, one client namespace, a bridge
with no route out, addresses from 198.18.0.0/15), runs the five drills under load and prints their
figures. Needs root. Exit status: 0 when every drill passes, 1 when one fails, 2 when the pair could not
be set up. Every process, namespace, veth and the bridge are removed on every exit (Ctrl-C, SIGTERM too).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

from plan.model import ConfigError
from plan.stack_file import load_stack_file
from rehearsal.checks import CheckResult
from rehearsal.ha.drills import run_drills
from rehearsal.ha.pair import HaPair
from rehearsal.progress import progress, stop_like_ctrl_c


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m rehearsal --ha",
        description="Run the stack's HA pair (keepalived + HAProxy x 2, the web servers) in network namespaces "
        "and drill it under load: HAProxy killed, power off, return, freeze, VRRP cut. Needs root.",
    )
    parser.add_argument("--stack", default="ha", help="stack whose Pulumi.<stack>.yaml plan to use (default: ha)")
    parser.add_argument("--web-servers", type=int, default=None, metavar="N", help="web servers (default: the plan's)")
    parser.add_argument("--drill-seconds", type=float, default=10.0, metavar="S", help="load per drill (10)")
    parser.add_argument("--keep", action="store_true", help="leave the pair running after the drills until Ctrl-C")
    parser.add_argument("--haproxy", default=None, metavar="PATH", help="haproxy binary (default: haproxy on PATH)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes per web server (default: 2)")
    args = parser.parse_args(argv)
    if args.web_servers is not None and args.web_servers < 1:
        parser.error("--web-servers must be at least 1")
    if not 4.0 <= args.drill_seconds <= 120.0:
        parser.error("--drill-seconds must be between 4 and 120 (the fault comes at 2 s)")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be between 1 and 16")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the HA rehearsal; the exit status says whether every drill passed."""
    from rehearsal.__main__ import format_table  # the same table as the single-LB rehearsal

    args = parse_args(argv)
    stop_like_ctrl_c()  # SIGTERM/SIGHUP: the same clean stop as Ctrl-C, namespaces removed
    workdir = Path(tempfile.mkdtemp(prefix="haproxy-lab-ha-"))
    ok = False
    try:
        try:
            plan = load_stack_file(args.stack)
            pair = HaPair(
                plan, workdir, progress, web_servers=args.web_servers, haproxy_bin=args.haproxy, workers=args.workers
            )
        except (ConfigError, OSError, ValueError, RuntimeError) as error:
            print(f"rehearsal --ha: cannot set up the pair: {error}", file=sys.stderr)
            return 2
        with pair:
            try:
                pair.start()
            except (OSError, RuntimeError) as error:
                print(f"rehearsal --ha: the pair did not start: {error}", file=sys.stderr)
                return 2
            drills = run_drills(pair, args.drill_seconds, progress)
            rows: list[CheckResult] = [drill.check() for drill in drills]
            print()
            print(format_table(rows))
            ok = all(row.passed for row in rows)
            print(f"\n{'all drills passed' if ok else 'SOME DRILLS FAILED'} ({len(rows)} drills)", flush=True)
            if args.keep:
                print(f"\nsite (from the client namespace {pair.net.hosts['client'].namespace}): http://{pair.vip}/")
                print(f"credentials:   {pair.stats_user} / {pair.stats_password}")
                print("the pair keeps running: press Ctrl-C to remove it", flush=True)
                while True:
                    time.sleep(3600)
    except KeyboardInterrupt:
        print("\nrehearsal --ha: interrupted, removing every process and namespace", file=sys.stderr)
        return 130 if not args.keep else (0 if ok else 1)
    finally:
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"rehearsal --ha: logs kept in {workdir}", file=sys.stderr)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
