"""`python -m rehearsal` (README command #1, `./tools/rehearse`): run the stack's plan for real on this machine
and print its checks as a table.

Two labs, one command line: by default the dev stack on loopback (real HAProxy and web servers: the
report's four tests, a crash and a hang drill, a rolling update, a server added then removed); with
`--ha` the HA pair of the ha stack in network namespaces (keepalived + HAProxy x 2, five failover drills
under load; needs root). Why a CLI of its own: it proves, before any VM exists, that the shipped
haproxy.cfg template, keepalived.conf, web app and scripts behave as the README says.
Exit status: 0 when every check passes, 1 when one fails, 2 when the lab could not be set up. Every
process (and namespace) is removed on every exit; the work directory (logs, haproxy.cfg with the run's
throw-away password) too, unless --keep-logs.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

from plan.model import ConfigError
from plan.stack_file import load_stack_file
from rehearsal import checks, day2, tls
from rehearsal.ha.drills import run_drills
from rehearsal.ha.netns_pair import HaPair
from rehearsal.local_lab import LocalLab, ServerSpec
from rehearsal.loopback import rehearsal_setup
from rehearsal.progress import progress, stop_like_ctrl_c
from rehearsal.results import CheckResult, format_table


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (see --help)."""
    parser = argparse.ArgumentParser(
        prog="python -m rehearsal",
        description="Run the lab's plan on loopback (real HAProxy + the web app under serve.py) and check balancing, "
        "stats, failover, recovery, a crash drill, a hang drill, a rolling update and a server added then removed; "
        "with --ha, the HA pair in network namespaces instead (as root), drilled under load: HAProxy killed, "
        "power off, return, freeze, VRRP cut.",
    )
    parser.add_argument("--ha", action="store_true", help="the active/standby pair (keepalived) in network namespaces")
    parser.add_argument("--stack", default=None, help="stack whose Pulumi.<stack>.yaml plan to use (default: dev; ha)")
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
    args.stack = args.stack or ("ha" if args.ha else "dev")
    if args.web_servers is not None and args.web_servers < 1:
        parser.error("--web-servers must be at least 1")
    if not args.ha and args.web_servers is not None and args.web_servers < 2:
        parser.error("--web-servers must be at least 2 (failover needs a second server)")
    if not 4.0 <= args.drill_seconds <= 120.0:
        parser.error("--drill-seconds must be between 4 and 120 (the fault comes at 2 s)")
    if not 1 <= args.workers <= 16:
        parser.error("--workers must be between 1 and 16")
    return args


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
    https: bool = False,
) -> list[CheckResult]:
    """The six checks and the two day-2 drills, then with `https` the TLS rows, in order, on a started lab; an
    unexpected error becomes a FAIL row, not a crash."""
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
    if https:
        steps += tls_steps(local_lab, n, drill_seconds)
    results: list[CheckResult] = []
    for name, step in steps:
        progress(f"check: {name}")
        try:
            results.append(step())
        except Exception as error:  # reported as a failed check, the run goes on
            results.append(CheckResult(name, False, f"error: {error}"))
        progress(f"  {results[-1].result}: {results[-1].figures}")
    return results


def tls_steps(local_lab: LocalLab, n: int, drill_seconds: float) -> list[tuple[str, Callable[[], CheckResult]]]:
    """The HTTPS rows (the plan's `tls` on): HTTPS and h2, stats over TLS only, a rotation and the drills under
    HTTPS load."""

    def drill(index: int, kind: Literal["crash", "hang"]) -> CheckResult:
        result = checks.fault_drill(local_lab, index, kind, seconds=drill_seconds, https=True)
        return result.check(f"{kind} drill https")

    return [
        ("https", lambda: tls.https_row(local_lab)),
        ("stats over TLS", lambda: tls.stats_tls_row(local_lab)),
        ("tls rotation", lambda: tls.rotation(local_lab, seconds=drill_seconds).check()),
        ("crash drill https", lambda: drill(1 % n, "crash")),
        ("hang drill https", lambda: drill(0, "hang")),
    ]


class Run:
    """One lab of either kind, as the command line drives it: set up, start, check, say how to reach it."""

    def __init__(self, args: argparse.Namespace, workdir: Path) -> None:
        """Raises ConfigError, OSError, ValueError or RuntimeError when the lab cannot be set up."""
        self.args = args
        plan = load_stack_file(args.stack)
        self.balance = plan.haproxy.balance
        self.spare: ServerSpec | None = None
        self.lab: LocalLab | HaPair
        options = {"haproxy_bin": args.haproxy, "workers": args.workers}
        if args.ha:
            self.lab = HaPair(
                plan, workdir, progress, web_servers=args.web_servers, disposable_workdir=not args.keep_logs, **options
            )
        else:
            setup = rehearsal_setup(plan, args.web_servers, tls_dir=workdir / "tls", **options)
            self.lab = LocalLab(setup.lb, setup.servers, workdir, progress, disposable_workdir=not args.keep_logs)
            self.spare = setup.spare
            progress(f"stack {args.stack}: {len(setup.servers)} web servers, logs in {workdir}")

    def rows(self) -> list[CheckResult]:
        """The checks (loopback) or the drills (HA pair), run on the started lab."""
        if isinstance(self.lab, HaPair):
            # TLS on: one certificate on the virtual IP and on both load balancers, before any drill moves it.
            rows = [tls.pair_row(self.lab.served_serials())] if self.lab.ca_file is not None else []
            return rows + [drill.check() for drill in run_drills(self.lab, self.args.drill_seconds, progress)]
        return run_checks(
            self.lab,
            balance=self.balance,
            drill_seconds=self.args.drill_seconds,
            spare=self.spare,
            progress=progress,
            https=self.lab.lb.https_port is not None,
        )

    def access(self) -> list[str]:
        """How to reach the running lab (--keep)."""
        lab = self.lab
        if isinstance(lab, HaPair):
            return [
                f"site (from the client namespace {lab.net.hosts['client'].namespace}): http://{lab.vip}/",
                f"credentials:   {lab.stats_user} / {lab.stats_password}",
            ]
        https = lab.lb.https_port is not None
        return [
            f"load balancer: http://{lab.lb.host}:{lab.lb.port}/",
            *([f"over HTTPS:    https://{lab.lb.host}:{lab.lb.https_port}/ (CA: {lab.lb.ca_file})"] if https else []),
            f"stats page:    http{'s' if https else ''}://{lab.lb.host}:{lab.lb.stats_port}/stats",
            f"credentials:   {lab.lb.stats_user} / {lab.lb.stats_password}",
        ]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the rehearsal; the exit status says whether every check passed."""
    args = parse_args(argv)
    stop_like_ctrl_c()  # SIGTERM/SIGHUP: the same clean stop as Ctrl-C, every process (and namespace) removed
    workdir = Path(tempfile.mkdtemp(prefix="haproxy-lab-ha-" if args.ha else "haproxy-lab-rehearsal-"))
    ok = False
    try:
        try:
            run = Run(args, workdir)
        except (ConfigError, OSError, ValueError, RuntimeError) as error:
            print(f"rehearsal: cannot set up the lab: {error}", file=sys.stderr)
            return 2
        with run.lab:
            try:
                run.lab.start()
            except (RuntimeError, OSError) as error:
                print(f"rehearsal: the lab did not start: {error}", file=sys.stderr)
                return 2
            rows = run.rows()
            print()
            print(format_table(rows))
            ok = all(row.passed for row in rows)
            print(f"\n{'all checks passed' if ok else 'SOME CHECKS FAILED'} ({len(rows)} checks)", flush=True)
            if args.keep:
                print("", *run.access(), sep="\n")
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
