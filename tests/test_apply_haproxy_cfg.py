"""apply-haproxy-cfg.sh against a real HAProxy: validation with the real binary, graceful reload of a
real master-worker process on loopback, and the new configuration actually served afterwards.

HAProxy (Debian's 2.6 and the 3.0 build) runs like Ubuntu's unit runs it, `haproxy -W -f <live cfg>
-S <master socket>`, on free 127.0.0.1 ports; HAPROXY_RELOAD is a small script that records each call
and sends USR2 to the master's pid (what the unit's reload does), or on demand fails, sends nothing
(a lost signal) or sends two. Every wait is on HAProxy's real state through the master CLI.
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import os
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rehearsal.local_lab import free_port
from rehearsal.runtime import Processes, cli, show_proc, wait_processes
from render.shipping import CONFIG_TRAILER, script_text
from tests.haproxy_binaries import haproxy26, haproxy30

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "files" / "scripts" / "apply-haproxy-cfg.sh"
SECRET = "Sup3r-S3cret-St4ts-Pw"

RELOAD = """#!/bin/sh
echo reload >>"$STATE/reloads"
if [ -e "$STATE/fail-reload-once" ]; then
    rm -f "$STATE/fail-reload-once"
    echo "Job for haproxy.service failed (fake)" >&2
    exit 1
fi
if [ -e "$STATE/lose-reload-once" ]; then
    rm -f "$STATE/lose-reload-once"
    exit 0
fi
kill -USR2 "$MASTER_PID"
if [ -e "$STATE/double-reload-once" ]; then
    rm -f "$STATE/double-reload-once"
    kill -USR2 "$MASTER_PID"
fi
"""
ID_LINE = "    setenv HAPROXY_LAB_CONFIG_ID {}\n"


def make_cfg(
    port: int, stats_port: int, body: str, *, extra: str = "", trailer: bool = True, config_id: bool = True
) -> str:
    """A small valid haproxy.cfg: the frontend answers `body`, stats carry the password; with config_id, the
    `setenv HAPROXY_LAB_CONFIG_ID` line the renderer writes (a digest of the rest of the file)."""
    text = f"""global
{ID_LINE if config_id else ""}    maxconn 100

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
    text += f"{CONFIG_TRAILER}\n" if trailer else ""
    return text.replace(ID_LINE, ID_LINE.format(hashlib.sha256(text.encode()).hexdigest()[:16]))


def config_id_of(text: str) -> str:
    return text.split("HAPROXY_LAB_CONFIG_ID ", 1)[1].split("\n", 1)[0]


@dataclass
class Lab:
    cfg: Path
    state: Path
    port: int
    stats_port: int
    env: dict[str, str]
    master_socket: Path

    def config(self, body: str, *, extra: str = "", trailer: bool = True, config_id: bool = True) -> str:
        return make_cfg(self.port, self.stats_port, body, extra=extra, trailer=trailer, config_id=config_id)

    def processes(self) -> Processes:
        return show_proc(self.master_socket)

    def served_id(self) -> str:
        """The config id of the newest worker, asked through the master CLI."""
        newest = self.processes().newest
        assert newest is not None, "no current worker"
        answer = cli(self.master_socket, f"@!{newest} show env HAPROXY_LAB_CONFIG_ID")
        return answer.strip().removeprefix("HAPROXY_LAB_CONFIG_ID=")

    def settled(self) -> Processes:
        """Wait until the workers of earlier configurations have exited (they finish their connections)."""
        return wait_processes(self.master_socket, lambda procs: len(procs.workers) == 1)

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

    def serves(self) -> str | None:
        """What clients get once only the newest worker is left (no sleep: the master CLI says when)."""
        self.settled()
        return self.get()


def start_master(haproxy: str, cfg: Path, master_socket: Path, log: Path) -> subprocess.Popen[bytes]:
    """HAProxy in master-worker mode, as the packaged unit starts it (-W plus a master CLI socket)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [haproxy, "-W", "-f", str(cfg), "-S", str(master_socket)], stdout=out, stderr=subprocess.STDOUT
        )


def stop_master(master: subprocess.Popen[bytes]) -> None:
    master.send_signal(signal.SIGTERM)  # the master stops its workers
    try:
        master.wait(timeout=10)
    except subprocess.TimeoutExpired:
        master.kill()
        master.wait()


@pytest.fixture(params=["2.6", "3.0"])
def haproxy(request: pytest.FixtureRequest) -> str:
    """Both HAProxy versions around the VMs' 2.8: the show proc layout and reload behaviour must hold on each."""
    return haproxy26() if request.param == "2.6" else haproxy30()


@pytest.fixture
def lab(tmp_path: Path, haproxy: str) -> Iterator[Lab]:
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
    master_socket = state / "master.sock"
    log = state / "haproxy.log"
    master = start_master(haproxy, cfg, master_socket, log)
    env = {
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "STATE": str(state),
        "MASTER_PID": str(master.pid),  # the unit's $MAINPID; a pidfile is rewritten on every reload
        "HAPROXY_CFG": str(cfg),
        "HAPROXY_BIN": haproxy,
        "HAPROXY_RELOAD": f"sh {reload_script}",
        "HAPROXY_MASTER_SOCKET": str(master_socket),
        "HAPROXY_RELOAD_TIMEOUT": "5",
        "LC_ALL": "C",
    }
    try:
        the_lab = Lab(cfg=cfg, state=state, port=port, stats_port=stats_port, env=env, master_socket=master_socket)
        try:
            wait_processes(master_socket, lambda procs: procs.newest is not None)
        except TimeoutError:
            pytest.fail("HAProxy did not start: " + log.read_text())
        assert the_lab.serves() == "v1"
        yield the_lab
    finally:
        stop_master(master)


def assert_private(path: Path) -> None:
    st = path.stat()
    assert st.st_mode & 0o777 == 0o640
    with contextlib.suppress(KeyError):  # without a haproxy group, root's group is fine
        assert st.st_gid == grp.getgrnam("haproxy").gr_gid


@pytest.mark.parametrize("with_id", [True, False], ids=["config-id", "no-config-id"])
def test_good_config_is_swapped_reloaded_and_served(lab: Lab, with_id: bool) -> None:
    old = lab.cfg.read_bytes()
    new = lab.config("v2", config_id=with_id)

    result = lab.apply(new)

    assert result.returncode == 0, result.stderr
    assert "confirmed" in result.stdout
    assert lab.cfg.read_text() == new
    assert (lab.cfg.parent / "haproxy.cfg.previous").read_bytes() == old
    assert lab.reloads() == 1
    if with_id:
        assert lab.served_id() == config_id_of(new)
    assert lab.serves() == "v2"
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
        pytest.param(lambda text: text.removesuffix(CONFIG_TRAILER + "\n"), id="no-trailer"),
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


def assert_restored(lab: Lab, result: subprocess.CompletedProcess[str], old: bytes) -> None:
    """The update failed, the previous file is back and confirmed serving, so the next run retries."""
    assert result.returncode != 0
    assert "reload failed" in result.stderr
    assert "previous configuration restored" in result.stderr
    assert "haproxy reloaded with the previous configuration" in result.stderr
    assert lab.cfg.read_bytes() == old
    assert lab.served_id() == config_id_of(old.decode())
    assert lab.serves() == "v1"
    assert_private(lab.cfg)
    assert lab.cfg_dir_listing() == ["haproxy.cfg", "haproxy.cfg.previous"]


def test_failing_reload_restores_previous_config(lab: Lab) -> None:
    old = lab.cfg.read_bytes()
    (lab.state / "fail-reload-once").touch()

    result = lab.apply(lab.config("v2"))

    assert_restored(lab, result, old)
    assert "the reload command failed" in result.stderr
    assert lab.reloads() == 2  # the failed reload, then the reload of the restored file

    # Once reloads work again, the same new config goes through.
    assert lab.apply(lab.config("v2")).returncode == 0
    assert lab.serves() == "v2"


def test_reload_that_cannot_bind_fails_the_update(lab: Lab) -> None:
    """`haproxy -c` passes and the reload command exits 0, but the new worker cannot bind its port."""
    old = lab.cfg.read_bytes()
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        taken = squatter.getsockname()[1]
        clash = lab.config("v2", extra=f"\nfrontend clash\n    bind 127.0.0.1:{taken}\n\n")

        result = lab.apply(clash)

        assert_restored(lab, result, old)
        assert "could not start a worker" in result.stderr
        assert lab.reloads() == 2

    # With the port free again, the same file goes through.
    assert lab.apply(clash).returncode == 0
    assert lab.served_id() == config_id_of(clash)


def test_lost_reload_signal_fails_the_update(lab: Lab) -> None:
    """The reload command exits 0 but HAProxy never reloads: not confirmed, so not done."""
    old = lab.cfg.read_bytes()
    (lab.state / "lose-reload-once").touch()

    result = lab.apply(lab.config("v2"))

    assert_restored(lab, result, old)
    assert "not confirmed within 5s" in result.stderr
    assert lab.reloads() == 2
    assert lab.apply(lab.config("v2")).returncode == 0
    assert lab.serves() == "v2"


def test_two_reloads_in_quick_succession_still_serve_the_new_file(lab: Lab) -> None:
    (lab.state / "double-reload-once").touch()
    new = lab.config("v2")

    result = lab.apply(new)

    assert result.returncode == 0, result.stderr
    assert lab.served_id() == config_id_of(new)
    assert lab.serves() == "v2"


def test_successive_updates_keep_the_last_previous(lab: Lab) -> None:
    """Back to back: each run returns only once its reload is confirmed, so the next USR2 is never lost."""
    versions = [lab.config(f"v{n}") for n in range(2, 6)]
    for text in versions:
        result = lab.apply(text)
        assert result.returncode == 0, result.stderr
        assert lab.served_id() == config_id_of(text)
    assert lab.serves() == "v5"
    assert (lab.cfg.parent / "haproxy.cfg.previous").read_text() == versions[-2]
    assert lab.reloads() == len(versions)


def test_first_install_without_live_file(tmp_path: Path) -> None:
    """No live file yet: the reload command starts HAProxy (as reload-or-restart does), and that is confirmed."""
    cfg = tmp_path / "haproxy.cfg"
    master_socket = tmp_path / "master.sock"
    text = make_cfg(free_port("127.0.0.1"), free_port("127.0.0.1"), "v1")
    pidfile = tmp_path / "haproxy.pid"
    result = subprocess.run(
        ["dash", "-c", script_text(SCRIPT.name), "apply-haproxy-cfg.sh"],
        input=text,
        capture_output=True,
        text=True,
        env={
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "HAPROXY_CFG": str(cfg),
            "HAPROXY_BIN": haproxy26(),
            "HAPROXY_RELOAD": f"{haproxy26()} -W -D -f {cfg} -p {pidfile} -S {master_socket}",
            "HAPROXY_MASTER_SOCKET": str(master_socket),
            "HAPROXY_RELOAD_TIMEOUT": "5",
        },
        timeout=30,
        check=False,
    )
    try:
        assert result.returncode == 0, result.stderr
        assert cfg.read_text() == text
        assert_private(cfg)
        assert "confirmed" in result.stdout
        assert sorted(p.name for p in tmp_path.iterdir()) == ["haproxy.cfg", "haproxy.pid", "master.sock"]
    finally:
        with contextlib.suppress(OSError, ValueError):
            master = show_proc(master_socket).master
            os.kill(master, signal.SIGTERM)
