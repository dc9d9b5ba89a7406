"""NspawnMachines driven directly (no Pulumi, no fake Proxmox): two guests booted from the program's own
user-data for the dev plan moved onto a 198.18 subnet, on their private bridge.

The module shares one NspawnMachines (booting is the expensive part); its tests run in file order and
the later ones (reboot, shutdown/start, destroy, close) build on the earlier ones. Root only; about 2.5 min
on this 2-core machine with a warm golden image (a cold one adds its build, ~3.5 min). Figures (boot to
SSH, cloud-init done, memory, teardown) are printed at the end of the module (run with -s to see them).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from components import provisioning, web_server
from components.remote import Budget, RootScript
from e2e.guests.guest import Guest
from e2e.guests.machines import NspawnMachines
from e2e.guests.record import entries
from e2e.machines import VmSpec
from plan.app_contract import HEALTH_PATH, SERVER_PORT
from plan.model import Host, LabConfig
from render.shipping import script_text, tar_gz_base64
from render.webapp import webapp_bundle
from tests import guest_harness as h

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="booting guests needs root"),
    pytest.mark.slow,
]

SUBNET = ipaddress.IPv4Network("198.18.61.0/24")
OUTSIDE = ipaddress.IPv4Address("198.19.61.9")  # in the test range, outside the guests' subnet: never routed
FIGURES: dict[str, object] = {}
# The program's budget for each step it runs over SSH (its command line bounds the step on the VM).
BUDGETS: dict[str, Budget] = {
    "wait-for-cloud-init.sh": provisioning.WAIT_FOR_BOOT,
    "install-docker.sh": web_server.INSTALL,
}


@dataclass
class Lab:
    machines: NspawnMachines
    lab: LabConfig
    key: h.KeyPair
    hosts: list[Host]
    specs: dict[int, VmSpec]
    booted: set[str] = field(default_factory=set)

    def ready(self, host: Host) -> None:
        """As the program's first step: SSH answers and cloud-init is done (once per boot of the host)."""
        if host.name not in self.booted:
            h.wait_for_ssh(self.key, self.lab.ssh.user, host.ip)
            result = self.run_script(host, "wait-for-cloud-init.sh")
            assert result.returncode == 0, result.stdout + result.stderr
            self.booted.add(host.name)

    def guest(self, host: Host) -> Guest:
        return self.machines.guests[self.specs_for(host).vmid]

    def specs_for(self, host: Host) -> VmSpec:
        return next(spec for spec in self.specs.values() if spec.name == host.name)

    def ssh(
        self, host: Host, command: str, stdin: str = "", timeout_s: float = 300
    ) -> subprocess.CompletedProcess[str]:
        return h.ssh(self.key, self.lab.ssh.user, host.ip, command, stdin=stdin, timeout_s=timeout_s)

    def run_script(self, host: Host, name: str) -> subprocess.CompletedProcess[str]:
        """A files/scripts script as the program runs it: its shipped text, as root within its budget, over SSH."""
        return self.ssh(host, RootScript(script_text(name), name).command_line(BUDGETS[name]), timeout_s=900)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    key = h.keypair(tmp_path_factory.mktemp("key"))
    plan = h.test_lab(SUBNET, key.public)
    hosts: list[Host] = list(plan.web_servers)
    specs = {spec.vmid: spec for spec in (h.vm_spec(plan, host, h.random_mac()) for host in hosts)}
    with NspawnMachines(h.gateway(plan)) as machines:
        for spec in specs.values():
            asyncio.run(machines.start(spec))
        yield Lab(machines, plan, key, hosts, specs)
    print("\nguest figures:", json.dumps(FIGURES, indent=2, sort_keys=True), file=sys.stderr)


def interface(lab: Lab, host: Host, name: str = "eth0") -> dict[str, object]:
    result = lab.ssh(host, f"ip -j addr show dev {name}")
    assert result.returncode == 0, result.stderr
    found: dict[str, object] = json.loads(result.stdout)[0]
    return found


# --- boot ---------------------------------------------------------------------------------------------------


def test_guests_boot_and_answer_ssh_as_the_plans_user_with_its_key(lab: Lab) -> None:
    def ready(host: Host) -> float:
        h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
        return round(time.monotonic() - lab.guest(host).booted_at, 1)

    with ThreadPoolExecutor(len(lab.hosts)) as pool:
        FIGURES["boot_to_ssh_s"] = list(pool.map(ready, lab.hosts))
    for host in lab.hosts:
        result = lab.ssh(host, "id -un; hostname; sudo -n true && echo sudo-ok")
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [lab.lab.ssh.user, host.name.lower(), "sudo-ok"]
        # The program's hardening is in force: root may not log in, even with the right key.
        root = h.ssh(lab.key, "root", host.ip, "true", timeout_s=30)
        assert root.returncode != 0


def test_cloud_init_finishes_with_the_programs_user_data(lab: Lab) -> None:
    done: list[float] = []
    FIGURES["cloud_init_done_s"] = done
    for host in lab.hosts:
        h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
        result = lab.run_script(host, "wait-for-cloud-init.sh")
        assert result.returncode == 0, result.stdout + result.stderr
        done.append(round(time.monotonic() - lab.guest(host).booted_at, 1))
        status = lab.ssh(host, "cloud-init status --long --format json")
        assert json.loads(status.stdout)["errors"] == []
        # What the user-data asked for is there: its packages and its files.
        check = lab.ssh(host, "dpkg-query -W -f '${Status}\\n' qemu-guest-agent unattended-upgrades rsyslog")
        assert check.stdout.split("\n")[:3] == ["install ok installed"] * 3
        assert "PermitRootLogin no" in lab.ssh(host, "cat /etc/ssh/sshd_config.d/60-haproxy-lab.conf").stdout
    FIGURES["memory_idle_mib"] = [round(lab.guest(host).memory_pss_bytes() / 2**20, 1) for host in lab.hosts]


def test_eth0_carries_the_vms_mac_and_static_address(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    for host in lab.hosts:
        spec = lab.specs_for(host)
        eth0 = interface(lab, host)
        assert eth0["address"] == h.nic_mac_of(spec).lower()
        addresses = [(a["local"], a["prefixlen"]) for a in eth0["addr_info"] if a["family"] == "inet"]  # type: ignore[attr-defined]
        assert addresses == [(str(host.ip), SUBNET.prefixlen)]
        route = lab.ssh(host, "ip -j route show default")
        assert json.loads(route.stdout)[0]["gateway"] == str(lab.lab.network.gateway)


def test_the_agent_answers_with_the_guests_real_interfaces(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    for host in lab.hosts:
        spec = lab.specs_for(host)
        answer = lab.machines.interfaces(spec.vmid)
        assert answer is not None
        eth0 = next(item for item in answer if item["name"] == "eth0")
        assert eth0["hardware-address"] == h.nic_mac_of(spec).lower()
        ipv4 = [a for a in eth0["ip-addresses"] if a["ip-address-type"] == "ipv4"]
        assert ipv4 == [{"ip-address-type": "ipv4", "ip-address": str(host.ip), "prefix": SUBNET.prefixlen}]
    assert lab.machines.interfaces(999_999) is None


# --- the network ----------------------------------------------------------------------------------------------


def test_guests_reach_each_other(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    first, second = lab.hosts
    result = lab.ssh(first, f"timeout 5 bash -c '</dev/tcp/{second.ip}/22' && echo open")
    assert result.stdout.strip() == "open", result.stderr


def test_vrrp_multicast_passes_between_guests(lab: Lab) -> None:
    """keepalived's adverts (IP protocol 112 to 224.0.0.18) cross the bridge, as between two VMs."""
    for each in lab.hosts:
        lab.ready(each)
    first, second = lab.hosts
    listen = subprocess.Popen(
        ["nsenter", "-t", str(lab.guest(second).pid1()), "-a", "python3", "-c", h.VRRP_RECEIVE, str(second.ip)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert listen.stdout is not None
    assert listen.stdout.readline().strip() == "ready"
    send = lab.guest(first).run(["python3", "-c", h.VRRP_SEND, str(first.ip)], timeout_s=60)
    assert send.returncode == 0, send.stderr
    out, err = listen.communicate(timeout=30)
    assert out.strip() == f"vrrp from {first.ip}", err


def test_apt_works_through_the_proxy(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    result = lab.ssh(lab.hosts[0], "sudo -n apt-get -q update", timeout_s=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Err:" not in result.stdout


def test_the_proxy_refuses_a_host_not_on_its_list(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    proxy = f"http://{lab.lab.network.gateway}:{lab.machines.proxy_port}"
    allowed = lab.ssh(
        lab.hosts[0], f"curl -sS -o /dev/null -w '%{{http_code}}' -x {proxy} https://pypi.org/simple/flask/"
    )
    assert allowed.stdout == "200", allowed.stderr
    # example.org is never contacted: the proxy answers 403 itself, for plain HTTP and for CONNECT.
    plain = lab.ssh(lab.hosts[0], f"curl -sS -o /dev/null -w '%{{http_code}}' -x {proxy} http://example.org/")
    assert plain.stdout == "403"
    tunnel = lab.ssh(lab.hosts[0], f"curl -sS -o /dev/null -x {proxy} https://example.org/")
    assert tunnel.returncode != 0
    assert "403" in tunnel.stderr


def test_there_is_no_route_out(lab: Lab) -> None:
    """A connection to an address off the bridge is refused at once (the host's table rejects it), not left
    to time out; the host's ip_forward is untouched."""
    for each in lab.hosts:
        lab.ready(each)
    forward = Path("/proc/sys/net/ipv4/ip_forward").read_text()
    result = lab.ssh(lab.hosts[0], f"curl -sS --connect-timeout 20 -o /dev/null http://{OUTSIDE}:80/; echo rc=$?")
    assert "rc=7" in result.stdout, result.stdout + result.stderr  # 7: could not connect (28 would be a timeout)
    assert "Failed to connect" in result.stderr
    dns = lab.ssh(
        lab.hosts[0], f"curl -sS --connect-timeout 20 -o /dev/null http://{lab.lab.network.gateway}:53/; echo rc=$?"
    )
    assert "rc=7" in dns.stdout, "the gateway answers nothing but the proxy"
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forward


# --- the web app in Docker ---------------------------------------------------------------------------------------


@pytest.mark.timeout(1200)
def test_docker_compose_builds_and_serves_the_web_app(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    host = lab.hosts[0]
    server = next(server for server in lab.lab.web_servers if server.name == host.name)
    started = time.monotonic()
    install = lab.run_script(host, "install-docker.sh")
    assert install.returncode == 0, install.stdout + install.stderr
    assert "already installed (not Docker's packages)" in install.stdout
    FIGURES["install_docker_s"] = round(time.monotonic() - started, 1)

    trusted = ",".join(str(balancer.ip) for balancer in lab.lab.load_balancers)
    bundle = tar_gz_base64(webapp_bundle(server, trusted_proxies=trusted))
    started = time.monotonic()
    deploy_line = RootScript(script_text("deploy-webapp.sh"), "deploy-webapp.sh", bundle=True).command_line(
        web_server.DEPLOY
    )
    deploy = lab.ssh(host, deploy_line, stdin=bundle, timeout_s=1100)
    assert deploy.returncode == 0, deploy.stdout + deploy.stderr
    FIGURES["deploy_webapp_s"] = round(time.monotonic() - started, 1)

    health = subprocess.run(
        ["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", f"http://{host.ip}:{SERVER_PORT}{HEALTH_PATH}"],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert health.stdout == "200", health.stderr
    page = subprocess.run(
        ["curl", "-sS", f"http://{host.ip}:{SERVER_PORT}/"], capture_output=True, text=True, timeout=30
    )
    assert server.message in page.stdout
    FIGURES["memory_with_docker_mib"] = round(lab.guest(host).memory_pss_bytes() / 2**20, 1)


# --- power ------------------------------------------------------------------------------------------------------

PER_INSTANCE_SEM = "/var/lib/cloud/instance/sem/config_users_groups"


def instance_state(lab: Lab, host: Host) -> tuple[str, str, str]:
    """(instance id, mtime of a per-instance module's semaphore, SSH host key): all change on a new instance."""
    result = lab.ssh(
        host,
        f"cat /var/lib/cloud/data/instance-id; stat -c %Y {PER_INSTANCE_SEM}; cat /etc/ssh/ssh_host_ed25519_key.pub",
    )
    assert result.returncode == 0, result.stderr
    iid, sem, hostkey = result.stdout.strip().split("\n")
    return iid, sem, hostkey


def test_reboot_in_place_keeps_the_disk_and_the_instance(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    host = lab.hosts[1]
    spec = lab.specs_for(host)
    before = instance_state(lab, host)
    assert (
        lab.ssh(
            host, "echo kept | sudo -n tee /var/lib/marker >/dev/null; echo gone | sudo -n tee /run/marker"
        ).returncode
        == 0
    )
    boots = lab.guest(host).boots

    asyncio.run(lab.machines.reboot(spec))
    lab.booted.discard(host.name)
    h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)

    assert lab.guest(host).boots == boots + 1
    assert lab.ssh(host, "cat /var/lib/marker").stdout == "kept\n"
    assert lab.ssh(host, "test -e /run/marker || echo rebooted").stdout == "rebooted\n"
    assert lab.run_script(host, "wait-for-cloud-init.sh").returncode == 0
    assert instance_state(lab, host) == before, "the same instance: per-instance modules did not run again"


def test_a_changed_network_config_is_a_new_instance_at_the_next_reboot(lab: Lab) -> None:
    """As on PVE: the instance id hashes user-data and network-config, so a new nameserver is a new instance."""
    for each in lab.hosts:
        lab.ready(each)
    host = lab.hosts[1]
    spec = lab.specs_for(host)
    iid, _, _ = instance_state(lab, host)
    changed = VmSpec(spec.vmid, spec.name, spec.node, {**spec.config, "nameserver": str(SUBNET[53])}, spec.user_data)
    asyncio.run(lab.machines.reboot(changed))
    lab.booted.discard(host.name)
    h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
    assert lab.run_script(host, "wait-for-cloud-init.sh").returncode == 0
    assert instance_state(lab, host)[0] != iid
    # Back to the plan's config for the tests that follow (one more new instance, the same as the first).
    asyncio.run(lab.machines.reboot(spec))
    h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
    assert lab.run_script(host, "wait-for-cloud-init.sh").returncode == 0
    assert instance_state(lab, host)[0] == iid


def test_shutdown_then_start_keeps_the_disk(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    host = lab.hosts[1]
    spec = lab.specs_for(host)
    assert lab.ssh(host, "echo kept | sudo -n tee /var/lib/marker").returncode == 0
    assert asyncio.run(lab.machines.shutdown(spec.vmid, 60))
    assert not lab.guest(host).running
    assert lab.machines.interfaces(spec.vmid) is None
    asyncio.run(lab.machines.start(spec))
    lab.booted.discard(host.name)
    h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
    assert lab.ssh(host, "cat /var/lib/marker").stdout == "kept\n"


def test_stop_cuts_the_power_and_start_boots_the_same_disk(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    host = lab.hosts[1]
    spec = lab.specs_for(host)
    assert lab.ssh(host, "echo kept | sudo -n tee /var/lib/marker").returncode == 0
    asyncio.run(lab.machines.stop(spec.vmid))
    assert not lab.guest(host).running
    asyncio.run(lab.machines.start(spec))
    lab.booted.discard(host.name)
    h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
    assert lab.ssh(host, "cat /var/lib/marker").stdout == "kept\n"


def test_a_reboot_asked_inside_the_guest_boots_it_again_in_place(lab: Lab) -> None:
    """`reboot` on the VM (unattended-upgrades may do it): the same disk and instance come back, as on a VM."""
    host = lab.hosts[1]
    for each in lab.hosts:
        lab.ready(each)
    guest = lab.guest(host)
    assert lab.ssh(host, "echo kept | sudo -n tee /var/lib/marker").returncode == 0
    before, boots = instance_state(lab, host), guest.boots
    lab.ssh(host, "sudo -n systemctl reboot", timeout_s=60)
    lab.booted.discard(host.name)
    h.wait_until(lambda: guest.boots == boots + 1)
    h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
    assert guest.running
    assert lab.ssh(host, "cat /var/lib/marker").stdout == "kept\n"
    assert lab.run_script(host, "wait-for-cloud-init.sh").returncode == 0
    assert instance_state(lab, host) == before


def test_destroy_removes_the_guest_and_a_new_vm_boots_fresh(lab: Lab) -> None:
    for each in lab.hosts:
        lab.ready(each)
    host = lab.hosts[1]
    spec = lab.specs_for(host)
    old = lab.guest(host)
    _, _, hostkey = instance_state(lab, host)

    asyncio.run(lab.machines.destroy(spec.vmid))

    assert spec.vmid not in lab.machines.guests
    assert not old.directory.exists()
    assert lab.machines.interfaces(spec.vmid) is None
    assert h.host_leftovers(old) == []

    asyncio.run(lab.machines.start(spec))
    lab.booted.discard(host.name)
    h.wait_for_ssh(lab.key, lab.lab.ssh.user, host.ip)
    assert lab.ssh(host, "test -e /var/lib/marker || echo fresh").stdout == "fresh\n"
    assert instance_state(lab, host)[2] != hostkey, "a fresh first boot mints new SSH host keys"


def test_closing_removes_everything(lab: Lab) -> None:
    made = entries(lab.machines.run_dir)
    assert made, "the journal lists what was made"
    started = time.monotonic()
    lab.machines.close()
    FIGURES["teardown_s"] = round(time.monotonic() - started, 1)
    assert h.leftovers_of(made, lab.machines.bridge) == []
    assert not lab.machines.run_dir.exists()
