"""load-balancer-state.sh's decisions, with fake `ip`, `ping`, `systemctl` and `curl` and a fake HAProxy admin
socket: hand off only what this load balancer holds, wait for the peer, take the virtual IP back (handoff)
or go anyway (release) when no peer takes it, and `back` only once HAProxy (and in a pair keepalived and the
liveness URL) serve. Real keepalived moving a real virtual IP: the rehearsal's `rolling` drill
(rehearsal/ha/drills.py, tests/test_rehearsal_ha.py).
"""

from __future__ import annotations

import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.script_harness import run_script

SCRIPT = "load-balancer-state.sh"
VIP = "198.18.7.10"

# The fakes share a state directory: `holds` (this host has the VIP), `peer-takes` (the peer takes it when
# keepalived stops here), `peer-holds`, `keepalived` (running), `alive` (the liveness URL answers); `calls`.
FAKES = {
    "ip": f"""#!/bin/sh
[ -e "$STATE/holds" ] && echo "2: eth0    inet {VIP}/24 scope global secondary eth0"
echo "2: eth0    inet 198.18.7.11/24 brd 198.18.7.255 scope global eth0"
""",
    "ping": """#!/bin/sh
echo "ping $*" >> "$STATE/calls"
[ -e "$STATE/peer-holds" ]
""",
    "systemctl": """#!/bin/sh
echo "systemctl $*" >> "$STATE/calls"
case "$1" in
    stop) rm -f "$STATE/keepalived" "$STATE/holds"; [ -e "$STATE/peer-takes" ] && touch "$STATE/peer-holds" ;;
    start) touch "$STATE/keepalived"; [ -e "$STATE/peer-holds" ] || touch "$STATE/holds" ;;
    is-active) [ -e "$STATE/keepalived" ]; exit $? ;;
esac
exit 0
""",
    "curl": """#!/bin/sh
[ -e "$STATE/alive" ]
""",
}


@pytest.fixture
def state(tmp_path: Path) -> Path:
    directory = tmp_path / "state"
    directory.mkdir()
    (directory / "calls").touch()
    return directory


@pytest.fixture
def env(tmp_path: Path, state: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in FAKES.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "STATE": str(state),
        "WAIT": "1",
        "TIMEOUT": "3",
        "RISE": "1",
        "SOCKET": str(tmp_path / "admin.sock"),
    }


@pytest.fixture
def admin_socket(env: dict[str, str]) -> Iterator[None]:
    """A stand-in for HAProxy's admin socket: answers any command with one line."""
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(env["SOCKET"])
    server.listen(8)
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(4096)
                conn.sendall(b"Name: HAProxy\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)
    server.close()


def calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines()


@pytest.mark.parametrize("action", ["handoff", "release"])
def test_the_holder_stops_keepalived_and_waits_until_the_peer_answers(
    env: dict[str, str], state: Path, action: str
) -> None:
    for name in ("holds", "keepalived", "peer-takes"):
        (state / name).touch()
    result = run_script(SCRIPT, action, VIP, env=env)
    assert result.returncode == 0, result.stderr
    assert f"{VIP} handed off" in result.stdout
    assert calls(state)[0] == "systemctl stop keepalived"
    assert f"ping -c 1 -W 1 {VIP}" in calls(state)
    assert not (state / "keepalived").exists()


@pytest.mark.parametrize("action", ["handoff", "release"])
def test_a_load_balancer_that_does_not_hold_the_virtual_ip_hands_nothing_off(
    env: dict[str, str], state: Path, action: str
) -> None:
    (state / "keepalived").touch()
    result = run_script(SCRIPT, action, VIP, env=env)
    assert result.returncode == 0, result.stderr
    assert "nothing to hand off" in result.stdout
    assert calls(state) == [], "keepalived keeps running: it is the peer's fallback"


def test_before_a_reboot_no_peer_means_keepalived_again_and_a_failed_step(env: dict[str, str], state: Path) -> None:
    for name in ("holds", "keepalived"):
        (state / name).touch()
    result = run_script(SCRIPT, "handoff", VIP, env=env)
    assert result.returncode == 1
    assert f"no peer took {VIP} within 1s: keepalived started again here, nothing rebooted" in result.stderr
    assert calls(state)[0] == "systemctl stop keepalived"
    assert calls(state)[-1] == "systemctl start keepalived"
    assert (state / "holds").exists()


def test_before_a_delete_no_peer_is_only_a_warning(env: dict[str, str], state: Path) -> None:
    for name in ("holds", "keepalived"):
        (state / name).touch()
    result = run_script(SCRIPT, "release", VIP, env=env)
    assert result.returncode == 0, result.stderr
    assert f"warning: no peer took {VIP} within 1s; this load balancer goes anyway" in result.stderr
    assert "systemctl start keepalived" not in calls(state)


def test_back_waits_for_haproxys_admin_socket(env: dict[str, str], admin_socket: None) -> None:
    result = run_script(SCRIPT, "back", env=env)
    assert result.returncode == 0, result.stderr
    assert "HAProxy answers on its admin socket" in result.stdout


def test_back_fails_when_haproxy_never_answers(env: dict[str, str]) -> None:
    result = run_script(SCRIPT, "back", env=env)
    assert result.returncode == 1
    assert "timeout: not in service after 3s (HAProxy's admin socket does not answer)" in result.stderr


def test_back_in_a_pair_starts_keepalived_and_waits_for_the_liveness_url(
    env: dict[str, str], state: Path, admin_socket: None
) -> None:
    url = "http://127.0.0.1:8405/haproxy-alive"
    result = run_script(SCRIPT, "back", url, env=env)
    assert result.returncode == 1, "the liveness URL never answered"
    assert f"HAProxy's liveness URL {url} does not answer" in result.stderr
    assert "systemctl start keepalived" in calls(state), "a handoff that was not followed by a reboot is undone"
    (state / "alive").touch()
    result = run_script(SCRIPT, "back", url, env=env)
    assert result.returncode == 0, result.stderr
    assert "HAProxy and keepalived in service" in result.stdout


@pytest.mark.parametrize(
    ("args", "extra_env"),
    [(("handoff",), {}), (("handoff", "1.2.3.4; id"), {}), (("nap",), {}), (("back",), {"WAIT": "ten"})],
)
def test_bad_arguments_are_refused(env: dict[str, str], args: tuple[str, ...], extra_env: dict[str, str]) -> None:
    result = run_script(SCRIPT, *args, env={**env, **extra_env})
    assert result.returncode == 2
    assert "usage:" in result.stderr or "refused:" in result.stderr
