"""Render haproxy.cfg from files/haproxy.cfg.j2, for the lab VM and for the local rehearsal.

Why a separate low-level render: the VM config and the rehearsal's loopback config must come from the
same template, differing only in binds, server addresses and the global section. Values from the plan
were validated by plan/parse.py; here we only check what this module builds itself (binds, paths) and
quote every user value, the last safety net against a line break or quote reaching the file.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from plan.app_contract import HEALTH_PATH, SERVER_PORT
from plan.model import LabConfig
from plan.tls import HTTPS_PORT
from render.keepalived import LIVENESS_PATH, liveness_port
from render.shipping import render_config

TEMPLATE = "haproxy.cfg.j2"
# Connections one client address may hold at once (a stick table in the frontend): well above any lab user,
# far below maxconn. The rehearsal's load generator and the benchmark stay well under it.
MAX_CONN_PER_SOURCE = 256
# The backend of the web servers: drain/ready name it (haproxy-server-state.sh's default, checked equal), the
# rehearsal reads its rows.
BACKEND = "web_servers"
CONFIG_ID_VARIABLE = "HAPROXY_LAB_CONFIG_ID"
# Where the load balancers keep the site's certificate, chain and key (root-only, 0600): apply-tls-cert.sh's argument.
TLS_PEM_PATH = "/etc/haproxy/tls/site.pem"
# Mozilla's "intermediate" profile (ssl-config.mozilla.org, guidelines 5.7) less its DHE suites: docs/haproxy-cfg.md.
TLS_CIPHERS = ":".join(
    f"ECDHE-{auth}-{cipher}"
    for cipher in ("AES128-GCM-SHA256", "AES256-GCM-SHA384", "CHACHA20-POLY1305")
    for auth in ("ECDSA", "RSA")
)
TLS_CIPHERSUITES = "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"
# HTTP/2 streams one connection may have in flight: with MAX_CONN_PER_SOURCE, what one address can hold.
H2_MAX_STREAMS = 16
_PENDING_ID = "0" * 16

_SERVER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,62}$")
_BIND = re.compile(r"^(\*|[0-9.]+):[0-9]{1,5}$")
_LOG_TARGET = re.compile(r"^(stderr|stdout|/[A-Za-z0-9._/-]+)$")
# An absolute path, or unix@<file name> in HAProxy's working directory (the rehearsal's: AF_UNIX paths
# are limited to about 100 bytes, and its work directory may be deep).
_SOCKET = re.compile(r"^(/[A-Za-z0-9._/-]+|unix@[A-Za-z0-9._-]+)$")
_HOST_HEADER = re.compile(r"^[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]+$")
_LIVENESS_BIND = re.compile(r"^127\.0\.0\.1:[0-9]{1,5}$")


def quote_haproxy_word(value: str) -> str:
    """Quote one config word so HAProxy reads it back byte for byte.

    HAProxy's parser is shell-like: inside single quotes nothing is special ('#', '$', '\\', '"', spaces);
    a single quote itself is written as '\\'' (close, escaped quote, reopen). Line breaks and other control
    characters cannot be expressed safely on one config line and are refused.
    """
    if not value:
        raise ValueError("an empty value cannot be written into haproxy.cfg")
    bad = [ch for ch in value if ord(ch) < 32 or ord(ch) == 127]
    if bad:
        raise ValueError(f"control character {bad[0]!r} cannot be written into haproxy.cfg")
    return "'" + value.replace("'", "'\\''") + "'"


@dataclass(frozen=True)
class Backend:
    """One `server` line: HAProxy's name for it and its ip:port."""

    name: str
    address: str


@dataclass(frozen=True, kw_only=True)
class TlsBind:
    """HTTPS on the frontend (and TLS on the stats port): where, with which certificate file, redirect or not."""

    https_bind: str
    certificate: str
    redirect_http: bool = False

    @property
    def https_port(self) -> int:
        return int(self.https_bind.rsplit(":", 1)[1])

    @property
    def redirect(self) -> str:
        """The redirect rule's target: the scheme alone on 443, else the host with the HTTPS port."""
        if self.https_port == HTTPS_PORT:
            return "scheme https"
        return f"location https://%[req.hdr(host),field(1,:)]:{self.https_port}%[capture.req.uri]"


@dataclass(frozen=True, kw_only=True)
class HaproxySettings:
    """Everything the template needs, in HAProxy's terms (binds, addresses), independent of the stack model."""

    frontend_bind: str
    stats_bind: str
    servers: Sequence[Backend]
    balance: str
    health_host: str
    health_path: str = HEALTH_PATH
    stats_user: str
    stats_password: str
    client_cidr: str
    admin_cidr: str
    packaged: bool = True
    log_target: str = "stderr"
    stats_socket: str | None = None
    liveness_bind: str | None = None
    tls: TlsBind | None = None


def _check(settings: HaproxySettings) -> None:
    """Refuse, before rendering, what this module assembles itself and the plan cannot have checked."""
    problems: list[str] = []
    if not _HOST_HEADER.fullmatch(settings.health_host):
        problems.append(f"health-check Host {settings.health_host!r} is not a host name")
    for label, bind in (("frontend", settings.frontend_bind), ("stats", settings.stats_bind)):
        if not _BIND.fullmatch(bind):
            problems.append(f"{label} bind {bind!r} is not '*:port' or 'ipv4:port'")
    if settings.frontend_bind == settings.stats_bind:
        problems.append("frontend and stats share one bind address")
    if not settings.servers:
        problems.append("no web servers")
    names = [server.name for server in settings.servers]
    for server in settings.servers:
        if not _SERVER_NAME.fullmatch(server.name):
            problems.append(f"server name {server.name!r} is not a valid HAProxy server name")
        if not _BIND.fullmatch(server.address) or server.address.startswith("*"):
            problems.append(f"server {server.name!r} address {server.address!r} is not 'ipv4:port'")
    if len({name.lower() for name in names}) != len(names):
        problems.append("server names are not unique")
    if not _LOG_TARGET.fullmatch(settings.log_target):
        problems.append(f"log target {settings.log_target!r} is not stderr, stdout or an absolute path")
    if settings.liveness_bind is not None and not _LIVENESS_BIND.fullmatch(settings.liveness_bind):
        problems.append(f"liveness bind {settings.liveness_bind!r} is not '127.0.0.1:port'")
    if settings.tls is not None:
        if not _BIND.fullmatch(settings.tls.https_bind):
            problems.append(f"https bind {settings.tls.https_bind!r} is not '*:port' or 'ipv4:port'")
        if not _PATH.fullmatch(settings.tls.certificate):
            problems.append(f"certificate path {settings.tls.certificate!r} is not an absolute path")
    if settings.stats_socket is not None and not _SOCKET.fullmatch(settings.stats_socket):
        problems.append(f"stats socket {settings.stats_socket!r} is not an absolute path or unix@<file name>")
    if problems:
        raise ValueError("cannot render haproxy.cfg: " + "; ".join(problems))


def render_haproxy_cfg(settings: HaproxySettings) -> str:
    """The haproxy.cfg text for these settings (raises ValueError naming every bad value, before rendering)."""
    _check(settings)
    text = render_config(
        TEMPLATE,
        packaged=settings.packaged,
        log_target=settings.log_target,
        stats_socket=settings.stats_socket,
        max_conn_per_source=MAX_CONN_PER_SOURCE,
        liveness_bind=settings.liveness_bind,
        liveness_path=LIVENESS_PATH,
        frontend_bind=settings.frontend_bind,
        stats_bind=settings.stats_bind,
        client_cidr=settings.client_cidr,
        admin_cidr=settings.admin_cidr,
        balance=settings.balance,
        health_path=quote_haproxy_word(settings.health_path),
        health_host=settings.health_host,
        servers=list(settings.servers),
        stats_user=quote_haproxy_word(settings.stats_user),
        stats_password=quote_haproxy_word(settings.stats_password),
        stats_auth=quote_haproxy_word(f"{settings.stats_user}:{settings.stats_password}"),
        config_id=_PENDING_ID,
        backend=BACKEND,
        tls=settings.tls,
        tls_ciphers=TLS_CIPHERS,
        tls_ciphersuites=TLS_CIPHERSUITES,
        h2_max_streams=H2_MAX_STREAMS,
    )
    return _with_config_id(text)


def _with_config_id(text: str) -> str:
    """Fill in the file's identity: a digest of everything else in it, so any change gives a new id.

    The id is only readable where the file itself is (root's master CLI, the admin socket), so a digest
    that covers the stats password reveals nothing new.
    """
    line = f"setenv {CONFIG_ID_VARIABLE} {_PENDING_ID}\n"
    if text.count(line) != 1:
        raise AssertionError("haproxy.cfg.j2 must set the config id exactly once")  # a template bug
    config_id = hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
    return text.replace(line, f"setenv {CONFIG_ID_VARIABLE} {config_id}\n")


def liveness_bind(lab: LabConfig) -> str | None:
    """HAProxy's loopback liveness listener, for keepalived's track script: only in an HA pair."""
    if not lab.is_pair:
        return None
    return f"127.0.0.1:{liveness_port(*lab.listen_ports)}"


def lab_settings(lab: LabConfig, stats_password: str) -> HaproxySettings:
    """The settings for the lab's load-balancer VMs (Ubuntu's packaged HAProxy, listening on every address).

    Binding `*:port` rather than one address is what lets a pair share one config: the virtual IP is served
    the moment keepalived adds it to the interface, with no reload and no `ip_nonlocal_bind`."""
    return HaproxySettings(
        frontend_bind=f"*:{lab.haproxy.frontend_port}",
        stats_bind=f"*:{lab.haproxy.stats_port}",
        servers=[Backend(server.name, f"{server.ip}:{SERVER_PORT}") for server in lab.web_servers],
        balance=lab.haproxy.balance,
        health_host=health_host(lab),
        stats_user=lab.haproxy.stats_user,
        stats_password=stats_password,
        client_cidr=str(lab.haproxy.client_cidr),
        admin_cidr=str(lab.ssh.admin_cidr),
        packaged=True,
        liveness_bind=liveness_bind(lab),
        tls=None
        if lab.tls is None
        else TlsBind(
            https_bind=f"*:{lab.tls.https_port}", certificate=TLS_PEM_PATH, redirect_http=lab.tls.redirect_http
        ),
    )


def health_host(lab: LabConfig) -> str:
    """The Host header of health checks: the load balancer's own FQDN (any name works for the Flask app)."""
    return f"{lab.load_balancers[0].name.lower()}.{lab.network.domain}"


def render_lab_haproxy_cfg(lab: LabConfig, stats_password: str) -> str:
    """The haproxy.cfg for the lab's load-balancer VM."""
    return render_haproxy_cfg(lab_settings(lab, stats_password))
