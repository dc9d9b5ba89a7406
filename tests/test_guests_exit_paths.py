"""NspawnMachines on every exit path: an exception inside the context, a maker killed with SIGKILL (cleanup
from another process, the guard's path), a run killed with its guard (swept by the next run), a live run's
network refused, a gateway outside the test range refused. Root only; each test boots one small guest in
seconds. The guests themselves: tests/test_guests.py.
"""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys
from pathlib import Path

import pytest

from e2e.guests.machines import NspawnMachines
from e2e.guests.record import cleanup, entries
from e2e.machines import VmSpec
from tests import guest_harness as h

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="booting guests needs root"),
    pytest.mark.slow,
]

SUBNET = ipaddress.IPv4Network("198.18.62.0/24")  # not test_guests.py's: its module's lab may still hold that one


def small_spec(vmid: int) -> tuple[VmSpec, ipaddress.IPv4Address]:
    """A VM whose user-data does nothing (fast to boot), on the module's subnet."""
    address = SUBNET[200 + vmid % 50]
    config = {
        "net0": f"virtio={h.random_mac()},bridge=vmbr1",
        "ipconfig0": f"ip={address}/{SUBNET.prefixlen},gw={SUBNET[1]}",
        "cicustom": "user=local:snippets/small.yaml",
    }
    return VmSpec(vmid, f"small{vmid}", "pve", config, "#cloud-config\n{}\n"), address


def test_an_exception_inside_the_context_leaves_nothing() -> None:
    spec, _ = small_spec(201)
    seen: dict[str, object] = {}

    def boot_then_fail() -> None:
        with NspawnMachines(f"{SUBNET[1]}/24") as machines:
            seen["bridge"] = machines.bridge
            guest = machines.start_sync(spec)
            h.wait_until(lambda: guest.pid1() is not None and guest.run(["true"]).returncode == 0)
            seen["made"] = entries(machines.run_dir)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        boot_then_fail()
    made = seen["made"]
    assert isinstance(made, list)
    assert any(kind == "mount" for kind, _ in made)
    assert h.leftovers_of(made, str(seen["bridge"])) == []


def hold(spec: VmSpec) -> tuple[subprocess.Popen[str], Path, str]:
    """A child process that boots `spec`'s guest and waits to be killed: (child, its run directory, bridge)."""
    child = subprocess.Popen(
        [sys.executable, "-m", "tests.guest_harness", "hold", spec.config["net0"], spec.config["ipconfig0"]],
        cwd=Path(__file__).resolve().parents[1],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    line = child.stdout.readline().split()
    assert line[:1] == ["booted"], line
    return child, Path(line[1]), line[2]


def test_cleanup_from_another_process_after_kill_9() -> None:
    """The guard's path: the process that made everything dies by SIGKILL; cleanup(run_dir) elsewhere undoes it."""
    spec, _ = small_spec(202)
    child, run_dir, bridge = hold(spec)
    made = entries(run_dir)
    assert h.leftovers_of(made, bridge) != [], "the guest runs while its maker lives"
    child.kill()
    child.wait()
    assert h.leftovers_of(made, bridge) != [], "nothing cleans up after a SIGKILL by itself"
    assert cleanup(run_dir) == []
    assert h.leftovers_of(made, bridge) == []
    assert not run_dir.exists()


def test_a_live_runs_network_is_refused_and_the_next_run_sweeps_a_killed_one() -> None:
    """A run killed together with its guard (a machine whose processes all ended at once, as before a CI run)
    left its bridge routing this subnet; the next run's guests on a second bridge were unreachable behind it
    ("No route to host", 16 tests x 180 s). A live run's network is refused at once; a killed one's leftovers
    are removed by the next run, whose guest then answers on the same subnet."""
    spec, address = small_spec(203)
    child, run_dir, bridge = hold(spec)
    try:
        made = entries(run_dir)
        clash = rf"{SUBNET} overlaps a network this host already routes \({SUBNET} dev {bridge}\)"
        with pytest.raises(ValueError, match=clash), NspawnMachines(f"{SUBNET[1]}/24"):
            pass
        assert h.leftovers_of(made, bridge) != [], "a live run is never swept"
        child.kill()
        child.wait()
        with NspawnMachines(f"{SUBNET[1]}/24") as machines:
            assert h.leftovers_of(made, bridge) == []
            assert not run_dir.exists()
            machines.start_sync(spec)
            ping = ["ping", "-c", "1", "-W", "1", str(address)]
            h.wait_until(lambda: subprocess.run(ping, capture_output=True, check=False).returncode == 0, 60)
    finally:  # a failing run leaves nothing either
        child.kill()
        child.wait()
        cleanup(run_dir)


def test_a_gateway_outside_the_test_range_is_refused_before_anything() -> None:
    before = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    for gateway in ("10.0.0.1/16", "192.168.1.1/24", "198.20.0.1/24"):
        with pytest.raises(ValueError, match=r"outside 198\.18\.0\.0/15"):
            NspawnMachines(gateway)
    assert subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout == before
