"""What goes into a web server VM's app directory: the Flask app, its Dockerfile, and a compose.yaml.

Why a pure module: the web-server component ships `webapp_bundle(server)` as is and redeploys when
its hash changes, so everything here is deterministic (sorted keys, no timestamps) and testable
without Pulumi. The compose file is built as Python data and dumped by a safe YAML dumper, never
string-templated, because the message is user data that must reach the container byte for byte.
"""

from __future__ import annotations

from typing import Any

import yaml

from plan.app_contract import CONTAINER_PORT, HEALTH_PATH, SERVER_PORT, AppEnvironment, local_health_url
from plan.model import WebServer
from render.shipping import read_file, sha256_hex

WEBAPP_DIR = "webapp"
# Every file of files/webapp that a VM needs to build and run the image (the app's four files are
# written by the app's owner; the Dockerfile copies them, tests check the two lists agree).
WEBAPP_FILES = ("app.py", "access_log.py", "serve.py", "requirements.txt", "Dockerfile", ".dockerignore")
COMPOSE_FILE = "compose.yaml"
# One line: the URL deploy-webapp.sh polls on the VM once compose reports the container healthy.
HEALTH_URL_FILE = "health-url"

# The compose project: deploy-webapp.sh runs compose with it (read from compose.yaml's `name:`), and an
# operator's `docker compose ps` in the app directory finds it. VMs deployed before it was defined here ran
# under deploy-webapp.sh's own `-p haproxy-lab-web`: the same name, so their running project is kept.
PROJECT_NAME = "haproxy-lab-web"
SERVICE = "web"
IMAGE_REPOSITORY = "haproxy-lab/webapp"
# The container's health check (the slim image has no curl; urlopen raises, exit 1, on anything but 2xx).
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


def compose_document(server: WebServer, trusted_proxies: str = "127.0.0.1") -> dict[str, Any]:
    """The compose file as data: one `web` service, built from the app directory, hardened."""
    service: dict[str, Any] = {
        "build": ".",
        "image": image_name(),
        "restart": "unless-stopped",
        "init": True,
        "read_only": True,
        # Nothing in the app writes to disk; a small writable /tmp for the libraries that expect one.
        "tmpfs": ["/tmp:rw,noexec,nosuid,nodev,mode=1777,size=16m"],  # noqa: S108 (the container's own tmpfs)
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges:true"],
        "ports": [_QuotedStr(f"{SERVER_PORT}:{CONTAINER_PORT}")],
        "environment": {
            name: _QuotedStr(escape_interpolation(value))
            for name, value in AppEnvironment(message=server.message, trusted_proxies=trusted_proxies).as_env().items()
        },
        "healthcheck": {
            "test": ["CMD", *HEALTHCHECK_COMMAND],
            "interval": "10s",
            "timeout": "3s",
            "start_period": "10s",
            "retries": 3,
        },
        # Longer than serve.py's kill_timeout (8 s), so in-flight requests finish on stop.
        "stop_grace_period": "15s",
        "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}},
    }
    return {"name": PROJECT_NAME, "services": {SERVICE: service}}


def render_compose(server: WebServer, trusted_proxies: str = "127.0.0.1") -> str:
    """compose.yaml for one web server: a header comment, then the document dumped by a safe dumper."""
    header = (
        f"# {COMPOSE_FILE} for {server.name}, generated by haproxy-lab (render/webapp.py).\n"
        "# Do not edit on the VM: the next `pulumi up` overwrites it.\n"
        "# Start or update: docker compose up -d --build\n"
    )
    body = yaml.dump(
        compose_document(server, trusted_proxies),
        Dumper=_ComposeDumper,
        default_flow_style=False,
        sort_keys=True,
        allow_unicode=True,
        width=1_000_000,  # never fold a line: the message must not be re-flowed by any reader
        explicit_start=True,
    )
    return header + body


def webapp_bundle(server: WebServer, trusted_proxies: str = "127.0.0.1") -> dict[str, str]:
    """Everything the VM's app directory holds, sorted by path: the app files plus its compose.yaml."""
    files = webapp_files()
    files[COMPOSE_FILE] = render_compose(server, trusted_proxies)
    files[HEALTH_URL_FILE] = local_health_url() + "\n"
    return dict(sorted(files.items()))
