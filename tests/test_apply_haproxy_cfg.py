"""apply-haproxy-cfg.sh against a real HAProxy: validation with the real binary, graceful reload of a
real master-worker process on loopback, and the new configuration actually served afterwards.

HAProxy runs as `haproxy -W -f <live cfg> -p <pidfile>` on free 127.0.0.1 ports; HAPROXY_RELOAD is a
small script that records each call and sends USR2 to the master (HAProxy's graceful reload, what the
packaged unit's reload does), or fails once on demand.
"""

from __future__ import annotations

import contextlib
import grp
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rehearsal.local_lab import free_port
from render.shipping import script_text

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "files" / "scripts" / "apply-haproxy-cfg.sh"
TRAILER = "# haproxy-lab: end of configuration"
SECRET = "Sup3r-S3cret-St4ts-Pw"

RELOAD = """#!/bin/sh
echo reload >>"$STATE/reloads"
if [ -e "$STATE/fail-reload-once" ]; then
    rm -f "$STATE/fail-reload-once"
    echo "Job for haproxy.service failed (fake)" >&2
    exit 1
fi
kill -USR2 "$(cat "$STATE/haproxy.pid")"
"""


def make_cfg(port: int, stats_port: int, body: str, *, extra: str = "", trailer: bool = True) -> str:
    """A small valid haproxy.cfg: the frontend answers `body`, stats carry the password."""
    text = f"""global
    maxconn 100

defaults
    mode http
    timeout connect 2s
    timeout client 5s
    timeout server 5s

frontend web
    bind 127.0.0.1:{port}
    http-request return status 200 content-type text/plain string "{body}"

listen stats
    bind 127.0.0.1:{stats_port}
    stats enable
    stats uri /stats
    stats auth admin:{SECRET}
{extra}"""
    return text + (f"{TRAILER}\n" if trailer else "")


@dataclass
class Lab:
    cfg: Path
    state: Path
    port: int
    stats_port: int
    env: dict[str, str]

    def config(self, body: str, **kwargs: str | bool) -> str:
        extra = kwargs.get("extra", "")
        trailer = kwargs.get("trailer", True)
        assert isinstance(extra, str)
        assert isinstance(trailer, bool)
        return make_cfg(self.port, self.stats_port, body, extra=extra, trailer=trailer)

    def apply(self, text: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["dash", "-c", script_text(SCRIPT.name), "apply-haproxy-cfg.sh"],
            input=text,
            capture_output=True,
            text=True,
            env=self.env,
            timeout=30,
            check=False,
        )
        assert SECRET not in result.stdout + result.stderr, "the stats password was printed"
        return result

    def reloads(self) -> int:
        path = self.state / "reloads"
        return len(path.read_text().splitlines()) if path.exists() else 0

    def cfg_dir_listing(self) -> list[str]:
        return sorted(p.name for p in self.cfg.parent.iterdir())

    def get(self) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/", timeout=2) as response:
                body: bytes = response.read()
                return body.decode()
        except OSError:
            return None

    def wait_served(self, body: str) -> None:
        """Wait (bounded) until HAProxy serves `body`; a reload takes a few ms to fork the new worker."""
        deadline = time.monotonic() + 10
        while self.get() != body:
            if time.monotonic() > deadline:
                pytest.fail(f"HAProxy did not serve {body!r} (last answer: {self.get()!r})")
            time.sleep(0.05)


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.fail("haproxy is not installed (apt-get install haproxy)")
    etc = tmp_path / "etc" / "haproxy"
    etc.mkdir(parents=True)
    state = tmp_path / "state"
    state.mkdir()
    reload_script = state / "reload.sh"
    reload_script.write_text(RELOAD)
    cfg = etc / "haproxy.cfg"
    port, stats_port = free_port("127.0.0.1"), free_port("127.0.0.1")
    cfg.write_text(make_cfg(port, stats_port, "v1"))
    cfg.chmod(0o600)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "STATE": str(state),
        "HAPROXY_CFG": str(cfg),
        "HAPROXY_BIN": haproxy,
        "HAPROXY_RELOAD": f"sh {reload_script}",
        "LC_ALL": "C",
    }
    log = (state / "haproxy.log").open("w")
    master = subprocess.Popen(
        [haproxy, "-W", "-f", str(cfg), "-p", str(state / "haproxy.pid")],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        the_lab = Lab(cfg=cfg, state=state, port=port, stats_port=stats_port, env=env)
        deadline = time.monotonic() + 10
        while not (state / "haproxy.pid").exists() or the_lab.get() != "v1":
            if master.poll() is not None or time.monotonic() > deadline:
                pytest.fail("HAProxy did not start: " + (state / "haproxy.log").read_text())
            time.sleep(0.05)
        yield the_lab
    finally:
        master.send_signal(signal.SIGTERM)  # the master stops its workers
        try:
            master.wait(timeout=10)
        except subprocess.TimeoutExpired:
            master.kill()
            master.wait()
        log.close()


def assert_private(path: Path) -> None:
    st = path.stat()
    assert st.st_mode & 0o777 == 0o640
    with contextlib.suppress(KeyError):  # without a haproxy group, root's group is fine
        assert st.st_gid == grp.getgrnam("haproxy").gr_gid


def test_good_config_is_swapped_reloaded_and_served(lab: Lab) -> None:
    old = lab.cfg.read_bytes()
    new = lab.config("v2")

    result = lab.apply(new)

    assert result.returncode == 0, result.stderr
    assert lab.cfg.read_text() == new
    assert (lab.cfg.parent / "haproxy.cfg.previous").read_bytes() == old
    assert lab.reloads() == 1
    lab.wait_served("v2")
    assert_private(lab.cfg)
    assert_private(lab.cfg.parent / "haproxy.cfg.previous")
    assert lab.cfg_dir_listing() == ["haproxy.cfg", "haproxy.cfg.previous"]


def test_broken_config_is_refused_with_haproxys_message(lab: Lab) -> None:
    old = lab.cfg.read_bytes()
    broken = lab.config("v2").replace("    maxconn 100\n", "    maxconn 100\n    no-such-keyword on\n")

    result = lab.apply(broken)

    assert result.returncode != 0
    assert "unknown keyword 'no-such-keyword'" in result.stderr  # HAProxy's own words
    assert lab.cfg.read_bytes() == old
    assert lab.reloads() == 0
    assert lab.cfg_dir_listing() == ["haproxy.cfg"]
    assert lab.get() == "v1"


def test_config_invalid_halfway_is_refused(lab: Lab) -> None:
    old = lab.cfg.read_bytes()
    second_half = "backend later\n    balance roundrobin\n    server s1 127.0.0.1:9 chek inter 2s\n\n"
    result = lab.apply(lab.config("v2", extra="\n" + second_half))

    assert result.returncode != 0
    assert "chek" in result.stderr
    assert lab.cfg.read_bytes() == old
    assert lab.reloads() == 0
    assert lab.cfg_dir_listing() == ["haproxy.cfg"]


@pytest.mark.parametrize(
    "cut",
    [
        pytest.param(lambda text: text.removesuffix(TRAILER + "\n"), id="no-trailer"),
        pytest.param(lambda text: text[: -len(" configuration\n")], id="cut-inside-trailer"),
        pytest.param(lambda text: text[: len(text) // 2], id="cut-halfway"),
        pytest.param(lambda text: "", id="empty"),
        pytest.param(lambda text: text.replace("\n", "\r\n"), id="crlf"),
        pytest.param(lambda text: text.removesuffix("\n"), id="no-final-newline"),
        pytest.param(lambda text: text + "\n", id="blank-line-after-trailer"),
    ],
)
def test_truncated_config_is_refused(lab: Lab, cut: Callable[[str], str]) -> None:
    old = lab.cfg.read_bytes()
    result = lab.apply(cut(lab.config("v2")))
    assert result.returncode != 0
    assert "truncated" in result.stderr
    assert lab.cfg.read_bytes() == old
    assert lab.reloads() == 0
    assert lab.cfg_dir_listing() == ["haproxy.cfg"]


def test_same_config_twice_changes_nothing(lab: Lab) -> None:
    new = lab.config("v2")
    assert lab.apply(new).returncode == 0
    before = [(p.name, p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(lab.cfg.parent.iterdir())]

    result = lab.apply(new)

    assert result.returncode == 0, result.stderr
    assert "unchanged" in result.stdout
    assert lab.reloads() == 1
    after = [(p.name, p.read_bytes(), p.stat().st_mtime_ns, p.stat().st_ino) for p in sorted(lab.cfg.parent.iterdir())]
    assert after == before


def test_failing_reload_restores_previous_config(lab: Lab) -> None:
    old = lab.cfg.read_bytes()
    (lab.state / "fail-reload-once").touch()

    result = lab.apply(lab.config("v2"))

    assert result.returncode != 0
    assert "reload failed" in result.stderr
    assert "previous configuration restored" in result.stderr
    assert lab.cfg.read_bytes() == old
    assert lab.reloads() == 2  # the failed reload, then the reload of the restored file
    assert lab.get() == "v1"
    assert_private(lab.cfg)
    assert lab.cfg_dir_listing() == ["haproxy.cfg", "haproxy.cfg.previous"]

    # Once reloads work again, the same new config goes through.
    assert lab.apply(lab.config("v2")).returncode == 0
    lab.wait_served("v2")


def test_successive_updates_keep_the_last_previous(lab: Lab) -> None:
    v2, v3 = lab.config("v2"), lab.config("v3")
    assert lab.apply(v2).returncode == 0
    assert lab.apply(v3).returncode == 0
    lab.wait_served("v3")
    assert (lab.cfg.parent / "haproxy.cfg.previous").read_text() == v2
    assert lab.reloads() == 2


def test_first_install_without_live_file(tmp_path: Path) -> None:
    haproxy = shutil.which("haproxy")
    assert haproxy is not None
    cfg = tmp_path / "haproxy.cfg"
    calls = tmp_path / "calls"
    text = make_cfg(free_port("127.0.0.1"), free_port("127.0.0.1"), "v1")
    result = subprocess.run(
        ["dash", "-c", SCRIPT.read_text(), "apply-haproxy-cfg.sh"],
        input=text,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HAPROXY_CFG": str(cfg),
            "HAPROXY_BIN": haproxy,
            "HAPROXY_RELOAD": f"echo reload >>{calls}",
        },
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert cfg.read_text() == text
    assert_private(cfg)
    assert calls.read_text() == "reload\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calls", "haproxy.cfg"]
