"""files/scripts/deploy-webapp.sh.

Run as on a VM with fake system commands: tests/script_harness.py.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plan.app_contract import HEALTH_PATH
from render.webapp import PROJECT_NAME
from tests.script_harness import (
    Fakes,
    run_script,
    snapshot,
)

# --- deploy-webapp.sh -------------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == HEALTH_PATH else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Webapp:
    fakes: Fakes
    app_dir: Path
    tmp: Path
    env: dict[str, str]
    handler: type[_Health]
    health_url: str

    def source(self, version: str, compose: str = f"name: {PROJECT_NAME}\nservices:\n  web:\n    build: .\n") -> Path:
        """A fresh SRC_DIR like the one the bundle step unpacks (private, removed by the script)."""
        src = self.tmp / f"bundle-{version}-{len(list(self.tmp.iterdir()))}"
        src.mkdir(mode=0o700)
        files = {
            "app.py": f"VERSION = {version!r}\n",
            "serve.py": "BIND = '0.0.0.0:8000'\n",
            "requirements.txt": "flask\ngranian\n",
            "Dockerfile": "FROM python:3.12-slim\n",
            ".dockerignore": "__pycache__\n",
            "compose.yaml": compose,
            "health-url": f"{self.health_url}\n",
        }
        for name, text in files.items():
            (src / name).write_text(text)
            (src / name).chmod(0o600)
        return src

    def deploy(self, src: Path) -> subprocess.CompletedProcess[str]:
        return run_script("deploy-webapp.sh", str(src), env=self.env)

    def compose_calls(self) -> list[str]:
        return [c for c in self.fakes.calls() if c.startswith("docker compose")]


@pytest.fixture
def webapp(fakes: Fakes, tmp_path: Path) -> Iterator[Webapp]:
    handler = type("Health", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        app_dir = tmp_path / "opt/haproxy-lab/webapp"
        bundles = tmp_path / "bundles"
        bundles.mkdir()
        # Only docker is faked here: curl must be the real one, talking to the health server.
        web_bin = tmp_path / "web-bin"
        web_bin.mkdir()
        shutil.copy2(tmp_path / "bin" / "docker", web_bin / "docker")
        env = {
            **fakes.env,
            "PATH": f"{web_bin}:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_DIR": str(app_dir),
            "DOCKER": "docker",
            "HEALTH_TIMEOUT": "2",
        }
        # The URL to poll comes from the bundle's health-url file, as on the VM (render/webapp.py writes it).
        url = f"http://127.0.0.1:{server.server_address[1]}{HEALTH_PATH}"
        yield Webapp(fakes=fakes, app_dir=app_dir, tmp=bundles, env=env, handler=handler, health_url=url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_deploy_first_run_installs_and_starts(webapp: Webapp) -> None:
    src = webapp.source("v1")
    result = webapp.deploy(src)
    assert result.returncode == 0, result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v1'\n"
    assert (webapp.app_dir / ".dockerignore").exists()
    assert (webapp.app_dir / "app.py").stat().st_mode & 0o777 == 0o644
    assert webapp.app_dir.stat().st_mode & 0o777 == 0o755
    [call] = webapp.compose_calls()
    assert f"-p {PROJECT_NAME} " in call
    assert f"-f {webapp.app_dir}/compose.yaml" in call
    assert "up -d --build --remove-orphans --wait --wait-timeout 120" in call
    assert (webapp.fakes.state / "compose-saw").read_text() == "VERSION = 'v1'\n"
    assert "healthy" in result.stdout
    assert not src.exists()
    assert sorted(p.name for p in webapp.app_dir.parent.iterdir()) == ["webapp"]


def test_deploy_refuses_a_bundle_without_its_health_url(webapp: Webapp) -> None:
    src = webapp.source("v1")
    (src / "health-url").unlink()
    result = webapp.deploy(src)
    assert result.returncode == 2
    assert "health-url" in result.stderr
    assert webapp.compose_calls() == []


def test_deploy_same_content_again_does_nothing(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    before = snapshot(webapp.app_dir.parent)
    webapp.fakes.reset_calls()

    src = webapp.source("v1")
    result = webapp.deploy(src)

    assert result.returncode == 0, result.stderr
    assert webapp.compose_calls() == []
    assert snapshot(webapp.app_dir.parent) == before
    assert "nothing to do" in result.stdout
    assert not src.exists()


def test_deploy_same_content_but_unhealthy_brings_it_up(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.fakes.reset_calls()
    webapp.handler.status = 503
    result = webapp.deploy(webapp.source("v1"))
    assert result.returncode != 0  # still unhealthy after compose: reported, not hidden
    assert len(webapp.compose_calls()) == 1


def test_deploy_changed_content_swaps_and_restarts(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.fakes.reset_calls()

    result = webapp.deploy(webapp.source("v2"))

    assert result.returncode == 0, result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v2'\n"
    assert len(webapp.compose_calls()) == 1
    assert (webapp.fakes.state / "compose-saw").read_text().splitlines()[-1] == "VERSION = 'v2'"
    assert sorted(p.name for p in webapp.app_dir.parent.iterdir()) == ["webapp"]


def test_deploy_compose_failure_keeps_previous_app(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.fakes.reset_calls()
    (webapp.fakes.state / "compose-fails").touch()

    src = webapp.source("v2")
    result = webapp.deploy(src)

    assert result.returncode != 0
    assert "compose: build failed" in result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v1'\n"
    assert len(webapp.compose_calls()) == 2  # the failed up, then the previous version brought up again
    assert not src.exists()

    # The next deploy of v2, once compose works, goes through.
    (webapp.fakes.state / "compose-fails").unlink()
    result = webapp.deploy(webapp.source("v2"))
    assert result.returncode == 0, result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v2'\n"
    assert sorted(p.name for p in webapp.app_dir.parent.iterdir()) == ["webapp"]


def test_deploy_unhealthy_after_compose_fails_and_restores(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.handler.status = 500
    result = webapp.deploy(webapp.source("v2"))
    assert result.returncode != 0
    assert "did not answer 200" in result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v1'\n"


# What today's main left on a running VM: its compose.yaml named the project `haproxy-lab`, but its
# deploy-webapp.sh ran compose with `-p haproxy-lab-web`, so the running container (holding port 80) is in that one.
MAIN_COMPOSE = "name: haproxy-lab\nservices:\n  web:\n    build: .\n"
MAIN_RUNNING_PROJECT = "haproxy-lab-web"


def test_deploy_over_an_app_main_deployed_stays_in_its_running_project(webapp: Webapp) -> None:
    """The upgrade path: the new deploy runs compose in the project whose container holds port 80 (compose
    then replaces that container in place; another project would start a second one that cannot bind port
    80 beside it), and so does putting the old app directory back after a failure, whatever its compose.yaml
    says."""
    assert webapp.deploy(webapp.source("v1", compose=MAIN_COMPOSE)).returncode == 0  # the VM as main left it
    webapp.fakes.reset_calls()
    result = webapp.deploy(webapp.source("v2"))
    assert result.returncode == 0, result.stderr
    [up] = webapp.compose_calls()
    assert f"-p {MAIN_RUNNING_PROJECT} " in up

    (webapp.app_dir / "compose.yaml").write_text(MAIN_COMPOSE)  # back to main's directory, then a failed deploy
    webapp.fakes.reset_calls()
    (webapp.fakes.state / "compose-fails").touch()
    result = webapp.deploy(webapp.source("v3"))
    assert result.returncode != 0
    failed_up, restore = webapp.compose_calls()
    assert f"-p {MAIN_RUNNING_PROJECT} " in failed_up
    assert f"-p {MAIN_RUNNING_PROJECT} " in restore, "the restored directory must run in the same project"


def test_deploy_refuses_a_compose_file_without_a_project_name(webapp: Webapp) -> None:
    result = webapp.deploy(webapp.source("v1", compose="services:\n  web:\n    build: .\n"))
    assert result.returncode == 2
    assert "names no project" in result.stderr
    assert webapp.compose_calls() == []


def test_deploy_rejects_a_directory_without_compose_file(webapp: Webapp) -> None:
    src = webapp.source("v1")
    (src / "compose.yaml").unlink()
    result = webapp.deploy(src)
    assert result.returncode == 2
    assert webapp.compose_calls() == []
    assert not webapp.app_dir.exists()
