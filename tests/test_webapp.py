"""The web app under Flask's test client, its access log, and the real server (serve.py: granian) on loopback.

Why both: the test client proves the routes; only a real server run proves serve.py binds from BIND,
serves the message from MESSAGE, keeps connections alive, logs the real client, finishes in-flight
requests on SIGTERM and keeps answering while clients stall in the middle of a request body.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import importlib.util
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask

from benchmark.slow_body import slow_body_drill
from plan.app_contract import HEALTH_PATH, ServerEnvironment
from rehearsal.local_lab import free_port
from tests.http_probe import get_when_listening

WEBAPP = Path(__file__).resolve().parent.parent / "files" / "webapp"
TESTS = Path(__file__).resolve().parent
HOST = "127.0.0.33"
CLIENT = "127.0.0.77"


@pytest.fixture(autouse=True)
def _webapp_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """app.py imports its sibling access_log.py, as it does in the container's /app."""
    monkeypatch.syspath_prepend(str(WEBAPP))


def load_module(name: str, path: Path) -> ModuleType:
    """Import a file of files/webapp fresh (it reads the environment at import time)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def app_module(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    monkeypatch.setenv("MESSAGE", "Serveur 7")
    return load_module("webapp_app_under_test", WEBAPP / "app.py")


def test_module_exposes_app_with_message_from_env(app_module: ModuleType) -> None:
    assert isinstance(app_module.app, Flask)
    response = app_module.app.test_client().get("/")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "Serveur 7"
    assert response.mimetype == "text/plain"


def test_healthz_is_ok_and_not_cached(app_module: ModuleType) -> None:
    client = app_module.app.test_client()
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_data(as_text=True) == "ok"
    assert response.headers["Cache-Control"] == "no-store"
    assert client.head("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


def test_each_server_gets_its_own_message_from_one_code(app_module: ModuleType) -> None:
    for message in ("Serveur 1", "Serveur 2", "Serveur 10 — é"):
        client = app_module.create_app(message).test_client()
        assert client.get("/").get_data(as_text=True) == message


def test_message_defaults_to_the_host_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MESSAGE", raising=False)
    module = load_module("webapp_app_no_message", WEBAPP / "app.py")
    assert module.app.test_client().get("/").get_data(as_text=True) == os.uname().nodename


def test_unknown_path_is_404(app_module: ModuleType) -> None:
    assert app_module.app.test_client().get("/nope").status_code == 404


# --- access_log.py: the real client address and one line per request ------------------------------------------


@pytest.fixture
def access_log() -> ModuleType:
    return load_module("access_log_under_test", WEBAPP / "access_log.py")


def _logged(access_log: ModuleType, trusted: str, peer: str, forwarded: str | None, path: str = "/") -> tuple[str, str]:
    """(REMOTE_ADDR the app saw, the access-log line) for one request through the middleware."""
    seen: list[str] = []

    def app(environ: dict[str, object], start_response: object) -> list[bytes]:
        seen.append(str(environ["REMOTE_ADDR"]))
        start_response("200 OK", [("Content-Length", "2")])  # type: ignore[operator]
        return [b"ok"]

    stream = io.StringIO()
    wrapped = access_log.ClientAddressLog(app, access_log.parse_trusted(trusted), stream)
    environ = {"REMOTE_ADDR": peer, "REQUEST_METHOD": "GET", "PATH_INFO": path, "SERVER_PROTOCOL": "HTTP/1.1"}
    if forwarded is not None:
        environ["HTTP_X_FORWARDED_FOR"] = forwarded
    assert list(wrapped(environ, lambda status, headers, exc_info=None: None)) == [b"ok"]
    return seen[0], stream.getvalue()


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded", "client"),
    [
        ("10.0.0.30", "10.0.0.30", "192.168.1.7", "192.168.1.7"),  # HAProxy tells who the client is
        ("10.0.0.30", "10.0.0.99", "192.168.1.7", "10.0.0.99"),  # anyone else cannot
        ("10.0.0.30", "10.0.0.30", None, "10.0.0.30"),  # a request HAProxy made itself (health check)
        ("10.0.0.30", "10.0.0.30", "6.6.6.6, 192.168.1.7", "192.168.1.7"),  # what the client wrote is not trusted
        ("10.0.0.30", "10.0.0.30", "6.6.6.6,192.168.1.7", "192.168.1.7"),
        ("10.0.0.30, 10.0.1.0/24", "10.0.0.30", "192.168.1.7, 10.0.1.5", "192.168.1.7"),  # trusted hops skipped
        ("10.0.0.30", "10.0.0.30", "10.0.0.30", "10.0.0.30"),  # only trusted hops: keep the peer
        ("10.0.0.30", "10.0.0.30", "not-an-address", "10.0.0.30"),  # a trusted proxy never writes this
        ("10.0.0.30", "10.0.0.30", "192.168.1.7\n", "192.168.1.7"),
        ("fd00::1", "fd00::1", "2001:db8::7", "2001:db8::7"),
        ("127.0.0.1", "127.0.0.1", "", "127.0.0.1"),
    ],
)
def test_client_address_trusts_x_forwarded_for_from_the_proxy_only(
    access_log: ModuleType, trusted: str, peer: str, forwarded: str | None, client: str
) -> None:
    remote_addr, line = _logged(access_log, trusted, peer, forwarded)
    assert remote_addr == client
    assert line.startswith(f"{client} - - [")


def test_access_line_is_common_log_format_with_escaped_request(access_log: ModuleType) -> None:
    _, line = _logged(access_log, "10.0.0.30", "10.0.0.30", "192.168.1.7", path='/a"b\x1bc\\')
    assert re.fullmatch(
        r"192\.168\.1\.7 - - \[\d{2}/\w{3}/\d{4}:\d{2}:\d{2}:\d{2} [+-]\d{4}\] "
        r'"GET /a\\"b\\x1bc\\\\ HTTP/1\.1" 200 2\n',
        line,
    ), line
    assert line.count("\n") == 1


@pytest.mark.parametrize("bad", ["*", "10.0.0.300", "lb.local", "10.0.0.0/33"])
def test_trusted_proxies_must_be_addresses_or_networks(access_log: ModuleType, bad: str) -> None:
    with pytest.raises(ValueError, match=r"does not appear to be an IPv4 or IPv6"):
        access_log.parse_trusted(bad)


def test_flask_sees_the_client_and_the_app_logs_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "10.0.0.30")
    monkeypatch.setenv("MESSAGE", "Serveur 7")
    module = load_module("webapp_app_trusting_lb", WEBAPP / "app.py")
    client = module.app.test_client()
    out = io.StringIO()
    monkeypatch.setattr(sys, "stdout", out)
    response = client.get("/", headers={"X-Forwarded-For": "192.168.1.7"}, environ_base={"REMOTE_ADDR": "10.0.0.30"})
    assert response.status_code == 200
    assert out.getvalue().startswith("192.168.1.7 - - [")
    assert '"GET / HTTP/1.1" 200 9' in out.getvalue()


# --- serve.py: the server's settings -----------------------------------------------------------------------------


@pytest.fixture
def serve_module() -> ModuleType:
    return load_module("serve_under_test", WEBAPP / "serve.py")


def test_server_defaults(serve_module: ModuleType) -> None:
    settings = serve_module.settings_from_env({})
    assert (settings.host, settings.port) == ("0.0.0.0", 8080)  # noqa: S104 (inside the container)
    assert settings.workers == len(os.sched_getaffinity(0))  # one interpreter per CPU
    assert settings.blocking_threads == 1
    assert settings.keep_alive is True  # HAProxy reuses its server connections
    assert settings.kill_timeout < 15  # finishes within compose's stop_grace_period
    assert settings.respawn_failed_workers is True
    assert settings.access_log is False  # the app logs, with the real client address


def test_server_env_overrides(serve_module: ModuleType) -> None:
    """serve.py reads the names plan/app_contract.py writes (the rehearsal and the benchmark use those)."""
    env = ServerEnvironment(bind="127.0.0.33:9000", workers=3, threads=2).as_env()
    assert env == {"BIND": "127.0.0.33:9000", "WEB_CONCURRENCY": "3", "WEB_THREADS": "2"}
    assert tuple(env) == (serve_module.BIND_ENV, serve_module.WORKERS_ENV, serve_module.THREADS_ENV)
    settings = serve_module.settings_from_env(env)
    assert (settings.host, settings.port, settings.workers, settings.blocking_threads) == ("127.0.0.33", 9000, 3, 2)


@pytest.mark.parametrize("bad", ["0", "-2", "many", ""])
def test_bad_worker_count_falls_back_to_one_per_cpu(serve_module: ModuleType, bad: str) -> None:
    assert serve_module.settings_from_env({"WEB_CONCURRENCY": bad}).workers == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("bad", ["8080", "host:", ":8080", "host:http"])
def test_bad_bind_is_refused(serve_module: ModuleType, bad: str) -> None:
    with pytest.raises(ValueError, match="BIND"):
        serve_module.settings_from_env({"BIND": bad})


def test_requirements_pin_the_installed_versions() -> None:
    pins = dict(line.split("==") for line in (WEBAPP / "requirements.txt").read_text().splitlines() if line.strip())
    assert set(pins) == {"flask", "granian"}
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version


# --- the real server ---------------------------------------------------------------------------------------------


Server = tuple[subprocess.Popen[bytes], int, Path]


@contextlib.contextmanager
def running_server(tmp_path: Path, *, target: str | None = None, **env: str) -> Iterator[Server]:
    """serve.py on loopback (or serve.serve() with the same settings and another app); the whole process group
    is killed at the end."""
    port = free_port(HOST)
    log = tmp_path / f"server-{port}.log"
    full_env = {
        **os.environ,
        "BIND": f"{HOST}:{port}",
        "MESSAGE": "Serveur 3",
        "WEB_CONCURRENCY": "1",
        "PYTHONPATH": str(TESTS),
        **env,
    }
    argv = [sys.executable, "serve.py"]
    if target is not None:
        argv = [sys.executable, "-c", f"import os, serve; serve.serve(serve.settings_from_env(os.environ), {target!r})"]
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            argv, cwd=WEBAPP, env=full_env, stdout=sink, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        get_when_listening(HOST, port, "/healthz", wait=20)
        yield proc, port, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def test_real_server_serves_keeps_alive_and_stops_cleanly(tmp_path: Path) -> None:
    with running_server(tmp_path, FORWARDED_ALLOW_IPS="127.0.0.1") as (proc, port, log):
        conn = http.client.HTTPConnection(HOST, port, timeout=5, source_address=(CLIENT, 0))
        try:
            for path, body in (("/", b"Serveur 3"), ("/healthz", b"ok"), ("/", b"Serveur 3")):
                conn.request("GET", path)
                response = conn.getresponse()
                assert (response.status, response.read()) == (200, body)
                assert not response.will_close  # the same connection serves the next request
        finally:
            conn.close()
        proc.send_signal(signal.SIGTERM)  # graceful stop, as `docker stop` does
        assert proc.wait(timeout=15) == 0
        text = log.read_text()
    # The app's access log names the peer (no X-Forwarded-For from an untrusted peer), one line per request.
    assert len(re.findall(rf'^{re.escape(CLIENT)} - - \[[^]]+\] "GET / HTTP/1\.1" 200 9$', text, re.M)) == 2
    assert re.search(rf'^{re.escape(CLIENT)} - - \[[^]]+\] "GET /healthz HTTP/1\.1" 200 2$', text, re.M)
    assert "Traceback" not in text


def test_sigterm_lets_in_flight_requests_finish(tmp_path: Path) -> None:
    """A rolling update stops a server while it answers: the requests it already has must complete."""
    # Three threads: two for the slow requests, one left to answer /count.
    with running_server(tmp_path, target="slow_wsgi:app", WEB_THREADS="3") as (proc, port, _):
        answers: list[tuple[int, bytes] | str] = []

        def slow_request() -> None:
            conn = http.client.HTTPConnection(HOST, port, timeout=10)
            try:
                conn.request("GET", "/slow")
                response = conn.getresponse()
                answers.append((response.status, response.read()))
            except (OSError, http.client.HTTPException) as error:
                answers.append(repr(error))
            finally:
                conn.close()

        threads = [threading.Thread(target=slow_request) for _ in range(2)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 10
        while _in_flight(port) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=15)
        assert proc.wait(timeout=15) == 0
        assert answers == [(200, b"done"), (200, b"done")]
        with pytest.raises(ConnectionRefusedError):  # and it took no new request after SIGTERM
            socket_probe(port)


def _in_flight(port: int) -> int:
    """Requests the slow test app is busy with (it counts them in its /count route)."""
    return int(get_when_listening(HOST, port, "/count", wait=5)[1])


def socket_probe(port: int) -> None:
    conn = http.client.HTTPConnection(HOST, port, timeout=2)
    try:
        conn.request("GET", "/count")
        conn.getresponse().read()
    finally:
        conn.close()


def test_stalled_uploads_do_not_stop_the_server(tmp_path: Path) -> None:
    """50 clients send a POST head claiming 100,000 bytes, 3 bytes of it, and go silent: one worker with one
    thread still answers everyone else at once (a sync worker would sit on the first of them)."""
    with running_server(tmp_path, WEB_THREADS="1") as (_, port, _):
        result = slow_body_drill(HOST, port, stalled=50, probes=5)
    assert result.stalled == 50
    assert result.answered == result.probes


def test_the_app_serves_the_contracts_health_path(app_module: ModuleType) -> None:
    """The app (shipped alone in its image) carries its own copy of the path: it must be the contract's."""
    assert app_module.HEALTH_PATH == HEALTH_PATH
    client = app_module.create_app("Serveur 1").test_client()
    assert client.get(HEALTH_PATH).status_code == 200
    assert client.get("/status/other").status_code == 404
