"""The HA rehearsal for real: network namespaces that leave nothing behind, and the five drills end to end.

Root only (namespaces, veths, a bridge); the drills run real keepalived, HAProxy and gunicorn processes.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from plan.stack_file import load_stack_file
from rehearsal.ha.drills import GOAL_SECONDS, run_drills
from rehearsal.ha.netns import TEST_NETWORKS, TestNetwork
from rehearsal.ha.netns_pair import HaPair
from rehearsal.watchdog import guard

REPO = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
    pytest.mark.timeout(120),
]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}/status").read_text().find("State:\tZ") < 0


def _network_with_processes(tmp_path: Path, pids: list[int]) -> TestNetwork:
    """Build two hosts each running a process that started another one (as keepalived starts its track
    scripts), then fail: the `with` block must still remove everything."""
    with TestNetwork() as net:
        for number, name in ((11, "a"), (12, "b")):
            net.add_host(name, number)
            argv = net.exec_argv(name, ["sh", "-c", "sleep 60 & exec sleep 61"])
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 5
        while len(pids) < 4 and time.monotonic() < deadline:
            pids[:] = net.pids("a") + net.pids("b")
            time.sleep(0.05)
        raise RuntimeError(f"boom after starting {len(pids)} processes")
    return net  # pragma: no cover


def test_the_test_network_leaves_nothing_behind_on_any_exit(tmp_path: Path) -> None:
    pids: list[int] = []
    networks: list[TestNetwork] = []
    original = TestNetwork.__enter__

    def remember(self: TestNetwork) -> TestNetwork:
        networks.append(self)
        return original(self)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(TestNetwork, "__enter__", remember)
        with pytest.raises(RuntimeError, match="boom after starting 4 processes"):
            _network_with_processes(tmp_path, pids)
    assert networks[0].leftovers() == []
    assert not [pid for pid in pids if _alive(pid)]


def test_the_guards_undo_kills_strays_and_removes_the_network() -> None:
    """What the guard runs after a kill -9 (its process groups already dead): a process in a namespace that
    no registered group holds (a track script) dies, and the namespaces and the bridge are gone."""
    undo: list[list[str]] = []
    net = TestNetwork(undo_on_death=lambda argv: undo.append(list(argv)))
    pids: list[int] = []
    try:
        for number, name in ((11, "a"), (12, "b")):
            net.add_host(name, number)
            argv = net.exec_argv(name, ["sh", "-c", "sleep 60 & exec sleep 61"])
            subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        deadline = time.monotonic() + 5
        while len(pids) < 4 and time.monotonic() < deadline:
            pids = net.pids("a") + net.pids("b")
            time.sleep(0.05)
        assert len(pids) == 4
        guard(io.StringIO("".join(f"run {json.dumps(argv)}\n" for argv in undo)))  # the pipe closed, no bye
        deadline = time.monotonic() + 5
        while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [pid for pid in pids if _alive(pid)] == []
        assert net.leftovers() == []
    finally:
        net.close()


def test_nothing_here_can_leave_the_test_network() -> None:
    with TestNetwork() as net:
        host = net.add_host("a", 11)
        assert host.address in net.subnet
        assert net.subnet.subnet_of(TEST_NETWORKS)
        routes = subprocess.run(["ip", "-n", host.namespace, "route"], capture_output=True, text=True, check=True)
        assert "default" not in routes.stdout
        for link in (net.bridge, host.veth):
            shown = subprocess.run(["ip", "-br", "addr", "show", "dev", link], capture_output=True, text=True)
            assert len(shown.stdout.split()) == 2, f"{link} has an address: {shown.stdout}"


@pytest.mark.slow
def test_the_five_drills_pass_with_their_goals(tmp_path: Path) -> None:
    """The short version of `./tools/rehearse --ha` (5 s of load per drill instead of 10)."""
    with HaPair(load_stack_file("ha"), tmp_path) as pair:
        pair.start()
        drills = run_drills(pair, 5.0, lambda _: None)
        net = pair.net
    by_name = {drill.name: drill for drill in drills}
    assert list(by_name) == ["haproxy killed", "powered off", "comes back", "frozen", "vrrp cut"]
    failed = [f"{d.name}: {d.figures}" for d in drills if not d.passed]
    assert not failed, "\n".join(failed)
    for name in ("haproxy killed", "powered off", "frozen"):
        drill = by_name[name]
        assert drill.vip_moved_after is not None
        assert drill.vip_moved_after <= GOAL_SECONDS, drill.figures
        assert drill.first_answer_after is not None
        assert drill.first_answer_after <= GOAL_SECONDS, drill.figures
        assert drill.failed_after_goal == 0, drill.figures
        assert drill.lost <= 16, "at most one request in flight per client is lost"
    assert by_name["comes back"].failed == 0
    assert "VIP stayed" in by_name["comes back"].figures
    assert "ARP for the VIP answered by" in by_name["vrrp cut"].figures
    assert net.leftovers() == []


def _network_left(suffix: str) -> list[str]:
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True).stdout
    return [name for name in (f"hl{suffix}-", f"hlb{suffix}", f"hv{suffix}") if name in namespaces + links]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_an_ended_rehearsal_leaves_no_namespace_and_no_process(how: str, tmp_path: Path) -> None:
    """SIGTERM: the rehearsal cleans up itself. kill -9 runs none of its code: its guard process
    (rehearsal/watchdog.py) kills the process groups and deletes the namespaces and the bridge."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rehearsal", "--ha", "--drill-seconds", "4", "--keep-logs"],
        cwd=REPO,
        env={**os.environ, "TMPDIR": str(tmp_path)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    suffix = ""
    output = ""
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 1)
            if ready:
                line = proc.stdout.readline()
                output += line
                found = re.search(r"on bridge hlb([0-9a-f]+)", line)
                suffix = found.group(1) if found else suffix
                if "drill: haproxy killed" in line:
                    break
        assert suffix, output
        proc.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        rest, _ = proc.communicate(timeout=60)
        output += rest
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
    if how == "sigterm":
        assert proc.returncode == 130, output
        assert "interrupted, stopping every process" in output
    deadline = time.monotonic() + 30  # the guard works after the rehearsal is gone
    while _network_left(suffix) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _network_left(suffix) == [], output
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftover.strip() == "", f"processes of the run survive: {leftover}"


def test_keepalived_and_nft_are_installed() -> None:
    for tool in ("keepalived", "nft", "curl"):
        assert shutil.which(tool), f"{tool} missing: run tools/setup.sh"
