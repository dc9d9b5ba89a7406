"""Gunicorn settings for the web app (`gunicorn -c gunicorn.conf.py app:app`), overridable from the environment.

Why these values: the container listens on 8080 as non-root (compose maps host 80 to it); sync
workers, gunicorn's recommended setup behind a buffering proxy: HAProxy reads each request whole and
each response at once, so a slow client never holds a worker, and a process per request in flight
beats threads fighting over the GIL (measured: about twice gthread's requests/s on the same core);
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
worker_class = os.environ.get("GUNICORN_WORKER_CLASS", "sync")
# 1 thread: with threads > 1 gunicorn silently swaps "sync" for gthread, whose per-request thread
# hand-offs halved throughput here (4,000 vs 1,900 req/s for one worker with 4 threads).
threads = _env_int("GUNICORN_THREADS", 1)
# gthread only: keep idle HAProxy->server connections longer than HAProxy does, so HAProxy closes first.
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

# gunicorn closes each connection gracefully: it waits up to 2 s for the peer's FIN before it takes the next
# one. A load balancer that died or froze never sends it, so each request it had queued here would hold a
# sync worker 2 s and starve the surviving load balancer's requests and health checks (measured: HTTP 503s
# for seconds after an HA failover). HAProxy closes within milliseconds; 0.1 s is plenty.
CLOSE_LINGER_SECONDS = 0.1


def post_worker_init(worker: object) -> None:
    """Bound gunicorn's graceful-close linger in this worker (gunicorn has no setting for it)."""
    import functools

    from gunicorn import util  # type: ignore[import-untyped]

    original = getattr(util.close_graceful, "func", util.close_graceful)
    util.close_graceful = functools.partial(original, timeout=CLOSE_LINGER_SECONDS)
