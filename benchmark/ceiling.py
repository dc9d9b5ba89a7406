"""HAProxy's own ceiling on this machine: a frontend that answers every request itself, under the same load.

Why: on 2 shared cores the load generator and HAProxy take their part of every request whatever the
web servers do; this figure is the most any setup behind this HAProxy could reach here, so the
candidates' figures read against it. It logs every request like the lab's frontend, so it costs the same.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from benchmark.throughput import Throughput, measure
from rehearsal.local_lab import free_port

CEILING_HOST = "127.0.0.29"


def ceiling_cfg(bind: str) -> str:
    """A one-frontend haproxy.cfg that answers 200 "ok" by itself (http-request return), no backend."""
    return (
        "global\n"
        "    log stderr format raw local0\n"
        "    maxconn 4096\n"
        "defaults\n"
        "    mode http\n"
        "    log global\n"
        "    option httplog\n"
        "    timeout client 30s\n"
        "    timeout connect 1s\n"
        "    timeout server 1s\n"
        "frontend ceiling\n"
        f"    bind {bind}\n"
        '    http-request return status 200 content-type text/plain string "ok"\n'
    )


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"haproxy exited with status {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise RuntimeError(f"haproxy did not listen on {host}:{port} within {timeout:.0f} s")


def haproxy_ceiling(haproxy_bin: str, *, seconds: float, use_wrk: bool = True) -> Throughput:
    """Requests/s of the self-answering frontend with the benchmark's load (32 kept-alive connections)."""
    port = free_port(CEILING_HOST)
    with tempfile.TemporaryDirectory(prefix="haproxy-lab-ceiling-") as workdir:
        cfg = Path(workdir) / "haproxy.cfg"
        cfg.write_text(ceiling_cfg(f"{CEILING_HOST}:{port}"), encoding="utf-8")
        with (Path(workdir) / "haproxy.log").open("wb") as log:
            proc = subprocess.Popen(
                [haproxy_bin, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_listening(CEILING_HOST, port, proc)
            return measure(CEILING_HOST, port, seconds=seconds, use_wrk=use_wrk)
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=5)
