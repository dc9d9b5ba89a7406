"""Helpers for driving NspawnMachines directly (no Pulumi, no fake Proxmox): the dev plan moved onto a
198.18 subnet, the VmSpec PVE would hand the machines for one of its VMs, and SSH to a guest as the program's
remote commands reach it (the plan's user, a key of the test's own)."""

from __future__ import annotations

import contextlib
import ipaddress
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from e2e.guests import cgroups
from e2e.guests.guest import Guest
from e2e.guests.machines import NspawnMachines
from e2e.guests.seed import nic_mac, property_string
from e2e.machines import VmSpec
from plan.model import Host, LabConfig
from plan.parse import parse_lab_config
from render.cloud_init import render_user_data
from tests.plans import dev_raw


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: str


def keypair(directory: Path) -> KeyPair:
    """A fresh ed25519 key for the test (the plan's `ssh.publicKey`)."""
    private = directory / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(private)], check=True)
    return KeyPair(private, (directory / "id_ed25519.pub").read_text().strip())


def test_lab(subnet: ipaddress.IPv4Network, public_key: str) -> LabConfig:
    """The dev stack's plan with every address in `subnet` (a /24 in 198.18.0.0/15): gateway .1 (also its DNS
    server), load balancer .30, web servers .31 and .32."""
    base = subnet.network_address
    raw = dev_raw()
    raw["network"].update({"cidr": str(subnet), "gateway": str(base + 1), "dns": [str(base + 1)]})
    raw["ssh"].update({"publicKey": public_key, "adminCidr": str(subnet)})
    raw["haproxy"]["clientCidr"] = str(subnet)
    raw["loadBalancer"]["ip"] = str(base + 30)
    for index, server in enumerate(raw["webServers"], start=1):
        server["ip"] = str(base + 30 + index)
    return parse_lab_config(raw)


def gateway(lab: LabConfig) -> ipaddress.IPv4Interface:
    return ipaddress.IPv4Interface(f"{lab.network.gateway}/{lab.network.cidr.prefixlen}")


def random_mac() -> str:
    """A MAC in Proxmox's own prefix (BC:24:11), as PVE mints for a new NIC."""
    return "BC:24:11:" + ":".join(f"{secrets.randbelow(256):02X}" for _ in range(3))


def vm_spec(lab: LabConfig, host: Host, mac: str, user_data: str | None = None) -> VmSpec:
    """The VmSpec for `host` as PVE stores the config bpg's provider writes (net0 with the minted MAC,
    ipconfig0, nameserver, searchdomain, cicustom) and the user-data snippet the program renders."""
    vmid = host.vm_id or 100
    config = {
        "name": host.name,
        "net0": f"virtio={mac},bridge={lab.network.bridge},firewall=1",
        "ipconfig0": f"ip={host.ip}/{lab.network.cidr.prefixlen},gw={lab.network.gateway}",
        "nameserver": " ".join(str(server) for server in lab.network.dns),
        "searchdomain": lab.network.domain,
        "cicustom": f"user=local:snippets/{host.name.lower()}-user-data.yaml",
        "ide2": f"local-lvm:vm-{vmid}-cloudinit,media=cdrom",
    }
    text = render_user_data(lab, host) if user_data is None else user_data
    return VmSpec(vmid=vmid, name=host.name, node=lab.proxmox.node, config=config, user_data=text)


def ssh(
    key: KeyPair, user: str, address: ipaddress.IPv4Address, command: str, timeout_s: float = 300, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """Run `command` on the guest over SSH as `user` with the test's key (host keys not kept: fresh guests)."""
    return subprocess.run(
        [
            "ssh",
            *("-i", str(key.private), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes"),
            *("-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR"),
            *("-o", "ConnectTimeout=5"),
            f"{user}@{address}",
            command,
        ],
        input=stdin,
        capture_output=True,
        text=True,
        check=False,
        timeout=timeout_s,
    )


def wait_for_ssh(key: KeyPair, user: str, address: ipaddress.IPv4Address, timeout_s: float = 180) -> float:
    """Seconds until `true` succeeds over SSH as `user`; raises with the last error after `timeout_s`."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout_s:
        result = ssh(key, user, address, "true", timeout_s=15)
        if result.returncode == 0:
            return time.monotonic() - started
        last = result.stderr.strip()
        time.sleep(0.5)
    raise TimeoutError(f"no SSH as {user}@{address} after {timeout_s:.0f} s: {last}")


def nic_mac_of(spec: VmSpec) -> str:
    return nic_mac(spec.config["net0"])


def wait_until(condition: Callable[[], bool], timeout_s: float = 120) -> None:
    """Poll `condition` every 0.2 s until it holds; TimeoutError after `timeout_s`."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met after {timeout_s:.0f} s")
        time.sleep(0.2)


def _links() -> set[str]:
    out = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    return {line.split(":")[1].strip().split("@")[0] for line in out.splitlines()}


def _mount_points() -> list[str]:
    return [line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()]


def _processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
    return found


def leftovers_of(made: list[tuple[str, str]], bridge: str) -> list[str]:
    """What still exists of a run, checked independently of the code under test: every journaled cgroup
    directory, mount, link, nft table and directory, the bridge, and any process naming a journaled path."""
    left: list[str] = []
    links, points = _links(), _mount_points()
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True, check=True).stdout
    for kind, value in made:
        if kind in ("cgroup", "dir") and Path(value).exists():
            left.append(f"{kind} {value}")
        elif kind == "mount" and any(p == value or p.startswith(value + "/") for p in points):
            left.append(f"mount {value}")
        elif kind == "link" and value in links:
            left.append(f"link {value}")
        elif kind == "nft" and f"table {value}\n" in tables + "\n":
            left.append(f"nft {value}")
        if kind == "dir":
            left += [f"process {pid} ({value})" for pid in _processes_mentioning(value)]
    if bridge in links:
        left.append(f"bridge {bridge}")
    if bridge:  # machines are named after the run's tag, as the default bridge is
        left += [f"nspawn {path}" for path in Path("/run/systemd/nspawn/propagate").glob(f"{bridge}-*")]
    return left


def host_leftovers(guest: Guest) -> list[str]:
    """What is left on the host of one guest (its directory, overlay mount, cgroups, veth)."""
    made = [("dir", str(guest.directory)), ("mount", str(guest.root))]
    made += [("cgroup", str(path)) for path in cgroups.paths(guest.cgroup)]
    made += [("link", guest.host_end), ("link", guest.guest_end)]
    return leftovers_of(made, bridge="")


# keepalived's adverts as bytes: a raw IP protocol 112 socket receiving on 224.0.0.18 (argv[1]: own address).
VRRP_RECEIVE = textwrap.dedent(
    """
    import socket, struct, sys
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    group = struct.pack("4s4s", socket.inet_aton("224.0.0.18"), socket.inet_aton(sys.argv[1]))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, group)
    s.settimeout(20)
    print("ready", flush=True)
    while True:
        data, peer = s.recvfrom(2048)
        if data[20:].startswith(b"\\x31"):
            print("vrrp from", peer[0], flush=True)
            break
    """
)
VRRP_SEND = textwrap.dedent(
    """
    import socket, sys, time
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, 112)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 255)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(sys.argv[1]))
    for _ in range(40):
        s.sendto(b"\\x31\\x33\\x64\\x01\\x00\\x14\\x00\\x00" + socket.inet_aton("198.18.61.100"), ("224.0.0.18", 0))
        time.sleep(0.25)
    """
)


def _hold(net0: str, ipconfig0: str) -> None:
    """Boot one small guest, say where its run directory is, and wait to be killed (tests' kill -9 path)."""
    ip = property_string(ipconfig0)
    gateway_address = ipaddress.IPv4Interface(ip["ip"]).network
    config = {"net0": net0, "ipconfig0": ipconfig0, "cicustom": "user=local:snippets/small.yaml"}
    spec = VmSpec(202, "hold", "pve", config, "#cloud-config\n{}\n")
    with NspawnMachines(f"{ip['gw']}/{gateway_address.prefixlen}") as machines:
        guest = machines.start_sync(spec)
        wait_until(lambda: guest.pid1() is not None and guest.run(["true"]).returncode == 0)
        print("booted", machines.run_dir, machines.bridge, flush=True)
        while True:
            time.sleep(60)


if __name__ == "__main__":
    if sys.argv[1:2] == ["hold"]:
        _hold(sys.argv[2], sys.argv[3])
