"""The lab's client, in a network namespace of its own on the guests' bridge: curl as the report runs its
tests, the stats page's CSV, and a background load whose failed requests each day-2 step reports.

Why a namespace: the requests must reach HAProxy through the guests' network, from an address on the lab's
network (inside clientCidr and adminCidr), as a machine's would; the host itself is only the gateway.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from e2e.engine import REPO
from rehearsal.stats import parse_stats_csv
from render.haproxy_cfg import BACKEND

CURL_LIMIT_S = "5"


@dataclass
class Client:
    """curl and the load client in the namespace `netns`; `procs`: the cgroup.procs files its long-lived
    processes join, so the guests' cleanup ends them on every exit path."""

    netns: str
    procs: Sequence[Path]
    ca_file: Path | None = None
    """The lab CA (the stack's `caCertificate` output, TLS on): curl verifies HTTPS against it."""

    def run(self, *argv: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["ip", "netns", "exec", self.netns, *argv], capture_output=True, text=True, check=False, timeout=timeout
        )

    def curl(self, url: str, *options: str) -> tuple[int, str]:
        """(HTTP status, body) of one GET; status 0 when no answer came."""
        trust = ("--cacert", str(self.ca_file)) if self.ca_file is not None and url.startswith("https:") else ()
        result = self.run("curl", "-s", "-m", CURL_LIMIT_S, "-w", "\n%{http_code}", *trust, *options, url)
        body, _, code = result.stdout.rpartition("\n")
        return (int(code) if code.isdigit() else 0), body

    def answers(self, url: str, count: int) -> list[str]:
        """The report's test: `curl URL` again and again; each answer's body, or `<status>` if not a 200."""
        found = []
        for _ in range(count):
            status, body = self.curl(url)
            found.append(body.strip() if status == 200 else f"<{status}>")
        return found

    def server_states(self, stats_url: str, user: str, password: str) -> dict[str, str]:
        """Server name -> status (UP, DOWN, MAINT...) from the stats page's CSV, with the credentials."""
        status, body = self.curl(f"{stats_url};csv", "-u", f"{user}:{password}")
        return parse_stats_csv(body, BACKEND) if status == 200 else {}

    def start_load(self, host: str, port: int = 80, concurrency: int = 2) -> LoadRun:
        # Into our cgroups first: `ip netns exec` mounts a /sys of the namespace's own, without them.
        joins = "".join(f'echo $$ >"{path}"; ' for path in self.procs)
        proc = subprocess.Popen(
            [
                "sh", "-c", f'{joins}exec ip netns exec "$0" "$1" -m e2e.load_client "$2" "$3" "$4"',
                self.netns, sys.executable, host, str(port), str(concurrency),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )  # fmt: skip
        first = proc.stdout.readline() if proc.stdout is not None else ""
        if first.strip() != "started":
            proc.kill()
            raise RuntimeError(f"the load client did not start: {first}{proc.communicate()[1][-2000:]}")
        return LoadRun(proc, time.monotonic())


@dataclass
class LoadRun:
    proc: subprocess.Popen[str]
    started: float

    def stop(self) -> dict[str, Any]:
        """End the load; its counts (total, failed, errors, answered, slowest_s) and how long it ran."""
        self.proc.terminate()
        out, err = self.proc.communicate(timeout=30)
        lines = [line for line in out.splitlines() if line.startswith("{")]
        if not lines:
            raise RuntimeError(f"the load client gave no counts: {err[-2000:]}")
        counts: dict[str, Any] = json.loads(lines[-1])
        counts["seconds"] = round(time.monotonic() - self.started, 1)
        return counts
