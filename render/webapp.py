"""What goes into a web server VM's app directory: the Flask app, its Dockerfile, and a compose.yaml.

Why a pure module: the web-server component ships `webapp_bundle(server)` as is and redeploys when
its hash changes, so everything here is deterministic (sorted keys, no timestamps) and testable
without Pulumi. The compose file is built as Python data and dumped by a safe YAML dumper, never
string-templated, because the message is user data that must reach the container byte for byte.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from plan.model import WebServer
from render.shipping import read_file, sha256_hex

WEBAPP_DIR = "webapp"
# Every file of files/webapp that a VM needs to build and run the image (the app's three files are
# written by the app's owner; the Dockerfile copies them, tests check the two lists agree).
WEBAPP_FILES = ("app.py", "gunicorn.conf.py", "requirements.txt", "Dockerfile", ".dockerignore")
COMPOSE_FILE = "compose.yaml"

PROJECT_NAME = "haproxy-lab"
SERVICE = "web"
IMAGE_REPOSITORY = "haproxy-lab/webapp"
CONTAINER_PORT = 8080
HOST_PORT = 80
HEALTH_PATH = "/healthz"
# Same command as the Dockerfile's HEALTHCHECK (tests compare them), so the image and compose agree.
HEALTHCHECK_COMMAND = (
    "python",
    "-c",
    f"import urllib.request; urllib.request.urlopen('http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}', timeout=2)",
)


class _QuotedStr(str):
    """A string always written double-quoted, so no YAML 1.1 or 1.2 reader takes it for a number,
    boolean or null (`0o17`, `1e3`, `yes`, `null` stay text in compose's Go YAML parser too)."""

    __slots__ = ()


class _ComposeDumper(yaml.SafeDumper):
    """SafeDumper plus `_QuotedStr`, no aliases, and lists indented under their key (as yamllint wants)."""

    def ignore_aliases(self, data: Any) -> bool:
        return True

    def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
        super().increase_indent(flow, False)


def _represent_quoted(dumper: yaml.SafeDumper, data: _QuotedStr) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", str(data), style='"')


_ComposeDumper.add_representer(_QuotedStr, _represent_quoted)


def escape_interpolation(text: str) -> str:
    """Escape compose's `$` interpolation (`$HOME`, `${X}`, `$$`) so the text comes out literally."""
    return text.replace("$", "$$")


def _read_webapp_file(name: str) -> str:
    return read_file(f"{WEBAPP_DIR}/{name}")


def webapp_files() -> dict[str, str]:
    """Relative path -> text of every file the VM's app directory gets besides compose.yaml, sorted."""
    return {name: _read_webapp_file(name) for name in sorted(WEBAPP_FILES)}


def image_name() -> str:
    """The image tag compose builds: it changes with any shipped file, so a code change is a new image."""
    files = webapp_files()
    digest = sha256_hex(*(part for name in files for part in (name, files[name])))
    return f"{IMAGE_REPOSITORY}:{digest[:16]}"


@dataclass(frozen=True)
class AppSettings:
    """What a web server's app needs to know about the rest of the lab.

    health_path: the path HAProxy checks (`haproxy.healthPath`); the app answers it as well as /healthz.
    trusted_proxy: the load balancer's address, whose X-Forwarded-For gunicorn trusts (real client IPs
    in the access log).
    """

    health_path: str = HEALTH_PATH
    trusted_proxy: str = "127.0.0.1"


def compose_document(server: WebServer, app: AppSettings = AppSettings()) -> dict[str, Any]:
    """The compose file as data: one `web` service, built from the app directory, hardened."""
    service: dict[str, Any] = {
        "build": ".",
        "image": image_name(),
        "restart": "unless-stopped",
        "init": True,
        "read_only": True,
        # gunicorn's worker heartbeat files and control socket need a writable /tmp; nothing else does.
        "tmpfs": ["/tmp:rw,noexec,nosuid,nodev,mode=1777,size=16m"],  # noqa: S108 (the container's own tmpfs)
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "ports": [_QuotedStr(f"{HOST_PORT}:{CONTAINER_PORT}")],
        "environment": {
            "MESSAGE": _QuotedStr(escape_interpolation(server.message)),
            "HEALTH_PATH": _QuotedStr(escape_interpolation(app.health_path)),
            "FORWARDED_ALLOW_IPS": _QuotedStr(escape_interpolation(app.trusted_proxy)),
        },
        "healthcheck": {
            "test": ["CMD", *HEALTHCHECK_COMMAND],
            "interval": "10s",
            "timeout": "3s",
            "start_period": "10s",
            "retries": 3,
        },
        # Longer than gunicorn.conf.py's graceful_timeout (8 s), so in-flight requests finish on stop.
        "stop_grace_period": "15s",
        "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
    }
    return {"name": PROJECT_NAME, "services": {SERVICE: service}}


def render_compose(server: WebServer, app: AppSettings = AppSettings()) -> str:
    """compose.yaml for one web server: a header comment, then the document dumped by a safe dumper."""
    header = (
        f"# {COMPOSE_FILE} for {server.name}, generated by haproxy-lab (components/webapp_bundle.py).\n"
        "# Do not edit on the VM: the next `pulumi up` overwrites it.\n"
        "# Start or update: docker compose up -d --build\n"
    )
    body = yaml.dump(
        compose_document(server, app),
        Dumper=_ComposeDumper,
        default_flow_style=False,
        sort_keys=True,
        allow_unicode=True,
        width=1_000_000,  # never fold a line: the message must not be re-flowed by any reader
        explicit_start=True,
    )
    return header + body


def webapp_bundle(server: WebServer, app: AppSettings = AppSettings()) -> dict[str, str]:
    """Everything the VM's app directory holds, sorted by path: the app files plus its compose.yaml."""
    files = webapp_files()
    files[COMPOSE_FILE] = render_compose(server, app)
    return dict(sorted(files.items()))
