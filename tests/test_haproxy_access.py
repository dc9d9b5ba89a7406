"""Who may talk to the load balancer, checked against a live HAProxy on loopback.

The rendered config admits clients only from `client_cidr` and the stats page only from `admin_cidr`
(then with the password). Loopback has a whole /8, so a client bound to 127.0.0.77 is "another host"
for HAProxy: allowed sources are 127.0.0.1/32 here, everything else must be turned away.
"""

from __future__ import annotations

import dataclasses
import http.client
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from rehearsal.local_lab import free_port
from rehearsal.stats import basic_auth_header
from render.haproxy_cfg import Backend, HaproxySettings, render_haproxy_cfg
from tests.haproxy_binaries import all_haproxies
from tests.http_probe import get_when_listening

LB = "127.0.0.30"
ALLOWED_SOURCE = "127.0.0.1"
OTHER_SOURCE = "127.0.0.77"
PASSWORD = "access-test-password"


@dataclasses.dataclass(frozen=True)
class RunningLb:
    frontend_port: int
    stats_port: int


def request(port: int, path: str, *, source: str, credentials: bool = False) -> int | str:
    """The status HAProxy answers from `source`, or the name of the error when it answers nothing."""
    headers = {"Authorization": basic_auth_header("admin", PASSWORD)} if credentials else {}
    conn = http.client.HTTPConnection(LB, port, timeout=5, source_address=(source, 0))
    try:
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        response.read()
        return response.status
    except (ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as error:
        return type(error).__name__
    finally:
        conn.close()


def wait_listening(port: int) -> None:
    get_when_listening(LB, port, "/stats", source=ALLOWED_SOURCE)


@pytest.fixture(params=[label for label, _ in all_haproxies()])
def lb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RunningLb]:
    binary = dict(all_haproxies())[request.param]
    frontend_port, stats_port = free_port(LB), free_port(LB)
    settings = HaproxySettings(
        frontend_bind=f"{LB}:{frontend_port}",
        stats_bind=f"{LB}:{stats_port}",
        # No server listens there: an admitted client gets HAProxy's own 503, a refused one gets nothing.
        servers=[Backend("WEB1-SAM", f"127.0.0.31:{free_port('127.0.0.31')}")],
        balance="roundrobin",
        health_host="haproxy-sam.mvgroup.local",
        stats_user="admin",
        stats_password=PASSWORD,
        client_cidr=f"{ALLOWED_SOURCE}/32",
        admin_cidr=f"{ALLOWED_SOURCE}/32",
        packaged=False,
    )
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(render_haproxy_cfg(settings), encoding="utf-8")
    with (tmp_path / "haproxy.log").open("wb") as log:
        proc = subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=log, start_new_session=True)
    try:
        wait_listening(stats_port)
        yield RunningLb(frontend_port, stats_port)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


@pytest.mark.slow
def test_clients_outside_client_cidr_are_turned_away(lb: RunningLb) -> None:
    assert request(lb.frontend_port, "/", source=ALLOWED_SOURCE) == 503  # admitted; no server is up
    refused = request(lb.frontend_port, "/", source=OTHER_SOURCE)
    assert isinstance(refused, str), f"a client outside client_cidr got an HTTP answer: {refused}"


@pytest.mark.slow
def test_stats_and_metrics_only_from_the_admin_network_and_with_the_password(lb: RunningLb) -> None:
    assert request(lb.stats_port, "/stats;csv", source=ALLOWED_SOURCE, credentials=True) == 200
    assert request(lb.stats_port, "/metrics", source=ALLOWED_SOURCE, credentials=True) == 200
    assert request(lb.stats_port, "/stats;csv", source=ALLOWED_SOURCE) == 401
    assert request(lb.stats_port, "/stats;csv", source=OTHER_SOURCE, credentials=True) == 403
    assert request(lb.stats_port, "/metrics", source=OTHER_SOURCE, credentials=True) == 403
