"""The web app's runtime contract, defined once: the port it serves, the path HAProxy checks, and
what it reads from its environment.

Every consumer takes it from here: the compose file and its healthcheck (render/webapp.py), the
deploy script's local check, haproxy.cfg's `http-check` (render/haproxy_cfg.py) and the rehearsal.
files/webapp/app.py runs alone in its container, so it carries its own copy of the path;
tests/test_webapp.py checks the two agree. Likewise for the server's own settings (files/webapp/serve.py:
where it binds, how many processes and threads), which only the rehearsal and the benchmark set.
"""

from __future__ import annotations

from dataclasses import dataclass

from plan.values import HTTP_PORT

HEALTH_PATH = "/healthz"
CONTAINER_PORT = 8080  # inside the container, as a non-root user
SERVER_PORT = HTTP_PORT  # on the web-server VM: what HAProxy connects to (compose maps it to CONTAINER_PORT)


def local_health_url(port: int = SERVER_PORT) -> str:
    """The URL the deploy script polls on the VM itself before it declares the server healthy."""
    return f"http://127.0.0.1:{port}{HEALTH_PATH}"


@dataclass(frozen=True, kw_only=True)
class AppEnvironment:
    """What one web server's app reads from its environment."""

    message: str
    """The text `GET /` answers (`MESSAGE`)."""
    trusted_proxies: str
    """The load balancer address(es) whose X-Forwarded-For the server trusts (`FORWARDED_ALLOW_IPS`)."""

    def as_env(self) -> dict[str, str]:
        """The environment variables, by name."""
        return {"MESSAGE": self.message, "FORWARDED_ALLOW_IPS": self.trusted_proxies}


@dataclass(frozen=True, kw_only=True)
class ServerEnvironment:
    """What the web server (files/webapp/serve.py) reads from its environment; unset means its defaults
    (0.0.0.0:CONTAINER_PORT, one worker per CPU, one thread per worker)."""

    bind: str
    """host:port to listen on (`BIND`)."""
    workers: int | None = None
    """Worker processes (`WEB_CONCURRENCY`)."""
    threads: int | None = None
    """Python threads per worker that run the app (`WEB_THREADS`)."""

    def as_env(self) -> dict[str, str]:
        """The environment variables, by name (only those set)."""
        env = {"BIND": self.bind}
        if self.workers is not None:
            env["WEB_CONCURRENCY"] = str(self.workers)
        if self.threads is not None:
            env["WEB_THREADS"] = str(self.threads)
        return env
