"""`./tools/e2e` (python -m e2e): the whole life of a stack on this machine, a table of checks and figures,
one JSON line at the end. Root only (guests are systemd-nspawn containers on a bridge of ours).

    ./tools/e2e [--stack FILE | --shape ha] [--keep] [--keep-logs] [--json] [--no-day2]

--stack FILE: a Pulumi.<stack>.yaml whose every address is in 198.18.0.0/15 (else refused before anything
starts); default: the dev stack's shape (--shape ha: Pulumi.ha.yaml's) moved onto 198.18.50.0/24, written as
Pulumi.e2e.yaml in the run's workspace.
--keep: after the flow (before destroy), print how to reach the lab and wait for Ctrl-C; then destroy.
--keep-logs: keep the run's directory (engine workspace, fake's sshd log, guests' consoles, proxy log).
--json: stdout is the JSON line alone (progress and the table go to stderr).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from e2e.day2 import CHANGES
from e2e.engine import find_engine
from e2e.flow import destroy_row, run_flow
from e2e.guests.machines import sweep_killed_runs
from e2e.lab import LabRun
from e2e.stack import free_cidr, load_plan, refuse_routed, repository_plan
from plan.model import ConfigError
from plan.parse import parse_lab_config
from rehearsal.progress import stop_like_ctrl_c
from rehearsal.results import CheckResult, format_table


def _args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="./tools/e2e", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", type=Path, help="a stack file, every address in 198.18.0.0/15")
    parser.add_argument("--keep", action="store_true", help="keep the lab running until Ctrl-C, then destroy")
    parser.add_argument("--keep-logs", action="store_true", help="keep the run's directory")
    parser.add_argument("--json", action="store_true", help="stdout: the JSON line alone")
    parser.add_argument("--shape", choices=("dev", "ha"), default="dev", help="the default stack's shape")
    parser.add_argument("--no-day2", action="store_true", help="up, the report's tests, no drift, destroy")
    parser.add_argument("--day2", help="only these day-2 changes, comma-separated (e.g. 'message,vmId')")
    return parser.parse_args(argv)


def _plan(args: argparse.Namespace) -> dict[str, Any]:
    sweep_killed_runs()  # before choosing the network: a killed run's bridge still routes its own
    plan = load_plan(args.stack) if args.stack else repository_plan(args.shape, free_cidr())
    refuse_routed(plan, str(args.stack or "the e2e stack"))
    try:
        parse_lab_config({key.split(":", 1)[1]: value for key, value in plan.items()})
    except ConfigError as error:
        raise ValueError(f"{args.stack or 'the e2e stack'}: {error}") from None
    return plan


def _keep(lab: Any, out: TextIO) -> None:
    config = lab.config
    print(
        f"lab running: site http://{config.site_ip}/ (from the client namespace: ip netns exec {lab.client.netns} "
        f"curl ...); ssh -i {lab.key.private} {config.ssh.user}@<vm ip>; stack {lab.workspace.stack_file}; "
        "Ctrl-C to destroy and clean up",
        file=out,
        flush=True,
    )
    signal.pause()


def main(argv: list[str]) -> int:
    args = _args(argv)
    out = sys.stderr if args.json else sys.stdout
    try:
        plan = _plan(args)
        unknown = sorted(set((args.day2 or "").split(",")) - {"", *CHANGES})
        if unknown:
            raise ValueError(f"--day2: unknown change(s) {unknown}; known: {', '.join(CHANGES)}")
    except ValueError as error:
        print(f"e2e: {error}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print("e2e: run it as root (guests are systemd-nspawn containers on a bridge of ours)", file=sys.stderr)
        return 2
    engine = find_engine()
    if engine is None:
        print("e2e: no Pulumi engine: run tools/setup.sh test (tools/build-pulumi.sh)", file=sys.stderr)
        return 2
    stop_like_ctrl_c()
    started = time.monotonic()
    load_before = os.getloadavg()
    rows: list[CheckResult] = []
    figures: dict[str, Any] = {}
    run = LabRun(plan, engine, keep_logs=args.keep_logs)
    interrupted = ""
    try:
        with run as lab:
            figures = lab.figures
            print(f"e2e: lab ready (workspace {lab.workspace.project}); pulumi up ...", file=out, flush=True)
            only = None if args.day2 is None else set(args.day2.split(","))
            run_flow(lab, rows, with_day2=not args.no_day2, destroy=not args.keep, only=only)
            if args.keep:
                with contextlib.suppress(KeyboardInterrupt):
                    _keep(lab, out)
                rows.append(destroy_row(lab))
    except KeyboardInterrupt as stop:
        interrupted = f"interrupted ({stop or 'Ctrl-C'})"
    except Exception as error:
        rows.append(CheckResult("harness", False, f"{type(error).__name__}: {str(error)[-1500:]}"))
    left = run.left
    rows.append(
        CheckResult(
            "nothing left", not left, "; ".join(left) or "no guest, overlay, cgroup, bridge, netns, proxy or process"
        )
    )
    figures["total s"] = round(time.monotonic() - started, 1)
    figures["load average before, after"] = f"{load_before[0]:.1f}, {os.getloadavg()[0]:.1f} ({os.cpu_count()} cores)"
    passed = bool(rows) and all(row.passed for row in rows) and not interrupted
    print(format_table(rows), file=out)
    for name, value in figures.items():
        print(f"    {name}: {value}", file=out)
    print(("all checks passed" if passed else f"FAILED {interrupted}").strip(), file=out, flush=True)
    summary = {
        "passed": passed,
        "rows": [{"check": row.name, "result": row.result, "figures": row.figures} for row in rows],
        "figures": figures,
    }
    print(json.dumps(summary), flush=True)
    return 0 if passed else 1


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
