"""The day-2 drills under the 16-client load: a rolling update of every web server, and adding then
removing a web server.

Why through the shipped scripts: the rehearsal's HAProxy is driven exactly like the VM's, by
haproxy-server-state.sh (drain/ready on the admin socket) and apply-haproxy-cfg.sh (reload confirmed
through the master CLI), so a PASS covers what `pulumi up` runs, in the order it must run it.
"""

from __future__ import annotations

import csv
import io
import subprocess
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass, field

from rehearsal import lab_scripts
from rehearsal.checks import STATE_TIMEOUT
from rehearsal.load import LoadResult, run_load
from rehearsal.local_lab import LocalLab, ServerSpec
from rehearsal.poll import poll_until
from rehearsal.progress import seconds
from rehearsal.results import CheckResult

MAX_DRILL_SECONDS = 120.0
SPARE_SHARE = 100  # requests the added server must have served before it is removed


@dataclass
class BackgroundLoad:
    """The drills' load: `concurrency` clients until stop(), in a thread (bounded by MAX_DRILL_SECONDS)."""

    local_lab: LocalLab
    expected: Collection[str]
    concurrency: int = 16
    _stop: threading.Event = field(default_factory=threading.Event)
    _box: list[LoadResult] = field(default_factory=list)
    _thread: threading.Thread | None = None

    def __enter__(self) -> BackgroundLoad:
        def load() -> None:
            self._box.append(
                run_load(
                    self.local_lab.lb.host,
                    self.local_lab.lb.port,
                    concurrency=self.concurrency,
                    seconds=MAX_DRILL_SECONDS,
                    expected=self.expected,
                    stop=self._stop,
                )
            )

        self._thread = threading.Thread(target=load, name="day2-load", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)

    def result(self) -> LoadResult:
        if not self._box:
            raise RuntimeError("the load generator did not finish")
        return self._box[0]


def _script_ok(step: str, result: subprocess.CompletedProcess[str], problems: list[str]) -> bool:
    if result.returncode == 0:
        return True
    problems.append(f"{step}: exit {result.returncode}: {result.stderr.strip().splitlines()[-1:]}")
    return False


def _load_figures(result: LoadResult) -> str:
    figures = f"{result.total} req, failed {len(result.failed)}, slowest {result.slowest:.2f} s"
    if result.failed:
        figures += f" ({result.error_summary()})"
    return figures


def rolling_update(local_lab: LocalLab, concurrency: int = 16) -> CheckResult:
    """Each server in turn: drain it (script), restart it (graceful stop, start, answers directly), ready it
    (script: waits for its health check). Passes with every step done and no failed request."""
    problems: list[str] = []
    per_server: list[str] = []
    with BackgroundLoad(local_lab, local_lab.messages, concurrency) as load:
        for index, server in enumerate(list(local_lab.servers)):
            begin = time.monotonic()
            if not _script_ok(
                f"drain {server.name}", lab_scripts.server_state(local_lab, "drain", server.name), problems
            ):
                break
            drained = time.monotonic()
            local_lab.stop_server(index)
            local_lab.start_server(index)
            local_lab.wait_server_ready(index)
            restarted = time.monotonic()
            if not _script_ok(
                f"ready {server.name}", lab_scripts.server_state(local_lab, "ready", server.name), problems
            ):
                break
            done = time.monotonic()
            per_server.append(
                f"{server.name} {done - begin:.2f} s (drain {drained - begin:.2f}, restart "
                f"{restarted - drained:.2f}, ready {done - restarted:.2f})"
            )
    result = load.result()
    states = local_lab.server_states()
    all_up = all(states.get(server.name) == "UP" for server in local_lab.servers)
    passed = not problems and not result.failed and all_up and len(per_server) == len(local_lab.servers)
    figures = f"{_load_figures(result)}; per server: {', '.join(per_server) or 'none'}"
    if problems:
        figures += f"; {'; '.join(problems)}"
    return CheckResult("rolling update", passed, figures)


def _served_by(result: LoadResult, message: str, after: float) -> int:
    return sum(1 for outcome in result.outcomes if outcome.ok and outcome.body == message and outcome.start >= after)


def _wait_sessions(local_lab: LocalLab, name: str, count: int) -> None:
    """Wait (bounded) until HAProxy has sent `count` sessions to server `name` (stats column stot)."""

    def served() -> bool:
        rows = csv.DictReader(io.StringIO(local_lab.stats_csv().removeprefix("# ")))
        return any(row["svname"] == name and int(row["stot"] or 0) >= count for row in rows)

    poll_until(served, STATE_TIMEOUT, 0.05)


def server_set(local_lab: LocalLab, spare: ServerSpec, concurrency: int = 16) -> CheckResult:
    """Add a web server (start it, then reload HAProxy with it), then remove it (reload without it, wait
    for the old workers to finish, then stop it). Passes with both reloads confirmed, the new server
    answering clients in between, and no failed request."""
    problems: list[str] = []
    before = list(local_lab.servers)
    added_at = reload_in = removed_in = old_gone_in = None
    up_after: float | None = None
    with BackgroundLoad(local_lab, local_lab.messages | {spare.message}, concurrency) as load:
        begin = time.monotonic()
        index = local_lab.add_server(spare)
        started = time.monotonic()
        with_spare = lab_scripts.apply_config(local_lab, lab_scripts.render_for(local_lab, [*before, spare]))
        if _script_ok("reload with the new server", with_spare, problems):
            added_at = time.monotonic()
            reload_in = added_at - started
            waited = local_lab.wait_states(lambda states: states.get(spare.name) == "UP", STATE_TIMEOUT)
            up_after = None if waited is None else time.monotonic() - added_at
            _wait_sessions(local_lab, spare.name, SPARE_SHARE)
        removal = time.monotonic()
        if _script_ok(
            "reload without it",
            lab_scripts.apply_config(local_lab, lab_scripts.render_for(local_lab, before)),
            problems,
        ):
            removed_in = time.monotonic() - removal
            lab_scripts.wait_old_workers_gone(local_lab)
            old_gone_in = time.monotonic() - removal
        local_lab.remove_server(index)
        time.sleep(0.5)  # the load goes on a moment after the stop: none of those requests may fail
    result = load.result()
    answered = 0 if added_at is None else _served_by(result, spare.message, added_at)
    passed = not problems and not result.failed and answered > 0 and up_after is not None
    figures = (
        f"{_load_figures(result)}; +{spare.name}: started in {started - begin:.2f} s, reload confirmed "
        f"{seconds(reload_in)}, UP {seconds(up_after)} later, {answered} answers; -{spare.name}: reload confirmed "
        f"{seconds(removed_in)}, old workers gone {seconds(old_gone_in)}, then stopped"
    )
    if problems:
        figures += f"; {'; '.join(problems)}"
    return CheckResult("server set", passed, figures)
