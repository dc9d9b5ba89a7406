"""The rehearsal's six checks (the report's four tests, plus a crash drill and a hang drill under load).

Why result objects: the CLI prints them as a table, the tests assert on them, and the benchmark reuses
the drills' figures for both setups. Every wait here is bounded.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Literal

from rehearsal.balance import ORDERED_BALANCES, keeps_promise
from rehearsal.load import LoadResult, connect, run_load, sequential
from rehearsal.local_lab import LocalLab
from rehearsal.progress import seconds
from rehearsal.results import CheckResult
from rehearsal.stats import basic_auth_header
from rehearsal.tls import client_context

STATE_TIMEOUT = 15.0


@dataclass(frozen=True)
class DrillResult:
    """What a fault drill measured: requests, failures (all / started after the fault), detection, recovery."""

    kind: str
    server: str
    total: int
    failed: int
    failed_after_fault: int
    down_after: float | None
    up_after: float | None
    slowest: float
    errors: str

    def check(self, name: str) -> CheckResult:
        """The drill as a table row: passes with no failure after the fault, DOWN detected, server back UP."""
        passed = self.failed_after_fault == 0 and self.down_after is not None and self.up_after is not None
        figures = (
            f"{self.total} req, failed {self.failed} (after fault {self.failed_after_fault}); "
            f"{self.server} DOWN after {seconds(self.down_after)}, back UP {seconds(self.up_after)}; "
            f"slowest {self.slowest:.2f} s"
        )
        if self.errors:
            figures += f"; errors: {self.errors}"
        return CheckResult(name, passed, figures)


def _is_down(status: str | None) -> bool:
    return status is not None and (status == "DOWN" or status.startswith("DOWN "))


def _abbreviate(answers: list[str]) -> str:
    shown = ", ".join(answers[:12])
    return shown + (f", ... ({len(answers)} in all)" if len(answers) > 12 else "")


def in_rotation(answers: list[str], messages: Collection[str]) -> bool:
    """With N distinct messages, every N consecutive answers name each of them once."""
    n = len(messages)
    windows = [answers[i : i + n] for i in range(len(answers) - n + 1)]
    return bool(windows) and all(set(window) == set(messages) for window in windows)


def round_robin(local_lab: LocalLab, balance: str = "roundrobin") -> CheckResult:
    """Test 1: sequential requests; with N servers, every N consecutive answers name each server once
    (another algorithm is held to its own promise: rehearsal.balance)."""
    if balance not in ORDERED_BALANCES:
        verdict = keeps_promise(local_lab, balance)
        return CheckResult("round-robin", verdict.kept, f"{verdict.promise}: {_abbreviate(verdict.answers)}")
    n = len(local_lab.servers)
    outcomes = sequential(local_lab.lb.host, local_lab.lb.port, max(6, 2 * n), local_lab.messages)
    answers = [o.body if o.ok else f"<{o.error}>" for o in outcomes]
    all_ok = all(o.ok for o in outcomes)
    return CheckResult("round-robin", all_ok and in_rotation(answers, local_lab.messages), _abbreviate(answers))


def _stats_listener_status(local_lab: LocalLab, path: str, *, with_credentials: bool) -> int:
    """The HTTP status the stats listener answers for `path`, with or without the stats credentials."""
    context = None if local_lab.lb.ca_file is None else client_context(local_lab.lb.ca_file)
    conn = connect(local_lab.lb.host, local_lab.lb.stats_port, 5, None, context)
    try:
        headers = {}
        if with_credentials and local_lab.lb.stats_user and local_lab.lb.stats_password:
            headers["Authorization"] = basic_auth_header(local_lab.lb.stats_user, local_lab.lb.stats_password)
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def stats_page(local_lab: LocalLab) -> CheckResult:
    """Test 2: with credentials the stats CSV shows every server UP; without them the page answers 401."""
    states = local_lab.server_states()
    all_up = all(states.get(server.name) == "UP" for server in local_lab.servers)
    anonymous = _stats_listener_status(local_lab, f"{local_lab.lb.stats_uri};csv", with_credentials=False)
    metrics = _stats_listener_status(local_lab, "/metrics", with_credentials=True)
    listed = ", ".join(f"{name} {status}" for name, status in states.items())
    figures = f"{listed}; no credentials -> {anonymous}; /metrics -> {metrics}"
    return CheckResult("stats", all_up and anonymous == 401, figures)


def failover(local_lab: LocalLab, index: int = 0) -> CheckResult:
    """Test 3: stop one server gracefully (like `docker stop`); every request is answered by the others."""
    name, message = local_lab.servers[index].name, local_lab.servers[index].message
    local_lab.stop_server(index)
    outcomes = sequential(local_lab.lb.host, local_lab.lb.port, max(6, 2 * len(local_lab.servers)), local_lab.messages)
    down_after = local_lab.wait_states(lambda states: _is_down(states.get(name)), STATE_TIMEOUT)
    answers = [o.body if o.ok else f"<{o.error}>" for o in outcomes]
    passed = all(o.ok for o in outcomes) and message not in answers and down_after is not None
    figures = f"{name} stopped: {_abbreviate(answers)}; marked DOWN {seconds(down_after)} after the requests"
    return CheckResult("failover", passed, figures)


def recovery(local_lab: LocalLab, index: int = 0, balance: str = "roundrobin") -> CheckResult:
    """Test 4: restart the stopped server; it is back UP, answers again, and the strict rotation resumes
    (another algorithm is held to its own promise with every server back: rehearsal.balance).

    Depending on where in roundrobin's window the server comes back, HAProxy may first give it the rest of
    the window (a short burst, docs/haproxy-cfg.md "The report's test 4"), so requests go on, in rounds of
    N, until the last 2N answers are a clean rotation again: bounded at 8N + the burst.
    """
    name, message = local_lab.servers[index].name, local_lab.servers[index].message
    n = len(local_lab.servers)
    start = time.monotonic()
    local_lab.start_server(index)
    waited = local_lab.wait_states(lambda states: states.get(name) == "UP", STATE_TIMEOUT)
    up_after = None if waited is None else time.monotonic() - start
    if balance not in ORDERED_BALANCES:
        # No rotation to wait for: the lab with every server back must keep the algorithm's own promise.
        verdict = keeps_promise(local_lab, balance)
        figures = f"{name} restarted, UP {seconds(up_after)} after start; {verdict.promise}: "
        return CheckResult("recovery", up_after is not None and verdict.kept, figures + _abbreviate(verdict.answers))
    answers: list[str] = []
    all_ok = True
    ordered = False
    while len(answers) < 8 * n + 12:
        outcomes = sequential(local_lab.lb.host, local_lab.lb.port, n, local_lab.messages)
        all_ok = all_ok and all(o.ok for o in outcomes)
        answers.extend(o.body if o.ok else f"<{o.error}>" for o in outcomes)
        if len(answers) >= 2 * n and in_rotation(answers[-2 * n :], local_lab.messages):
            ordered = True
            break
    passed = up_after is not None and all_ok and message in answers and ordered
    rotation = f"strict rotation again after {len(answers)} requests" if ordered else "no strict rotation"
    figures = f"{name} restarted, UP {seconds(up_after)} after start; {rotation}: {_abbreviate(answers)}"
    return CheckResult("recovery", passed, figures)


def fault_drill(
    local_lab: LocalLab,
    index: int,
    kind: Literal["crash", "hang"],
    *,
    seconds: float = 10.0,
    concurrency: int = 16,
    fault_at: float = 2.0,
    down_timeout: float = STATE_TIMEOUT,
    https: bool = False,
) -> DrillResult:
    """Concurrent load for `seconds` (kept-alive HTTPS clients verifying the lab CA with `https`); at `fault_at` the
    server's whole process group is SIGKILLed (crash) or SIGSTOPped (hang). Then the killed server is restarted /
    the frozen one continued, and must come back UP."""
    server = local_lab.servers[index]
    box: list[LoadResult] = []
    port, context = local_lab.lb.port, None
    if https:
        if local_lab.lb.https_port is None or local_lab.lb.ca_file is None:
            raise RuntimeError("this lab does not serve HTTPS")
        port, context = local_lab.lb.https_port, client_context(local_lab.lb.ca_file)

    def load() -> None:
        box.append(
            run_load(
                local_lab.lb.host,
                port,
                concurrency=concurrency,
                seconds=seconds,
                expected=local_lab.messages,
                context=context,
            )
        )

    thread = threading.Thread(target=load, name=f"{kind}-drill-load", daemon=True)
    begin = time.monotonic()
    thread.start()
    fault_time = 0.0
    try:
        time.sleep(max(0.0, begin + fault_at - time.monotonic()))
        if kind == "crash":
            local_lab.kill_server(index)
        else:
            local_lab.signal_server(index, signal.SIGSTOP)
        # Once the signal is sent: the load's 16 threads may hold the GIL between a timestamp and the signal,
        # and a request started in that gap can be cut mid-answer (seen: IncompleteRead in a hang drill).
        fault_time = time.monotonic()
        waiting_since = time.monotonic()
        waited_down = local_lab.wait_states(
            lambda states: _is_down(states.get(server.name)), max(down_timeout, seconds - fault_at)
        )
        down_after = None if waited_down is None else waiting_since + waited_down - fault_time
        thread.join(timeout=seconds + 30)
    finally:
        if kind == "hang":
            local_lab.signal_server(index, signal.SIGCONT)
    restart = time.monotonic()
    if kind == "crash":
        local_lab.start_server(index)
    waited = local_lab.wait_states(lambda states: states.get(server.name) == "UP", STATE_TIMEOUT)
    up_after = None if waited is None else time.monotonic() - restart
    if not box:
        raise RuntimeError("the load generator did not finish")
    result = box[0]
    return DrillResult(
        kind=kind,
        server=server.name,
        total=result.total,
        failed=len(result.failed),
        failed_after_fault=len(result.failed_started_after(fault_time)),
        down_after=down_after,
        up_after=up_after,
        slowest=result.slowest,
        errors=result.error_summary(),
    )
