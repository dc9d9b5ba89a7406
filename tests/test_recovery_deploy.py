"""A web app deploy stopped by its step's budget leaves the previous app or the new one, never half, and
the next run finishes the job: it brings the files in place up (an old container answering its health
check is not proof that the new files run), and the previous version is still there to roll back to.

deploy-webapp.sh runs as its step runs it (tests/vm_shell.py) with its real bound; `docker` is a stand-in
recording each `compose up` with the app version it saw (and hanging or failing on demand); the health
check is the real curl against a local server that always answers 200, like a container left running.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plan.app_contract import HEALTH_PATH
from render.webapp import PROJECT_NAME
from tests.vm_shell import cut_step, run_step

pytestmark = pytest.mark.timeout(120)

DOCKER = r"""#!/bin/sh
case " $* " in *" up "*) ;; *) exit 0 ;; esac
cat "$APP_DIR/app.py" >>"$STATE/compose-ups"
if [ -e "$STATE/compose-hangs-once" ]; then
    rm -f "$STATE/compose-hangs-once"
    exec sleep infinity
fi
[ ! -e "$STATE/compose-fails" ] || { echo "compose: build failed" >&2; exit 17; }
"""


class _Healthy(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == HEALTH_PATH else 404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Vm:
    where: Path
    app_dir: Path
    state: Path
    env: dict[str, str]
    health_url: str

    def bundle(self, version: str) -> Path:
        """A fresh SRC_DIR as the bundle step unpacks it (the script removes it)."""
        src = self.where / "bundles" / f"{version}-{len(list((self.where / 'bundles').iterdir()))}"
        src.mkdir(parents=True, mode=0o700)
        files = {
            "app.py": f"VERSION = {version!r}\n",
            "compose.yaml": f"name: {PROJECT_NAME}\nservices:\n  web:\n    build: .\n",
            "Dockerfile": "FROM python:3.12-slim\n",
            "health-url": f"{self.health_url}\n",
        }
        for name, text in files.items():
            (src / name).write_text(text)
        return src

    def deploy(self, version: str) -> str:
        result = run_step(self.where, "deploy-webapp.sh", str(self.bundle(version)), env=self.env)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def cut(self, version: str) -> None:
        """A deploy whose `compose up` hangs, stopped by the step's bound."""
        (self.state / "compose-hangs-once").touch()
        src = self.bundle(version)
        cut_step(self.where, "deploy-webapp.sh", str(src), env=self.env)

    def live(self) -> str:
        return (self.app_dir / "app.py").read_text()

    def ups(self) -> list[str]:
        return (self.state / "compose-ups").read_text().splitlines()

    def listing(self) -> list[str]:
        return sorted(p.name for p in self.app_dir.parent.iterdir())


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[Vm]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Healthy)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        bin_dir, state, bundles = tmp_path / "bin", tmp_path / "state", tmp_path / "bundles"
        for directory in (bin_dir, state, bundles):
            directory.mkdir()
        (bin_dir / "docker").write_text(DOCKER)
        (bin_dir / "docker").chmod(0o755)
        app_dir = tmp_path / "opt/haproxy-lab/webapp"
        env = {
            "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_DIR": str(app_dir),
            "STATE": str(state),
            "HEALTH_TIMEOUT": "2",
        }
        url = f"http://127.0.0.1:{server.server_address[1]}{HEALTH_PATH}"
        yield Vm(where=tmp_path, app_dir=app_dir, state=state, env=env, health_url=url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


V1, V2 = "VERSION = 'v1'", "VERSION = 'v2'"


def test_a_deploy_cut_during_compose_is_brought_up_by_the_next_run(vm: Vm) -> None:
    vm.deploy("v1")
    vm.cut("v2")
    assert vm.live() in (V1 + "\n", V2 + "\n"), "one version or the other, never half"

    out = vm.deploy("v2")

    assert "nothing to do" not in out
    assert vm.ups() == [V1, V2, V2], "the files in place were brought up, not trusted"
    assert vm.live() == V2 + "\n"
    assert vm.listing() == ["webapp"]


def test_a_deploy_cut_during_compose_can_still_roll_back(vm: Vm) -> None:
    vm.deploy("v1")
    vm.cut("v2")
    (vm.state / "compose-fails").touch()

    result = run_step(vm.where, "deploy-webapp.sh", str(vm.bundle("v2")), env=vm.env)

    assert result.returncode == 1, result.stdout
    assert "compose: build failed" in result.stderr
    assert vm.live() == V1 + "\n", "the previous version survived the cut"
    assert vm.ups()[-1] == V1, "and was brought up again"


def test_a_first_deploy_cut_short_is_brought_up_by_the_next_run(vm: Vm) -> None:
    vm.cut("v1")
    out = vm.deploy("v1")
    assert "nothing to do" not in out
    assert vm.ups() == [V1, V1]
    assert vm.listing() == ["webapp"]


def test_a_deploy_cut_between_its_two_renames_puts_the_previous_version_back(vm: Vm) -> None:
    """No tool runs between the two renames, so nothing there can hang: the state such a cut (a reboot)
    leaves is built by hand, from the script's own steps: the marker, the new version staged, the
    previous one moved aside, no APP_DIR."""
    vm.deploy("v1")
    parent = vm.app_dir.parent
    (parent / ".webapp.deploying").touch()
    staged = parent / ".webapp.new.cut123"
    staged.mkdir()
    (staged / "app.py").write_text(V2 + "\n")
    vm.app_dir.rename(parent / ".webapp.old")
    (vm.state / "compose-fails").touch()

    result = run_step(vm.where, "deploy-webapp.sh", str(vm.bundle("v2")), env=vm.env)

    assert result.returncode == 1, result.stdout
    assert vm.live() == V1 + "\n", "the previous version is back, and still the one to roll back to"
    (vm.state / "compose-fails").unlink()
    vm.deploy("v2")
    assert vm.live() == V2 + "\n"
    assert vm.listing() == ["webapp"]
