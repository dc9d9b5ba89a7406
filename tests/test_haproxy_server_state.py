"""haproxy-server-state.sh against a real HAProxy: drain waits for in-flight requests, ready waits for the
health check, unknown servers are a note, refusals and timeouts are errors.

Two tiny web servers run in this process; their /slow requests are held until the test releases them and
their /healthz can be switched off, so every wait below is on a state the test controls (no sleeps).
"""

from __future__ import annotations

import re
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from rehearsal.local_lab import free_port
from rehearsal.runtime import cli
from rehearsal.stats import parse_stats_csv
from render.haproxy_cfg import BACKEND
from render.shipping import script_text
from tests.haproxy_binaries import haproxy26, haproxy30
from tests.http_probe import get_when_listening

SCRIPT = "haproxy-server-state.sh"


@dataclass
class Backend:
    """One web server: its name in HAProxy, whether /healthz answers 200, and a gate holding /slow."""

    name: str
    healthy: threading.Event = field(default_factory=threading.Event)
    gate: threading.Event = field(default_factory=threading.Event)
    server: ThreadingHTTPServer | None = None

    def start(self) -> int:
        backend = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path == "/healthz":
                    status = 200 if backend.healthy.is_set() else 503
                elif self.path == "/slow":
                    backend.gate.wait(30)
                    status = 200
                else:
                    status = 200
                body = backend.name.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.healthy.set()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        port: int = self.server.server_address[1]
        return port

    def stop(self) -> None:
        self.gate.set()
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


@dataclass
class Lb:
    admin: Path
    user_socket: Path
    port: int
    backends: list[Backend]

    def states(self) -> dict[str, str]:
        return parse_stats_csv(cli(self.admin, "show stat"), "web_servers")

    def wait_states(self, wanted: dict[str, str]) -> None:
        """Poll HAProxy's own view until the servers are in these states (bounded)."""
        for _ in range(500):
            states = self.states()
            if all(states.get(name) == status for name, status in wanted.items()):
                return
            threading.Event().wait(0.02)
        pytest.fail(f"servers never reached {wanted}: {self.states()}")

    def run(self, *args: str, socket: Path | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["dash", "-c", script_text(SCRIPT), SCRIPT, *args],
            capture_output=True,
            text=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SOCKET": str(socket or self.admin), **env},
            timeout=60,
            check=False,
        )

    def start(self, *args: str, **env: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            ["dash", "-c", script_text(SCRIPT), SCRIPT, *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SOCKET": str(self.admin), **env},
        )


@pytest.fixture(params=["2.6", "3.0"])
def lb(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Lb]:
    haproxy = haproxy26() if request.param == "2.6" else haproxy30()
    backends = [Backend("S1"), Backend("S2")]
    ports = [backend.start() for backend in backends]
    port = free_port("127.0.0.1")
    admin, user_socket = tmp_path / "admin.sock", tmp_path / "user.sock"
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(
        f"""global
    stats socket {admin} mode 600 level admin
    stats socket {user_socket} mode 600 level user

defaults
    mode http
    timeout connect 1s
    timeout client 30s
    timeout server 30s

frontend web
    bind 127.0.0.1:{port}
    default_backend web_servers

backend web_servers
    balance roundrobin
    option httpchk GET /healthz
    default-server check inter 100ms fall 1 rise 1
    server S1 127.0.0.1:{ports[0]}
    server S2 127.0.0.1:{ports[1]}
"""
    )
    proc = subprocess.Popen([haproxy, "-db", "-f", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    the_lb = Lb(admin=admin, user_socket=user_socket, port=port, backends=backends)
    try:
        get_when_listening("127.0.0.1", port, "/")
        the_lb.wait_states({"S1": "UP", "S2": "UP"})
        yield the_lb
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        for backend in backends:
            backend.stop()


def slow_request(lb: Lb, box: list[tuple[int, str]]) -> threading.Thread:
    thread = threading.Thread(target=lambda: box.append(get_when_listening("127.0.0.1", lb.port, "/slow")))
    thread.start()
    return thread


def busy_server(lb: Lb) -> str:
    """The server holding the one in-flight /slow request, as HAProxy counts sessions."""
    for _ in range(500):
        rows = [line.split(",") for line in cli(lb.admin, "show stat").splitlines()[1:]]
        busy = [row[1] for row in rows if row[0] == "web_servers" and row[1] in ("S1", "S2") and row[4] == "1"]
        if busy:
            return busy[0]
        threading.Event().wait(0.02)
    pytest.fail("the /slow request never reached a server")


def test_drain_waits_for_the_request_in_flight_then_sends_nothing_more(lb: Lb) -> None:
    box: list[tuple[int, str]] = []
    thread = slow_request(lb, box)
    name = busy_server(lb)
    other = "S2" if name == "S1" else "S1"

    drain = lb.start("drain", name)
    lb.wait_states({name: "DRAIN"})
    assert drain.poll() is None, "drain returned while a request was still in flight"

    next(b for b in lb.backends if b.name == name).gate.set()
    out, err = drain.communicate(timeout=30)
    thread.join(timeout=10)
    assert drain.returncode == 0, err
    assert "drained" in out
    assert box == [(200, name)]  # the request in flight finished normally
    answers = {get_when_listening("127.0.0.1", lb.port, "/")[1] for _ in range(6)}
    assert answers == {other}


def test_drain_times_out_with_a_message(lb: Lb) -> None:
    box: list[tuple[int, str]] = []
    thread = slow_request(lb, box)
    name = busy_server(lb)
    try:
        result = lb.run("drain", name, TIMEOUT="1")
        assert result.returncode == 1
        assert f"web_servers/{name} still busy after 1s" in result.stderr
        assert "1 session(s)" in result.stderr
    finally:
        for backend in lb.backends:
            backend.gate.set()
        thread.join(timeout=10)


def test_ready_waits_for_the_health_check(lb: Lb) -> None:
    s1 = lb.backends[0]
    assert lb.run("drain", "S1").returncode == 0
    s1.healthy.clear()  # the app restarting: its health check fails
    lb.wait_states({"S1": "DOWN"})

    ready = lb.start("ready", "S1")
    lb.wait_states({"S1": "DOWN"})
    assert ready.poll() is None, "ready returned while the server was DOWN"
    s1.healthy.set()
    out, err = ready.communicate(timeout=30)
    assert ready.returncode == 0, err
    assert "UP" in out
    assert lb.states()["S1"] == "UP"
    answers = {get_when_listening("127.0.0.1", lb.port, "/")[1] for _ in range(4)}
    assert answers == {"S1", "S2"}


def test_ready_times_out_when_the_server_stays_down(lb: Lb) -> None:
    lb.backends[1].healthy.clear()
    lb.wait_states({"S2": "DOWN"})
    result = lb.run("ready", "S2", TIMEOUT="1")
    assert result.returncode == 1
    assert "web_servers/S2 not UP after 1s (DOWN" in result.stderr


@pytest.mark.parametrize("action", ["drain", "ready"])
def test_a_server_haproxy_does_not_know_yet_is_a_note(lb: Lb, action: str) -> None:
    for result in (lb.run(action, "WEB9-SAM"), lb.run(action, "S1", BACKEND="new_backend")):
        assert result.returncode == 0, result.stderr
        assert "note: HAProxy does not know" in result.stdout
    assert lb.states() == {"S1": "UP", "S2": "UP"}


def test_refusals_and_a_silent_socket_are_errors(lb: Lb, tmp_path: Path) -> None:
    refused = lb.run("drain", "S1", socket=lb.user_socket)  # a socket below admin level may not change states
    assert refused.returncode == 1
    assert "HAProxy refused 'set server web_servers/S1 state drain'" in refused.stderr
    missing = lb.run("drain", "S1", socket=tmp_path / "nowhere.sock")
    assert missing.returncode == 1
    assert "cannot reach HAProxy's admin socket" in missing.stderr
    assert lb.states() == {"S1": "UP", "S2": "UP"}


@pytest.mark.parametrize(
    "args", [(), ("drain",), ("stop", "S1"), ("drain", "S1;disable server web_servers/S2"), ("ready", "")]
)
def test_bad_arguments_are_refused_before_any_command(lb: Lb, args: tuple[str, ...]) -> None:
    result = lb.run(*args)
    assert result.returncode == 2
    assert lb.states() == {"S1": "UP", "S2": "UP"}


def test_the_scripts_default_backend_is_the_rendered_one() -> None:
    """The VMs run haproxy-server-state.sh without BACKEND: its default must name haproxy.cfg's backend."""
    found = re.search(r"^BACKEND=\$\{BACKEND:-([A-Za-z0-9_]+)\}$", script_text(SCRIPT), re.MULTILINE)
    assert found is not None
    assert found.group(1) == BACKEND
