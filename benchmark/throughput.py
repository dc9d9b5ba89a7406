"""Steady throughput through a load balancer: `wrk` when installed, else the Python load generator.

Why wrk first: on 2 cores the client competes with HAProxy and the servers; wrk (C, epoll, one thread)
costs far less CPU per request than Python threads, so the figure measures the servers, not the client.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass

from rehearsal.load import run_load

CONNECTIONS = 32
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


@dataclass(frozen=True)
class Throughput:
    """Successful (2xx) requests per second, the 99th percentile latency, and which client measured it."""

    ok_per_second: float
    requests: int
    errors: int
    client: str
    p99_seconds: float | None = None


def _duration(text: str) -> float:
    found = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text)
    if not found:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(found.group(1)) * _UNITS[found.group(2)]


def parse_wrk(output: str) -> tuple[int, float, int]:
    """(requests, seconds, failed) from wrk's summary: non-2xx/3xx answers and socket errors count as failed."""
    found = re.search(r"(\d+) requests in ([\d.]+)(m?s)", output)
    if not found:
        raise ValueError(f"unexpected wrk output:\n{output}")
    seconds = float(found.group(2)) / (1000.0 if found.group(3) == "ms" else 1.0)
    failed = 0
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    if non_2xx:
        failed += int(non_2xx.group(1))
    socket_errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)
    if socket_errors:
        failed += sum(int(value) for value in socket_errors.groups())
    return int(found.group(1)), seconds, failed


def parse_wrk_p99(output: str) -> float | None:
    """The 99% line of wrk's `--latency` distribution, in seconds (None without it)."""
    found = re.search(r"^\s*99%\s+([\d.]+(?:us|ms|s|m))\s*$", output, re.MULTILINE)
    return _duration(found.group(1)) if found else None


def measure(
    host: str,
    port: int,
    *,
    connections: int = CONNECTIONS,
    seconds: float = 5.0,
    use_wrk: bool = True,
    scheme: str = "http",
) -> Throughput:
    """Requests/s with `connections` kept-alive connections for `seconds` (bounded: wrk -d, or run_load's deadline);
    `scheme` https: wrk only (it does not verify the certificate: the figure is the cost, not the trust)."""
    wrk = shutil.which("wrk") if use_wrk else None
    if wrk is not None:
        result = subprocess.run(
            [
                *(wrk, "-t1", f"-c{connections}", f"-d{seconds:g}s", "--latency", "--timeout", "5s"),
                f"{scheme}://{host}:{port}/",
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=True,
        )
        requests, elapsed, failed = parse_wrk(result.stdout)
        return Throughput((requests - failed) / elapsed, requests, failed, "wrk -t1", parse_wrk_p99(result.stdout))
    if scheme != "http":
        raise RuntimeError("HTTPS throughput needs wrk (apt-get install wrk)")
    load = run_load(host, port, concurrency=connections, seconds=seconds)
    latencies = sorted(outcome.seconds for outcome in load.outcomes)
    p99 = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] if latencies else None
    return Throughput(load.ok_per_second, load.total, len(load.failed), "python threads", p99)
