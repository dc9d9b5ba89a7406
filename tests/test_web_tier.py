"""The web tier behind the real HAProxy on loopback: keep-alive reuse, and the real client in the server's log.

Why through HAProxy: both claims are about the pair. HAProxy must actually reuse its connections to the
servers (its own counters say how many it opened), and the address a server logs must be the client's
that HAProxy saw, not HAProxy's, while a client cannot choose what gets logged by sending the header.
"""

from __future__ import annotations

import http.client
import re
import time
from pathlib import Path

import pytest

from plan.model import LabConfig
from rehearsal.local_lab import LocalLab
from rehearsal.loopback import LB_SOURCE, rehearsal_setup
from rehearsal.stats import stats_rows

CLIENT = "127.0.0.77"  # inside the rehearsal's client network (127.0.0.0/8), not the LB's source address
OTHER = "127.0.0.78"


def backend_counters(lab: LocalLab) -> tuple[int, int]:
    """(connections HAProxy opened to the servers, requests it sent them), from its stats CSV."""
    backend = stats_rows(lab.stats_csv(), lab.lb.backend)["BACKEND"]
    return int(backend["connect"]), int(backend["stot"])


def get(host: str, port: int, *, source: str, headers: dict[str, str] | None = None, close: bool = True) -> str:
    conn = http.client.HTTPConnection(host, port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", "/", headers={**(headers or {}), **({"Connection": "close"} if close else {})})
        response = conn.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        conn.close()


def wait_for_line(log: Path, pattern: str, offset: int, timeout: float = 5.0) -> list[str]:
    """Lines of `log` past `offset` matching `pattern`, waiting (bounded) for the first one to be written."""
    deadline = time.monotonic() + timeout
    while True:
        found = re.findall(pattern, log.read_text(errors="replace")[offset:], re.MULTILINE)
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_haproxy_reuses_server_connections(dev: LabConfig, tmp_path: Path) -> None:
    """200 requests on one client connection, then 100 clients with a connection each: HAProxy opens a
    handful of server connections, not one per request as it had to with gunicorn's sync workers."""
    setup = rehearsal_setup(dev, 2, workers=1)
    with LocalLab(setup.lb, setup.servers, tmp_path) as lab:
        lab.start()
        connections_before, requests_before = backend_counters(lab)
        conn = http.client.HTTPConnection(lab.lb.host, lab.lb.port, timeout=5, source_address=(CLIENT, 0))
        try:
            for _ in range(200):
                conn.request("GET", "/")
                response = conn.getresponse()
                assert response.status == 200
                assert response.read().decode() in lab.messages
        finally:
            conn.close()
        for _ in range(100):
            assert get(lab.lb.host, lab.lb.port, source=CLIENT) in lab.messages
        connections_after, requests_after = backend_counters(lab)
    connections, requests = connections_after - connections_before, requests_after - requests_before
    assert requests == 300
    assert connections <= 10, f"{connections} server connections for {requests} requests"


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_server_logs_the_client_address_haproxy_saw(dev: LabConfig, tmp_path: Path) -> None:
    setup = rehearsal_setup(dev, 1, workers=1)
    with LocalLab(setup.lb, setup.servers, tmp_path) as lab:
        lab.start()
        server = lab.servers[0]
        log = tmp_path / f"{server.name}.log"
        offset = len(log.read_text(errors="replace"))  # past the lab's own readiness GET, from 127.0.0.1
        # Through HAProxy: the client's own address, even when it sends an X-Forwarded-For of its choosing.
        get(lab.lb.host, lab.lb.port, source=CLIENT)
        get(lab.lb.host, lab.lb.port, source=OTHER, headers={"X-Forwarded-For": "6.6.6.6"})
        # Straight to the server from anyone but the LB: the header is ignored, the peer is logged.
        get(server.host, server.port, source=OTHER, headers={"X-Forwarded-For": "7.7.7.7"})
        request = r' - - \[[^]]+\] "GET / HTTP/1\.1" 200 \d+$'
        assert wait_for_line(log, rf"^{re.escape(CLIENT)}{request}", offset)
        assert len(wait_for_line(log, rf"^{re.escape(OTHER)}{request}", offset)) == 2
        text = log.read_text(errors="replace")[offset:]
    assert not re.search(rf"^{re.escape(LB_SOURCE)}{request}", text, re.MULTILINE), "the LB's address was logged"
    assert "6.6.6.6" not in text
    assert "7.7.7.7" not in text
