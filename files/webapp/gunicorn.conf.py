"""Gunicorn settings for the web app (`gunicorn -c gunicorn.conf.py app:app`), overridable from the environment.

Why these values: the container listens on 8080 as non-root (compose maps host 80 to it); gthread
workers keep HAProxy's server-side connections alive (sync workers close after every response);
graceful_timeout stays under `docker stop`'s 10 s grace period so in-flight requests finish.
"""

from __future__ import annotations

import os


def _cpu_count() -> int:
    """CPUs this process may run on (respects cpusets), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _env_int(name: str, default: int) -> int:
    """A positive integer from the environment, else the default (a typo must not start 0 workers)."""
    raw = os.environ.get(name, "").strip()
    if raw.isdigit() and int(raw) > 0:
        return int(raw)
    return default


bind = os.environ.get("BIND", "0.0.0.0:8080")
# Classic sizing for a CPU-light app: 2 x cores + 1 processes; WEB_CONCURRENCY is gunicorn's usual override.
workers = _env_int("WEB_CONCURRENCY", 2 * _cpu_count() + 1)
worker_class = "gthread"
threads = _env_int("GUNICORN_THREADS", 4)
# Keep idle HAProxy->server connections longer than HAProxy keeps them, so HAProxy closes first (no reuse race).
keepalive = 15
# A worker silent this long is killed and replaced; HAProxy gives up on a request after 1 s anyway.
timeout = 30
# SIGTERM: stop accepting, finish in-flight requests, exit; under docker stop's default 10 s.
graceful_timeout = 8
accesslog = "-"
errorlog = "-"
loglevel = os.environ.get("LOG_LEVEL", "info")
# The proxy in front is HAProxy (option forwardfor); trust its X-Forwarded-For only from the configured peers.
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
