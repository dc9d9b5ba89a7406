"""The web app behind a load balancer that dies: a silent peer must not hold the server's worker for long.

Why: a load balancer that was powered off or frozen never reads its answers nor closes its connections;
gunicorn's sync workers waited 2 s for each such peer's FIN, so every request it had queued held a worker
and the surviving load balancer of an HA pair saw its checks time out (HTTP 503s). The shipped server
(serve.py, granian) reads and writes connections in Rust, apart from the app's one Python thread; this
proves it with one worker against the real server.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rehearsal.local_lab import free_port
from tests.http_probe import get_when_listening

WEBAPP = Path(__file__).resolve().parent.parent / "files" / "webapp"
HOST = "127.0.0.34"
SILENT_PEERS = 6

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def one_worker(tmp_path: Path) -> Iterator[int]:
    """The real server as shipped (serve.py) with a single worker; killed at teardown."""
    port = free_port(HOST)
    env = {**os.environ, "BIND": f"{HOST}:{port}", "MESSAGE": "Serveur 1", "WEB_CONCURRENCY": "1"}
    with (tmp_path / "server.log").open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "serve.py"],
            cwd=WEBAPP,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        get_when_listening(HOST, port, "/healthz", wait=20)
        yield port
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_silent_peers_do_not_starve_the_worker(one_worker: int) -> None:
    # Peers that send a request, then neither read nor close: a load balancer that died with requests queued.
    silent = []
    try:
        for _ in range(SILENT_PEERS):
            sock = socket.create_connection((HOST, one_worker), timeout=5)
            sock.sendall(b"GET / HTTP/1.1\r\nHost: lb\r\n\r\n")
            silent.append(sock)
        start = time.monotonic()
        status, body = get_when_listening(HOST, one_worker, "/healthz")
        waited = time.monotonic() - start
    finally:
        for sock in silent:
            sock.close()
    assert (status, body) == (200, "ok")
    # Unbounded, the check would wait about SILENT_PEERS x 2 s behind them.
    assert waited < 1.5, f"a health check waited {waited:.2f} s behind {SILENT_PEERS} silent peers"
