"""The WSGI servers the benchmark compares, each running the same app behind the same HAProxy.

Why these: gunicorn sync workers (the lab's server until issue 11) close every connection, so HAProxy
opens a new TCP connection per request; gthread keeps connections alive with a thread per connection;
granian (Rust I/O, the app in Python threads) keeps them alive without holding a Python thread each;
uWSGI, the long-time default, when installed (pyuwsgi). The shipped one is files/webapp/serve.py, started
exactly as the rehearsal starts it; the others are started here, for comparison only.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from plan.app_contract import ServerEnvironment
from rehearsal.local_lab import ServerSpec
from rehearsal.loopback import RehearsalSetup

SHIPPED = "granian"
Command = Callable[[ServerSpec, int], tuple[tuple[str, ...], dict[str, str]]]


def _venv_tool(name: str) -> str | None:
    """A console script next to this interpreter (the venv's), else on PATH."""
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.is_file() else shutil.which(name)


def _shipped(spec: ServerSpec, workers: int) -> tuple[tuple[str, ...], dict[str, str]]:
    return spec.argv, {**spec.env, **ServerEnvironment(bind=f"{spec.host}:{spec.port}", workers=workers).as_env()}


def _gunicorn(worker_class: str, threads: int) -> Command:
    def command(spec: ServerSpec, workers: int) -> tuple[tuple[str, ...], dict[str, str]]:
        argv = (
            *(sys.executable, "-m", "gunicorn", "--bind", f"{spec.host}:{spec.port}", "--workers", str(workers)),
            *("--worker-class", worker_class, "--threads", str(threads), "--keep-alive", "15"),
            *("--timeout", "30", "--graceful-timeout", "8", "app:app"),
        )
        return argv, dict(spec.env)

    return command


def _uwsgi(spec: ServerSpec, workers: int) -> tuple[tuple[str, ...], dict[str, str]]:
    binary = _venv_tool("uwsgi") or "uwsgi"
    argv = (
        *(binary, "--http-socket", f"{spec.host}:{spec.port}", "--wsgi-file", "app.py", "--callable", "app"),
        *("--master", "--processes", str(workers), "--die-on-term", "--need-app", "--disable-logging"),
    )
    return argv, dict(spec.env)


@dataclass(frozen=True)
class Candidate:
    """One server setup: how to start it for a planned web server, and what it is."""

    key: str
    description: str
    keep_alive: bool
    command: Command
    needs: str | None = None  # a console script that must be installed
    # Worker processes it runs with on a web-server VM with `cpus` CPUs (its memory as deployed).
    deployed_workers: Callable[[int], int] = lambda cpus: cpus

    def available(self) -> bool:
        return self.needs is None or _venv_tool(self.needs) is not None

    def apply(self, setup: RehearsalSetup, workers: int) -> RehearsalSetup:
        """The rehearsal setup with every web server started by this candidate (same ports, same HAProxy)."""
        servers = []
        for spec in setup.servers:
            argv, env = self.command(spec, workers)
            servers.append(replace(spec, argv=argv, env=env))
        return replace(setup, servers=servers)


CANDIDATES = (
    Candidate(
        "gunicorn-sync",
        "gunicorn sync workers (before issue 11): a connection per request",
        False,
        _gunicorn("sync", 1),
        deployed_workers=lambda cpus: 2 * cpus + 1,  # the old gunicorn.conf.py's sizing
    ),
    Candidate(
        "gunicorn-gthread",
        "gunicorn gthread, 4 threads per worker, keep-alive",
        True,
        _gunicorn("gthread", 4),
        deployed_workers=lambda cpus: 2 * cpus + 1,
    ),
    Candidate(SHIPPED, "granian WSGI, files/webapp/serve.py as shipped, keep-alive", True, _shipped),  # serve.py: 1/CPU
    Candidate("uwsgi", "uWSGI (pyuwsgi) http-socket, a connection per request", False, _uwsgi, needs="uwsgi"),
)


def by_key(key: str) -> Candidate:
    """The candidate named `key` (ValueError naming the known ones otherwise)."""
    for candidate in CANDIDATES:
        if candidate.key == key:
            return candidate
    raise ValueError(f"unknown candidate {key!r}; known: {', '.join(c.key for c in CANDIDATES)}")
