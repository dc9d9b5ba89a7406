"""The report's setup on loopback: its haproxy.cfg verbatim but for addresses and ports, and its Werkzeug app.

Why verbatim: the benchmark must measure what the report deployed (default check timers, 50 s timeouts,
no retries, even `stats admin if TRUE`), so only the listen/server addresses are rewritten, each exactly once.
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

from rehearsal.local_lab import LbSpec, ServerSpec, free_port
from rehearsal.loopback import RehearsalSetup

BASELINE_DIR = Path(__file__).resolve().parent / "report_baseline"
LB_HOST = "127.0.0.40"
SERVER_HOSTS = ("127.0.0.41", "127.0.0.42")
MESSAGES = ("Serveur 1", "Serveur 2")
NAMES = ("WEB1-SAM", "WEB2-SAM")
# (pattern, what it becomes): the report's listeners and server addresses, nothing else.
_REPORT_ADDRESSES = (
    (r"(?m)^(\s*bind )\*:80()$", "frontend"),
    (r"(?m)^(\s*bind )\*:8404()$", "stats"),
    (r"(?m)^(\s*server WEB1-SAM )10\.0\.0\.31:80( check)$", "server0"),
    (r"(?m)^(\s*server WEB2-SAM )10\.0\.0\.32:80( check)$", "server1"),
)


def report_cfg(frontend: str, stats: str, servers: tuple[str, ...]) -> str:
    """The report's haproxy.cfg with its four addresses replaced (raises if one is not found exactly once).

    With a single server, WEB2-SAM's line is dropped: the report's config, one web server behind it.
    """
    text = (BASELINE_DIR / "haproxy.cfg").read_text(encoding="utf-8")
    if len(servers) not in (1, 2):
        raise ValueError("the report's setup has one or two web servers")
    targets = {"frontend": frontend, "stats": stats, "server0": servers[0], "server1": servers[-1]}
    for pattern, key in _REPORT_ADDRESSES:
        text, count = re.subn(pattern, rf"\g<1>{targets[key]}\g<2>", text)
        if count != 1:
            raise ValueError(f"report haproxy.cfg: expected one match of {pattern!r}, found {count}")
    if len(servers) == 1:
        text = re.sub(r"(?m)^\s*server WEB2-SAM .*\n", "", text)
    return text


def baseline_setup(haproxy_bin: str | None = None, count: int = 2) -> RehearsalSetup:
    """The report's two Werkzeug servers (or only the first) behind its HAProxy config, on free loopback ports."""
    binary = haproxy_bin or shutil.which("haproxy")
    if binary is None:
        raise RuntimeError("haproxy is not on PATH (apt-get install haproxy)")
    servers = []
    for name, host, message in list(zip(NAMES, SERVER_HOSTS, MESSAGES, strict=True))[:count]:
        port = free_port(host)
        servers.append(
            ServerSpec(
                name=name,
                message=message,
                host=host,
                port=port,
                argv=(sys.executable, str(BASELINE_DIR / "serveur.py"), host, str(port), message),
                env={"PYTHONDONTWRITEBYTECODE": "1"},
            )
        )
    port, stats_port = free_port(LB_HOST), free_port(LB_HOST)
    cfg = report_cfg(
        f"{LB_HOST}:{port}",
        f"{LB_HOST}:{stats_port}",
        tuple(f"{server.host}:{server.port}" for server in servers),
    )
    return RehearsalSetup(
        LbSpec(cfg_text=cfg, haproxy_bin=binary, host=LB_HOST, port=port, stats_port=stats_port), servers
    )
