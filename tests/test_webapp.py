"""The web app under Flask's test client and under the real gunicorn config on loopback.

Why both: the test client proves the routes; only a real gunicorn run proves the config file binds from
BIND, serves the message from MESSAGE, logs access lines to stdout and stops gracefully on SIGTERM.
"""

from __future__ import annotations

import contextlib
import http.client
import importlib.metadata
import importlib.util
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from flask import Flask

from plan.app_contract import HEALTH_PATH
from rehearsal.local_lab import free_port
from tests.http_probe import get_when_listening

WEBAPP = Path(__file__).resolve().parent.parent / "files" / "webapp"
HOST = "127.0.0.33"


def load_module(name: str, path: Path) -> ModuleType:
    """Import a file of files/webapp fresh (it reads the environment at import time)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
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


# --- gunicorn.conf.py ------------------------------------------------------------------------------------------


def load_conf(monkeypatch: pytest.MonkeyPatch, **env: str) -> ModuleType:
    for name in ("BIND", "WEB_CONCURRENCY", "GUNICORN_THREADS", "GUNICORN_WORKER_CLASS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_module("gunicorn_conf_under_test", WEBAPP / "gunicorn.conf.py")


def test_gunicorn_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_conf(monkeypatch)
    assert conf.bind == "0.0.0.0:8080"
    assert conf.workers == 2 * len(os.sched_getaffinity(0)) + 1
    assert conf.accesslog == "-"
    assert conf.graceful_timeout < 10  # finishes within docker stop's grace period
    assert 0 < conf.timeout <= 60
    # sync workers behind HAProxy, and one thread: with more, gunicorn silently switches to gthread.
    assert conf.worker_class == "sync"
    assert conf.threads == 1


def test_gunicorn_env_overrides(monkeypatch: pytest.MonkeyPatch) -> None:
    conf = load_conf(monkeypatch, BIND="127.0.0.33:9000", WEB_CONCURRENCY="3")
    assert conf.bind == "127.0.0.33:9000"
    assert conf.workers == 3


@pytest.mark.parametrize("bad", ["0", "-2", "many", ""])
def test_bad_worker_count_falls_back_to_cpu_sizing(monkeypatch: pytest.MonkeyPatch, bad: str) -> None:
    assert load_conf(monkeypatch, WEB_CONCURRENCY=bad).workers == 2 * len(os.sched_getaffinity(0)) + 1


def test_requirements_pin_the_installed_versions() -> None:
    pins = dict(line.split("==") for line in (WEBAPP / "requirements.txt").read_text().splitlines() if line.strip())
    assert set(pins) == {"flask", "gunicorn"}
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version


# --- real gunicorn ---------------------------------------------------------------------------------------------


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, Path]]:
    """A real gunicorn on loopback with the shipped config; its whole process group is killed at teardown."""
    port = free_port(HOST)
    log = tmp_path / "gunicorn.log"
    env = {**os.environ, "BIND": f"{HOST}:{port}", "MESSAGE": "Serveur 3", "WEB_CONCURRENCY": "2"}
    with log.open("wb") as sink:
        proc = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "-c", "gunicorn.conf.py", "app:app"],
            cwd=WEBAPP,
            env=env,
            stdout=sink,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        yield proc, port, log
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def get(port: int, path: str) -> tuple[int, str]:
    """One GET, retried (bounded) while gunicorn boots."""
    return get_when_listening(HOST, port, path, wait=20)


def test_real_gunicorn_serves_message_and_healthz(gunicorn: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    proc, port, log = gunicorn
    assert get(port, "/") == (200, "Serveur 3")
    assert get(port, "/healthz") == (200, "ok")
    proc.send_signal(signal.SIGTERM)  # graceful stop, as `docker stop` does
    assert proc.wait(timeout=15) == 0
    text = log.read_text()
    assert '"GET / HTTP/1.1" 200' in text  # access log on stdout
    assert '"GET /healthz HTTP/1.1" 200' in text
    assert "Shutting down: Master" in text


def test_real_gunicorn_runs_sync_workers(gunicorn: tuple[subprocess.Popen[bytes], int, Path]) -> None:
    _, port, log = gunicorn
    get(port, "/healthz")  # waits until it serves
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    try:
        conn.request("GET", "/")
        response = conn.getresponse()
        assert response.read() == b"Serveur 3"
        # A sync worker answers one request per connection; HAProxy opens the next one (cheap on a LAN).
        assert response.will_close
    finally:
        conn.close()
    assert "Using worker: sync" in log.read_text(errors="replace")


def test_the_app_serves_the_contracts_health_path(app_module: ModuleType) -> None:
    """The app (shipped alone in its image) carries its own copy of the path: it must be the contract's."""
    assert app_module.HEALTH_PATH == HEALTH_PATH
    client = app_module.create_app("Serveur 1").test_client()
    assert client.get(HEALTH_PATH).status_code == 200
    assert client.get("/status/other").status_code == 404
