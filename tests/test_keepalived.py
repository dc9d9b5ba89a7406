"""keepalived for the HA pair: every rendered variant passes the real `keepalived -t`, the renderer refuses bad
values, the track script judges a real HTTP listener, and apply-keepalived-conf.sh installs a config atomically.

`keepalived -t` checks that the configured interface exists, so it runs inside a throwaway network namespace
(`unshare --net`) holding an interface named eth0, as on the VMs; the namespace dies with the command.
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.server
import ipaddress
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from plan.model import LabConfig
from plan.parse import parse_lab_config
from plan.stack_file import load_stack_file, raw_project_config, stack_file
from rehearsal.ha.addresses import ha_plan
from rehearsal.local_lab import free_port
from render.haproxy_cfg import render_lab_haproxy_cfg
from render.keepalived import (
    CHECK_SCRIPT_FILE,
    KeepalivedSettings,
    keepalived_bundle,
    liveness_port,
    pair_settings,
    render_keepalived_conf,
    virtual_router_id,
)
from render.shipping import CONFIG_TRAILER, script_text
from tests.haproxy_binaries import all_haproxies, checkable_cfg

pytestmark = pytest.mark.timeout(120)

KEEPALIVED_T = """#!/bin/sh
# keepalived -t inside a new network namespace that has an eth0 (keepalived checks the interface exists).
exec {unshare} --net sh -c \\
    'ip link add eth0 type veth peer name peer0 && ip link set eth0 up && exec keepalived "$@"' keepalived "$@"
"""


def keepalived_t_wrapper(directory: Path) -> Path:
    """A `keepalived` for tests: the real binary, run in a throwaway namespace with an eth0."""
    if shutil.which("keepalived") is None:
        pytest.fail("keepalived is not installed: run tools/setup.sh (apt-get install keepalived)")
    unshare = "unshare" if os.geteuid() == 0 else "unshare --map-root-user"
    wrapper = directory / "keepalived-in-netns"
    wrapper.write_text(KEEPALIVED_T.format(unshare=unshare))
    wrapper.chmod(0o755)
    return wrapper


def keepalived_check(conf: str, directory: Path) -> subprocess.CompletedProcess[str]:
    path = directory / "keepalived.conf"
    path.write_text(conf)
    return subprocess.run(
        [str(keepalived_t_wrapper(directory)), "-t", "-f", str(path)],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def ha_raw() -> dict[str, Any]:
    return dict(raw_project_config(stack_file("ha")))


def plan_variants() -> dict[str, LabConfig]:
    """The HA stack, plans whose values reach keepalived.conf differently (ports, prefix, VIP), and the HA
    rehearsal's mapping of the stack onto its test network."""
    small = ha_raw()
    small["network"] = {**small["network"], "cidr": "192.168.7.0/24", "gateway": "192.168.7.1"}
    small["loadBalancer"] = {
        "name": "lb-a",
        "ip": "192.168.7.253",
        "standby": {"name": "lb-b", "ip": "192.168.7.2"},
        "virtualIp": "192.168.7.254",
    }
    small["webServers"] = [{"name": "w1", "ip": "192.168.7.10", "message": "one"}]
    small["ssh"] = {**small["ssh"], "adminCidr": "192.168.7.0/24"}
    small["haproxy"] = {"frontendPort": 8405, "statsPort": 8406, "clientCidr": "192.168.7.0/24"}
    rehearsal = ha_plan(load_stack_file("ha"), ipaddress.IPv4Network("198.18.7.0/24"))
    return {"ha": load_stack_file("ha"), "small-network-odd-ports": parse_lab_config(small), "rehearsal": rehearsal}


VARIANTS = [
    pytest.param(plan, name, id=f"{plan}-{name}")
    for plan, lab in plan_variants().items()
    for name in (host.name for host in lab.load_balancers)
]


@pytest.mark.parametrize(("plan", "host"), VARIANTS)
def test_every_rendered_variant_passes_keepalived_t(plan: str, host: str, tmp_path: Path) -> None:
    settings = pair_settings(plan_variants()[plan])[host]
    script = tmp_path / CHECK_SCRIPT_FILE
    script.write_text(script_text(CHECK_SCRIPT_FILE))
    script.chmod(0o755)
    conf = render_keepalived_conf(dataclasses.replace(settings, check_script=str(script)))
    result = keepalived_check(conf, tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr.strip() == "", f"keepalived -t warned: {result.stderr}"


def test_keepalived_t_refuses_a_broken_config(tmp_path: Path) -> None:
    """The check above can fail: a config naming a missing track script, or a bad keyword, is refused."""
    settings = pair_settings(load_stack_file("ha"))["HAPROXY1-SAM"]
    missing = render_keepalived_conf(dataclasses.replace(settings, check_script=str(tmp_path / "absent.sh")))
    assert keepalived_check(missing, tmp_path).returncode != 0
    script = tmp_path / CHECK_SCRIPT_FILE
    script.write_text(script_text(CHECK_SCRIPT_FILE))
    script.chmod(0o755)
    good = render_keepalived_conf(dataclasses.replace(settings, check_script=str(script)))
    assert keepalived_check(good.replace("advert_int 0.2", "advert_int banana"), tmp_path).returncode != 0


def test_the_pair_differs_only_in_identity_priority_and_peers() -> None:
    lab = load_stack_file("ha")
    first, second = (render_keepalived_conf(s).splitlines() for s in pair_settings(lab).values())
    pairs = zip(first, second, strict=True)
    differing = [(a.strip(), b.strip()) for a, b in pairs if a != b and not a.strip().startswith("#")]
    assert differing == [
        ("router_id haproxy1-sam", "router_id haproxy2-sam"),
        ("priority 150", "priority 100"),
        ("unicast_src_ip 10.0.0.33", "unicast_src_ip 10.0.0.34"),
        ("10.0.0.34", "10.0.0.33"),
    ]
    text = "\n".join(first)
    for line in ("state BACKUP", "nopreempt", "vrrp_version 3", "advert_int 0.2", "10.0.0.30/16 dev eth0"):
        assert line in text
    assert text.endswith(CONFIG_TRAILER)
    assert "(about 683 ms here)" in text, "the comment states this host's master-down interval"


def test_no_keepalived_for_a_single_load_balancer() -> None:
    assert pair_settings(load_stack_file("dev")) == {}


def test_the_bundle_ships_the_config_and_the_track_script_it_names() -> None:
    settings = pair_settings(load_stack_file("ha"))["HAPROXY2-SAM"]
    bundle = keepalived_bundle(settings)
    assert set(bundle) == {"keepalived.conf", CHECK_SCRIPT_FILE}
    assert (
        f'script "/etc/keepalived/{CHECK_SCRIPT_FILE} http://127.0.0.1:8405/haproxy-alive"' in bundle["keepalived.conf"]
    )
    assert bundle[CHECK_SCRIPT_FILE] == script_text(CHECK_SCRIPT_FILE)


def test_master_down_is_under_a_second() -> None:
    for settings in pair_settings(load_stack_file("ha")).values():
        assert settings.master_down_seconds < 0.75


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"router_id": "bad id"}, "router id"),
        ({"interface": "eth0 dev lo"}, "interface"),
        ({"check_script": "relative.sh"}, "track script"),
        ({"check_url": "http://10.0.0.1/x"}, "check URL"),
        ({"virtual_router_id": 0}, "virtual router id"),
        ({"priority": 255}, "priority"),
        ({"advert_int": 0.005}, "advert_int"),
        ({"advert_int": 0.125}, "advert_int"),
        ({"peer_ip": ipaddress.IPv4Address("10.1.0.1")}, "peer 10.1.0.1 is outside"),
        ({"virtual_ip": ipaddress.IPv4Address("10.0.0.33")}, "must all differ"),
    ],
)
def test_the_renderer_refuses_bad_values(change: dict[str, Any], problem: str) -> None:
    settings = pair_settings(load_stack_file("ha"))["HAPROXY1-SAM"]
    with pytest.raises(ValueError, match=r"cannot render keepalived\.conf") as caught:
        render_keepalived_conf(dataclasses.replace(settings, **change))
    assert problem in str(caught.value)


def test_virtual_router_ids_and_liveness_ports() -> None:
    assert virtual_router_id(ipaddress.IPv4Address("10.0.0.30")) in range(1, 256)
    assert {virtual_router_id(ipaddress.IPv4Address(f"10.0.{i}.{j}")) for i in range(4) for j in range(256)} == set(
        range(1, 256)
    )
    assert liveness_port(80, 8404) == 8405
    assert liveness_port(8405, 8406) == 8407


def test_haproxy_of_a_pair_passes_haproxy_c_and_adds_the_loopback_liveness_listener(tmp_path: Path) -> None:
    ha_cfg = render_lab_haproxy_cfg(load_stack_file("ha"), "a-long-stats-password")
    assert "bind 127.0.0.1:8405\n    monitor-uri /haproxy-alive" in ha_cfg
    assert "bind *:80" in ha_cfg, "every address: the VIP is served the moment keepalived adds it"
    assert "liveness" not in render_lab_haproxy_cfg(load_stack_file("dev"), "a-long-stats-password")
    path = checkable_cfg(ha_cfg, tmp_path)
    for label, binary in all_haproxies():
        result = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"HAProxy {label}: {result.stdout}{result.stderr}"


# --- check-haproxy.sh (the track script) against real HTTP listeners ------------------------------------------


class _Alive(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextlib.contextmanager
def alive_server() -> Iterator[int]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Alive)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


@contextlib.contextmanager
def frozen_server() -> Iterator[int]:
    """Accepts connections (the kernel does) and never answers: a SIGSTOPped HAProxy."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def track(url: str) -> tuple[int, float]:
    env = {**os.environ, "BUDGET_MS": "200", "PAUSE": "0.05"}
    start = time.monotonic()
    result = subprocess.run(
        ["dash", "-c", script_text(CHECK_SCRIPT_FILE), CHECK_SCRIPT_FILE, url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=10,
    )
    return result.returncode, time.monotonic() - start


def test_track_script_passes_while_haproxy_answers_and_keeps_to_its_time_budget() -> None:
    with alive_server() as port:
        code, seconds = track(f"http://127.0.0.1:{port}/haproxy-alive")
    assert code == 0
    # A time budget, not a probe count: a run never outlasts keepalived's interval on a busy machine.
    assert 0.2 <= seconds < 0.6


def test_track_script_fails_fast_when_haproxy_is_dead() -> None:
    code, seconds = track(f"http://127.0.0.1:{free_port('127.0.0.1')}/haproxy-alive")
    assert code == 1
    assert seconds < 0.5, "two refused probes, PAUSE apart"


def test_track_script_fails_when_haproxy_is_frozen() -> None:
    with frozen_server() as port:
        code, seconds = track(f"http://127.0.0.1:{port}/haproxy-alive")
    assert code == 1
    assert seconds < 1.0, "two probes of MAX_TIME (0.25 s) each"


def test_track_script_usage() -> None:
    result = subprocess.run(["dash", "-c", script_text(CHECK_SCRIPT_FILE), CHECK_SCRIPT_FILE], capture_output=True)
    assert result.returncode == 2


# --- apply-keepalived-conf.sh ------------------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """A fake /etc/keepalived, the real keepalived -t, and fake reload/running commands that record calls."""

    etc: Path
    state: Path
    env: dict[str, str]
    settings: KeepalivedSettings

    @property
    def conf(self) -> Path:
        return self.etc / "keepalived.conf"

    @property
    def script(self) -> Path:
        return self.etc / CHECK_SCRIPT_FILE

    def bundle(self, conf: str | None = None, script: str | None = None) -> Path:
        """A fresh SRC_DIR as the VM receives it (the apply script removes it)."""
        files = keepalived_bundle(self.settings)
        directory = Path(tempfile.mkdtemp(prefix="keepalived-bundle-"))
        (directory / "keepalived.conf").write_text(files["keepalived.conf"] if conf is None else conf)
        (directory / CHECK_SCRIPT_FILE).write_text(files[CHECK_SCRIPT_FILE] if script is None else script)
        return directory

    def apply(self, source: Path) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["dash", "-c", script_text("apply-keepalived-conf.sh"), "apply-keepalived-conf.sh", str(source)],
            env=self.env,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert not source.exists(), "the bundle directory is removed whatever the outcome"
        return result

    def reloads(self) -> int:
        path = self.state / "reloads"
        return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.fixture
def target(tmp_path: Path) -> Target:
    etc, state = tmp_path / "etc" / "keepalived", tmp_path / "state"
    etc.mkdir(parents=True)
    state.mkdir()
    settings = dataclasses.replace(
        pair_settings(load_stack_file("ha"))["HAPROXY1-SAM"], check_script=str(etc / CHECK_SCRIPT_FILE)
    )
    env = {
        **os.environ,
        "KEEPALIVED_CONF": str(etc / "keepalived.conf"),
        "KEEPALIVED_SCRIPT": str(etc / CHECK_SCRIPT_FILE),
        "KEEPALIVED_BIN": str(keepalived_t_wrapper(tmp_path)),
        "KEEPALIVED_RELOAD": f'echo reload >>"{state}/reloads"; [ ! -e "{state}/fail-reload" ]',
        "KEEPALIVED_RUNNING": f'[ -s "{state}/reloads" ]',
    }
    return Target(etc=etc, state=state, env=env, settings=settings)


def test_apply_installs_script_and_config_then_reloads_once(target: Target) -> None:
    result = target.apply(target.bundle())
    assert result.returncode == 0, result.stderr
    assert target.conf.read_text() == render_keepalived_conf(target.settings)
    assert target.script.read_text() == script_text(CHECK_SCRIPT_FILE)
    assert target.script.stat().st_mode & 0o777 == 0o755
    assert target.reloads() == 1
    again = target.apply(target.bundle())
    assert again.returncode == 0, again.stderr
    assert "nothing to do" in again.stdout
    assert target.reloads() == 1, "an unchanged config is not reloaded"


def test_a_config_keepalived_refuses_never_replaces_the_live_one(target: Target) -> None:
    assert target.apply(target.bundle()).returncode == 0
    live_conf, live_script = target.conf.read_text(), target.script.read_text()
    bad = render_keepalived_conf(target.settings).replace("advert_int 0.2", "advert_int banana")
    result = target.apply(target.bundle(conf=bad, script=live_script + "# changed\n"))
    assert result.returncode == 1
    assert "keepalived -t rejected" in result.stderr
    assert (target.conf.read_text(), target.script.read_text()) == (live_conf, live_script)
    assert target.reloads() == 1


def test_a_truncated_upload_is_refused(target: Target) -> None:
    truncated = render_keepalived_conf(target.settings).removesuffix(CONFIG_TRAILER + "\n")
    result = target.apply(target.bundle(conf=truncated))
    assert result.returncode == 1
    assert "truncated upload" in result.stderr
    assert not target.conf.exists()
    assert not target.script.exists(), "the new track script goes away with the refused config"


def test_a_failed_reload_puts_the_previous_config_back(target: Target) -> None:
    assert target.apply(target.bundle()).returncode == 0
    live = target.conf.read_text()
    (target.state / "fail-reload").touch()
    other = dataclasses.replace(target.settings, priority=120)
    source = target.bundle(conf=render_keepalived_conf(other))
    result = target.apply(source)
    assert result.returncode == 1
    assert "previous configuration restored" in result.stderr
    assert target.conf.read_text() == live
    assert (target.etc / "keepalived.conf.previous").read_text() == live
