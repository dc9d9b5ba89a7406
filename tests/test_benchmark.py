"""The benchmark: its parsers and parts, and a tiny real run whose --json line must hold every figure.

Why a real run: the JSON is what the docs' figures come from; only running HAProxy, granian and the
report's Werkzeug for real proves the keys are there and the measures mean what they say (keep-alive
shows as few server connections, the report's setup as one per request). No timing is asserted.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmark.candidates import CANDIDATES, SHIPPED, by_key
from benchmark.ceiling import ceiling_cfg
from benchmark.resources import cpu_seconds, pss_mib, rss_mib
from benchmark.throughput import parse_wrk, parse_wrk_p99
from plan.model import LabConfig
from rehearsal.loopback import rehearsal_setup

REPO = Path(__file__).resolve().parent.parent

WRK_OUTPUT = """Running 5s test @ http://127.0.0.30:40000/
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     4.10ms    1.20ms  30.00ms   90.00%
    Req/Sec     7.80k   300.00     8.10k    80.00%
  Latency Distribution
     50%    3.90ms
     75%    4.50ms
     90%    5.20ms
     99%   12.34ms
  38912 requests in 5.00s, 6.02MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   7782.40
"""


def test_wrk_summary_and_p99_are_read() -> None:
    assert parse_wrk(WRK_OUTPUT) == (38912, 5.0, 7)
    assert parse_wrk_p99(WRK_OUTPUT) == pytest.approx(0.01234)
    assert parse_wrk_p99(WRK_OUTPUT.replace("12.34ms", "1.02s")) == pytest.approx(1.02)
    assert parse_wrk_p99(WRK_OUTPUT.replace("12.34ms", "950.00us")) == pytest.approx(0.00095)
    assert parse_wrk_p99("  38912 requests in 5.00s, 6.02MB read\n") is None


def test_every_candidate_serves_the_same_app_on_the_planned_ports(dev: LabConfig) -> None:
    """Only the server's command changes between candidates: ports, hosts, messages, HAProxy stay the same."""
    setup = rehearsal_setup(dev, 2)
    for candidate in CANDIDATES:
        applied = candidate.apply(setup, workers=1)
        assert applied.lb == setup.lb
        for before, after in zip(setup.servers, applied.servers, strict=True):
            assert (after.name, after.host, after.port, after.message, after.cwd) == (
                before.name,
                before.host,
                before.port,
                before.message,
                before.cwd,
            )
            assert after.env["MESSAGE"] == before.message
            assert after.env["FORWARDED_ALLOW_IPS"] == before.env["FORWARDED_ALLOW_IPS"]
    shipped = by_key(SHIPPED).apply(setup, workers=1)
    assert [s.argv for s in shipped.servers] == [s.argv for s in setup.servers]  # the rehearsal's own command
    with pytest.raises(ValueError, match="known"):
        by_key("tornado")


def test_ceiling_config_is_valid_haproxy(tmp_path: Path) -> None:
    cfg = tmp_path / "ceiling.cfg"
    cfg.write_text(ceiling_cfg("127.0.0.29:8999"), encoding="utf-8")
    result = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert 'http-request return status 200 content-type text/plain string "ok"' in cfg.read_text()


def test_resources_of_this_process_group() -> None:
    group = os.getpgrp()
    assert rss_mib(group) > 1.0
    assert 0 < pss_mib(group) <= rss_mib(group) + 0.5
    before = cpu_seconds([group])
    sum(i * i for i in range(2_000_000))  # burn a little CPU
    assert cpu_seconds([group]) > before


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_tiny_run_ends_with_one_json_line_holding_every_figure() -> None:
    result = subprocess.run(
        [
            *(sys.executable, "-m", "benchmark", "--json", "--candidates", SHIPPED),
            *("--rounds", "1", "--throughput-seconds", "1", "--drill-seconds", "4"),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert result.returncode in (0, 1), result.stdout[-3000:] + result.stderr[-3000:]  # 1: a goal missed
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    for key in ("throughput_2_servers", "throughput_1_server"):
        assert set(summary[key]) == {"ours", "report", "ratio"}
        assert summary[key]["ours"] > 0
        assert summary[key]["report"] > 0
        assert summary[key]["ratio"] == pytest.approx(summary[key]["ours"] / summary[key]["report"], rel=0.02)
    for drill in ("crash", "hang"):
        assert {"failed", "failed_after_fault", "down_after_s", "up_after_s"} <= set(summary[drill])
        assert summary[drill]["total"] > 0
        assert summary[drill]["failed_after_fault"] == 0, summary[drill]
    assert summary["haproxy_ceiling"] > 0
    assert summary["chosen"] == SHIPPED
    assert summary["machine"]["nproc"] == os.cpu_count()
    ours = summary["candidates"][SHIPPED]
    for key in (
        "throughput_2_servers",
        "throughput_1_server",
        "requests_per_cpu_second",
        "requests_per_haproxy_cpu_second",
        "p99_ms",
        "rss_mib_per_server",
        "pss_mib_per_server",
        "server_connections_per_1000_requests",
    ):
        assert ours[key] > 0, key
    assert ours["deployed"]["workers"] == len(os.sched_getaffinity(0))
    assert ours["slow_body"] == {"stalled": 50, "probes": 5, "answered": 5}
    # Keep-alive, measured: HAProxy reuses its connections to granian; the report's servers close each one.
    assert ours["server_connections_per_1000_requests"] < 200
    assert summary["report"]["server_connections_per_1000_requests"] > 900
    assert {goal["goal"] for goal in summary["goals"]} >= {"crash drill: 0 failed after the fault"}
    assert summary["goals_met"] == all(goal["met"] for goal in summary["goals"])
    assert "HAProxy alone" in result.stdout
