"""./tools/e2e's edges without the engine: the stack it accepts or refuses before anything starts, the
client namespace's cleanup, and the kill -9 guard's sessions and cleanup commands (rehearsal/watchdog.py).
The flow itself runs in ./tools/e2e (docs/e2e.md: its rows, figures and the faults each row was seen to fail on).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from e2e.stack import E2E_CIDR, addresses, client_address, in_test_range, load_plan, repository_plan
from rehearsal.poll import poll_until

REPO = Path(__file__).resolve().parent.parent


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(": ")[1].split("@")[0] for line in out.splitlines()}


def test_the_default_stack_is_the_dev_shape_on_test_addresses() -> None:
    plan = repository_plan("dev", E2E_CIDR)
    dev = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
    assert set(plan) == {key for key in dev if key.startswith("haproxy-lab:")}
    assert len(plan["haproxy-lab:webServers"]) == len(dev["haproxy-lab:webServers"])
    found = list(addresses(plan))
    assert found
    assert all(in_test_range(value) for _, value in found), found
    client = client_address(plan)
    assert str(client.ip) not in {value for _, value in found}
    assert client.network.with_prefixlen == E2E_CIDR


def test_a_stack_with_an_address_outside_the_test_range_is_refused_before_anything_starts(tmp_path: Path) -> None:
    plan = {
        f"haproxy-lab:{k}" if not k.startswith("haproxy-lab:") else k: v
        for k, v in repository_plan("dev", E2E_CIDR).items()
    }
    plan["haproxy-lab:webServers"][1]["ip"] = "10.0.0.32"
    stack = tmp_path / "Pulumi.bad.yaml"
    stack.write_text(yaml.safe_dump({"config": plan}))
    with pytest.raises(ValueError, match=r"haproxy-lab:webServers\[1\]\.ip: 10\.0\.0\.32"):
        load_plan(stack)
    links = _links()
    result = subprocess.run(
        [sys.executable, "-m", "e2e", "--stack", str(stack)], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    assert "10.0.0.32" in result.stderr
    assert "198.18.0.0/15" in result.stderr
    # No bridge, veth or namespace made; links that vanished meanwhile were another run's (seen in CI beside one).
    assert _links() - links == set()


def _session_alive(sid: int) -> bool:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[3]) == sid:
                return True
        except (OSError, IndexError, ValueError):
            continue
    return False


def test_the_guard_kills_registered_sessions_and_runs_cleanups_after_kill_9(tmp_path: Path) -> None:
    """The fault it guards against: the e2e process SIGKILLed mid-run (no `finally` runs)."""
    marker = tmp_path / "cleaned"
    owner = subprocess.Popen(
        [
            sys.executable, "-c",
            "import json, subprocess, sys, time\n"
            "from rehearsal.watchdog import Watchdog\n"
            "w = Watchdog()\n"
            "p = subprocess.Popen(['sleep', '300'], start_new_session=True)\n"
            "w.tell(f'session {p.pid}')\n"
            f"w.tell('run ' + json.dumps(['touch', {str(marker)!r}]))\n"
            "print(p.pid, flush=True)\n"
            "time.sleep(300)\n",
        ],
        cwd=REPO, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert owner.stdout is not None
    sid = int(owner.stdout.readline())
    assert _session_alive(sid)
    owner.kill()
    owner.wait()
    assert poll_until(lambda: not _session_alive(sid) and marker.exists(), 15, 0.05) is not None


@pytest.mark.skipif(os.geteuid() != 0, reason="a bridge and a namespace need root")
def test_the_client_namespace_reaches_the_bridge_and_goes_with_the_run() -> None:
    from e2e.guests.machines import NspawnMachines

    with NspawnMachines("198.18.59.1/24") as machines:
        name, procs = machines.client_namespace("198.18.59.250/24")
        assert name in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        inside = subprocess.run(["ip", "netns", "exec", name, "ip", "-o", "addr"], capture_output=True, text=True)
        assert "198.18.59.250/24" in inside.stdout
        sleeper = subprocess.Popen(
            ["sh", "-c", f'echo $$ >"{procs[0]}"; exec ip netns exec {name} sleep 300'],
            start_new_session=True,
        )
        assert poll_until(lambda: str(sleeper.pid) in procs[0].read_text(), 10, 0.05) is not None
    started = time.monotonic()
    sleeper.wait(timeout=30)
    assert time.monotonic() - started < 30
    assert name not in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert machines.made() == []


def test_the_default_network_avoids_one_this_host_already_routes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The fault it guards against: two runs at once on one subnet (seen: the second run's SSH to its load
    balancer reached the first run's guest, `connection reset by peer`, and its up failed)."""
    import ipaddress

    import e2e.guests.network
    import e2e.stack

    taken = [(ipaddress.IPv4Network("198.18.50.0/24"), "hlgone"), (ipaddress.IPv4Network("198.18.51.0/24"), "hlgtwo")]
    monkeypatch.setattr(e2e.guests.network, "host_routes", lambda: taken)
    assert e2e.stack.free_cidr() == "198.18.52.0/24"
    with pytest.raises(ValueError, match=r"198\.18\.50\.0/24 overlaps a network this host already routes"):
        e2e.stack.refuse_routed(repository_plan("dev", "198.18.50.0/24"), "the e2e stack")
