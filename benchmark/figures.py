"""The benchmark's figures: what one run of each setup measured, the goals, the tables and the JSON
summary. Pure: nothing here starts a process or opens a socket."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from benchmark.slow_body import SlowBodyResult
from benchmark.throughput import Throughput
from rehearsal.checks import DrillResult
from rehearsal.load import FAIL_AFTER
from rehearsal.progress import seconds

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


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:,.{digits}f}"


def _after_fault(drill: DrillResult | None) -> str:
    return "-" if drill is None else f"{drill.failed} / {drill.failed_after_fault} of {drill.total:,}"


def _slowest(drill: DrillResult | None) -> str:
    if drill is None:
        return "-"
    capped = " (client cap)" if drill.slowest >= FAIL_AFTER - 0.05 else ""
    return f"{drill.slowest:.2f} s{capped}"


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
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
    return table(head, rows)


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
