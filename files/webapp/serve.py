"""Run the web app under granian (WSGI): the one place the server's command line and settings live.

The image runs it (`CMD ["python", "serve.py"]`) and so does the local rehearsal, with the same
settings; only the environment differs. Why granian, and why these values: docs/web-server.md.

Environment: BIND (host:port, default 0.0.0.0:8080), WEB_CONCURRENCY (worker processes, default one
per CPU), WEB_THREADS (Python threads per worker). MESSAGE and FORWARDED_ALLOW_IPS are the app's own.
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

APP_TARGET = "app:app"
BIND_ENV = "BIND"
WORKERS_ENV = "WEB_CONCURRENCY"
THREADS_ENV = "WEB_THREADS"
DEFAULT_BIND = "0.0.0.0:8080"
DEFAULT_THREADS = 1


def _cpu_count() -> int:
    """CPUs this process may run on (respects cpusets), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _positive(env: Mapping[str, str], name: str, default: int) -> int:
    """A positive integer from the environment, else the default (a typo must not start 0 workers)."""
    raw = env.get(name, "").strip()
    return int(raw) if raw.isdigit() and int(raw) > 0 else default


@dataclass(frozen=True, kw_only=True)
class ServerSettings:
    """Everything granian is told. Values that are not read from the environment are fixed on purpose."""

    host: str
    port: int
    workers: int
    # Python threads per worker that run the app. The app answers in microseconds without I/O, so a
    # single thread avoids GIL hand-offs; requests beyond it wait in granian's Rust side, not in Python.
    blocking_threads: int
    # Requests one worker takes in at once; HAProxy sends at most `maxconn 64` per server anyway.
    backpressure: int = 128
    # HTTP/1.1 keep-alive: HAProxy reuses its connections to the server (`http-reuse`) instead of a new
    # TCP connection per request. Idle connections wait for their next request head up to 30 s, longer
    # than HAProxy keeps an idle server connection, so HAProxy is the side that closes them.
    keep_alive: bool = True
    header_read_timeout_ms: int = 30_000
    # SIGTERM (docker stop, a rolling update): stop accepting, finish in-flight requests, exit; a worker
    # still busy after this many seconds is killed, under compose's 15 s stop_grace_period.
    kill_timeout: int = 8
    # A worker that dies (a bug, the OOM killer) is replaced, as gunicorn's master did.
    respawn_failed_workers: bool = True
    # The app writes its own access log with the real client address (access_log.py), not granian.
    access_log: bool = False


def settings_from_env(env: Mapping[str, str]) -> ServerSettings:
    """The settings for this environment (see the module docstring)."""
    host, _, port = env.get(BIND_ENV, DEFAULT_BIND).rpartition(":")
    if not host or not port.isdigit():
        raise ValueError(f"{BIND_ENV} must be host:port, not {env.get(BIND_ENV)!r}")
    return ServerSettings(
        host=host.strip("[]"),
        port=int(port),
        workers=_positive(env, WORKERS_ENV, _cpu_count()),
        blocking_threads=_positive(env, THREADS_ENV, DEFAULT_THREADS),
    )


def serve(settings: ServerSettings, target: str = APP_TARGET) -> None:
    """Run granian in the foreground until SIGTERM or SIGINT (then a graceful stop).

    The app is imported here, before granian forks its workers: they start with Flask already loaded
    (faster, and its pages shared between workers), instead of each importing it at once on start.
    """
    here = str(Path(__file__).resolve().parent)
    if here not in sys.path:
        sys.path.insert(0, here)
    importlib.import_module(target.partition(":")[0])

    from granian import Granian
    from granian.constants import HTTPModes, Interfaces
    from granian.http import HTTP1Settings

    Granian(
        target,
        address=settings.host,
        port=settings.port,
        interface=Interfaces.WSGI,
        http=HTTPModes.http1,
        websockets=False,
        workers=settings.workers,
        blocking_threads=settings.blocking_threads,
        backpressure=settings.backpressure,
        http1_settings=HTTP1Settings(
            keep_alive=settings.keep_alive, header_read_timeout=settings.header_read_timeout_ms
        ),
        log_access=settings.access_log,
        workers_kill_timeout=settings.kill_timeout,
        respawn_failed_workers=settings.respawn_failed_workers,
        working_dir=Path(__file__).resolve().parent,
    ).serve()


if __name__ == "__main__":
    serve(settings_from_env(os.environ))
