"""Map the stack's plan onto loopback: the same servers, messages and HAProxy template, local addresses.

Why: the rehearsal must exercise exactly what `pulumi up` ships (template, balance, health path, stats
user) while never touching the plan's 10.x addresses: the LB becomes 127.0.0.30, web server i becomes
127.0.0.(31+i), each on a free port picked now.
"""

from __future__ import annotations

import re
import secrets
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from plan.app_contract import AppEnvironment, ServerEnvironment
from plan.model import LabConfig
from rehearsal.local_lab import LbSpec, ServerSpec, free_port
from rehearsal.tls import write_material
from render.haproxy_cfg import Backend, HaproxySettings, TlsBind, health_host, render_haproxy_cfg

LB_HOST = "127.0.0.30"
ADMIN_SOCKET = "admin.sock"  # relative: HAProxy runs in the lab's work directory
# Where HAProxy's connections to the servers come from: on loopback the kernel picks 127.0.0.1 whatever
# address HAProxy listens on (on the lab, the LB's own address). The servers trust X-Forwarded-For from it only.
LB_SOURCE = "127.0.0.1"
FIRST_SERVER_OCTET = 31
MAX_SERVERS = 64
LOOPBACK = "127.0.0.0/8"
WEBAPP_DIR = Path(__file__).resolve().parent.parent / "files" / "webapp"


@dataclass(frozen=True)
class PlannedServer:
    """A web server of the rehearsal: the plan's name and message (or derived ones), its loopback host."""

    name: str
    message: str
    host: str


def _derive(text: str, number: int) -> str:
    """'WEB2-SAM' -> 'WEB3-SAM', 'Serveur 2' -> 'Serveur 3'; text without digits gets ' <number>' appended."""
    if re.search(r"\d+", text):
        return re.sub(r"\d+", str(number), text, count=1)
    return f"{text} {number}"


def planned_servers(lab: LabConfig, count: int | None = None) -> list[PlannedServer]:
    """The plan's web servers mapped to loopback; with `count` above the plan, extra servers are derived."""
    wanted = len(lab.web_servers) if count is None else count
    if not 1 <= wanted <= MAX_SERVERS:
        raise ValueError(f"the rehearsal runs 1 to {MAX_SERVERS} web servers, not {wanted}")
    template = lab.web_servers[-1]
    taken = {server.name.lower() for server in lab.web_servers}
    result: list[PlannedServer] = []
    for index in range(wanted):
        host = f"127.0.0.{FIRST_SERVER_OCTET + index}"
        if index < len(lab.web_servers):
            server = lab.web_servers[index]
            result.append(PlannedServer(server.name, server.message, host))
            continue
        name = _derive(template.name, index + 1).replace(" ", "-")
        while name.lower() in taken:
            name = f"{name}-x"
        taken.add(name.lower())
        result.append(PlannedServer(name, _derive(template.message, index + 1), host))
    return result


def web_server(server: PlannedServer, port: int, workers: int) -> ServerSpec:
    """Run the real web app with the image's own command (files/webapp/serve.py) on the server's loopback address."""
    return ServerSpec(
        name=server.name,
        message=server.message,
        host=server.host,
        port=port,
        argv=(sys.executable, "serve.py"),
        env={
            **AppEnvironment(message=server.message, trusted_proxies=LB_SOURCE).as_env(),
            **ServerEnvironment(bind=f"{server.host}:{port}", workers=workers).as_env(),
            "PYTHONDONTWRITEBYTECODE": "1",
            "PYTHONUNBUFFERED": "1",  # as in the image: each access-log line is written at once
        },
        cwd=WEBAPP_DIR,
    )


@dataclass(frozen=True)
class RehearsalSetup:
    """Everything needed to start the rehearsal lab, plus a spare web server for the server-set drill."""

    lb: LbSpec
    servers: list[ServerSpec]
    spare: ServerSpec | None = None


def rehearsal_setup(
    lab: LabConfig,
    count: int | None = None,
    *,
    haproxy_bin: str | None = None,
    workers: int = 2,
    tls_dir: Path | None = None,
) -> RehearsalSetup:
    """Render haproxy.cfg for loopback from the lab's template with a fresh random stats password, and an
    admin socket in HAProxy's working directory (the drills drive HAProxy through it). With the plan's `tls` and
    a `tls_dir`, a lab CA and the site's certificate go there, and HAProxy serves HTTPS too."""
    binary = shutil.which(haproxy_bin or "haproxy")
    if binary is None:
        if haproxy_bin:
            raise RuntimeError(f"{haproxy_bin} is not an executable haproxy binary")
        raise RuntimeError("haproxy is not on PATH (apt-get install haproxy)")
    planned = planned_servers(lab, (count or len(lab.web_servers)) + 1)
    *servers, spare = [web_server(s, free_port(s.host), workers) for s in planned]
    port, stats_port = free_port(LB_HOST), free_port(LB_HOST)
    password = secrets.token_urlsafe(18)
    tls, https_port, ca_file = None, None, None
    if lab.tls is not None and tls_dir is not None:
        ca_file, pem = write_material(tls_dir, [health_host(lab)], [LB_HOST])
        https_port = free_port(LB_HOST)
        tls = TlsBind(https_bind=f"{LB_HOST}:{https_port}", certificate=str(pem), redirect_http=lab.tls.redirect_http)
    settings = HaproxySettings(
        frontend_bind=f"{LB_HOST}:{port}",
        stats_bind=f"{LB_HOST}:{stats_port}",
        servers=[Backend(s.name, f"{s.host}:{s.port}") for s in servers],
        balance=lab.haproxy.balance,
        health_host=health_host(lab),
        stats_user=lab.haproxy.stats_user,
        stats_password=password,
        client_cidr=LOOPBACK,
        admin_cidr=LOOPBACK,
        packaged=False,
        log_target="stderr",
        stats_socket=f"unix@{ADMIN_SOCKET}",
        tls=tls,
    )
    lb = LbSpec(
        cfg_text=render_haproxy_cfg(settings),
        haproxy_bin=binary,
        host=LB_HOST,
        port=port,
        stats_port=stats_port,
        stats_user=lab.haproxy.stats_user,
        stats_password=password,
        settings=settings,
        admin_socket=ADMIN_SOCKET,
        https_port=https_port,
        ca_file=ca_file,
    )
    return RehearsalSetup(lb, servers, spare)
