"""The cloud-init NoCloud seed a Proxmox VM boots with, built from the VM's config as qemu-server builds it.

Read from qemu-server's src/PVE/QemuServer/Cloudinit.pm (`generate_nocloud`, `nocloud_network`,
`nocloud_gen_metadata`, `get_dns_conf`): user-data is the `cicustom` user= snippet verbatim; network-config is
version 1, one `physical` entry per netN that has an ipconfigN, named ethN and matched by net0's MAC in lower
case, a static subnet with a dotted netmask, then one `nameserver` entry; meta-data is only
`instance-id: sha1_hex(user_data . network_data)`, so a changed network or user-data is a new instance at
the next boot, and an unchanged one is the same instance; vendor-data is empty. PVE regenerates the drive at
every start and reboot, so the seed is written again then.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass

from e2e.machines import VmSpec

SEED_DIR = "var/lib/cloud/seed/nocloud"
_NET_KEY = re.compile(r"^net(\d+)$")
_MAC = re.compile(r"^[0-9A-Fa-f]{2}(:[0-9A-Fa-f]{2}){5}$")
# qemu-server's NIC models (PVE::QemuServer::Network, $nic_model_list): `model=MAC` is how net0 carries its MAC.
_NIC_MODELS = (
    *("virtio", "e1000", "e1000e", "rtl8139", "vmxnet3", "pcnet"),
    *("i82551", "i82557b", "i82559er", "ne2k_isa", "ne2k_pci"),
)


@dataclass(frozen=True)
class Seed:
    """The four files of a NoCloud seed, as PVE writes them on the cloud-init drive."""

    user_data: str
    meta_data: str
    network_config: str
    vendor_data: str = ""

    @property
    def instance_id(self) -> str:
        return self.meta_data.removeprefix("instance-id: ").strip()

    def files(self) -> dict[str, str]:
        return {
            "user-data": self.user_data,
            "meta-data": self.meta_data,
            "network-config": self.network_config,
            "vendor-data": self.vendor_data,
        }


def property_string(value: str) -> dict[str, str]:
    """PVE's `key=value,key=value` property string as a dict (a bare first item is kept under its text)."""
    result: dict[str, str] = {}
    for item in value.split(","):
        key, sep, val = item.partition("=")
        result[key.strip()] = val.strip() if sep else ""
    return result


def nic_mac(net: str) -> str:
    """The MAC of a netN value (`virtio=BC:24:11:..,bridge=vmbr0` or `macaddr=...`), as PVE stores it."""
    props = property_string(net)
    for key in ("macaddr", *_NIC_MODELS):
        if _MAC.fullmatch(props.get(key, "")):
            return props[key]
    raise ValueError(f"network device {net!r} has no MAC address (PVE mints one at create: model=MAC)")


def _sorted_nets(config: Mapping[str, str]) -> list[tuple[str, str]]:
    """(netN, N) in Perl's `sort @ifaces` order: as text (net10 before net2), as PVE writes them."""
    nets = []
    for key in sorted(config):
        match = _NET_KEY.fullmatch(key)
        if match:
            nets.append((key, match.group(1)))
    return nets


def _dns(config: Mapping[str, str]) -> tuple[list[str], list[str]]:
    """Search domains and nameservers from the VM config. PVE falls back to its host's resolv.conf when the
    VM sets none; the lab's fake node has no resolv.conf of its own, so nothing is added (docs/e2e.md)."""
    search = config.get("searchdomain", "").split()
    servers = config.get("nameserver", "").split()
    return search, servers


def network_config(config: Mapping[str, str]) -> str:
    """qemu-server's `nocloud_network`: cloud-init network config version 1."""
    lines = ["version: 1", "config:"]
    indent = "    "
    for key, index in _sorted_nets(config):
        ipconfig = config.get(f"ipconfig{index}")
        if not ipconfig:
            continue
        ip = property_string(ipconfig)
        mac = nic_mac(config[key]).lower()
        lines += [f"{indent}- type: physical", f"{indent}  name: eth{index}", f"{indent}  mac_address: '{mac}'"]
        lines.append(f"{indent}  subnets:")
        sub = indent + "  "
        if "ip" in ip:
            if ip["ip"] == "dhcp":
                lines.append(f"{sub}- type: dhcp4")
            else:
                if "/" not in ip["ip"]:
                    raise ValueError(f"ipconfig{index}: not a CIDR: {ip['ip']}")
                interface = ipaddress.IPv4Interface(ip["ip"])
                lines += [
                    f"{sub}- type: static",
                    f"{sub}  address: '{interface.ip}'",
                    f"{sub}  netmask: '{interface.netmask}'",
                ]
                if "gw" in ip:
                    lines.append(f"{sub}  gateway: '{ip['gw']}'")
        if "ip6" in ip:
            if ip["ip6"] == "dhcp":
                lines.append(f"{sub}- type: dhcp6")
            elif ip["ip6"] == "auto":
                lines.append(f"{sub}- type: ipv6_slaac")
            else:
                lines += [f"{sub}- type: static6", f"{sub}  address: '{ip['ip6']}'"]
                if "gw6" in ip:
                    lines.append(f"{sub}  gateway: '{ip['gw6']}'")
    search, servers = _dns(config)
    # PVE tests two array references here, which Perl always finds true: the entry is always written.
    lines.append(f"{indent}- type: nameserver")
    if servers:
        lines.append(f"{indent}  address:")
        lines += [f"{indent}  - '{server}'" for server in servers]
    if search:
        lines.append(f"{indent}  search:")
        lines += [f"{indent}  - '{domain}'" for domain in search]
    return "\n".join(lines) + "\n"


def meta_data(user_data: str, network: str) -> str:
    """qemu-server's `nocloud_gen_metadata`: the instance id is the SHA-1 of user-data then network-config."""
    return f"instance-id: {hashlib.sha1((user_data + network).encode(), usedforsecurity=False).hexdigest()}\n"


def seed_for(vm: VmSpec) -> Seed:
    """The seed PVE would write for this VM. Only what the program uses is supported: a cicustom user=
    snippet (PVE would otherwise generate user-data from ciuser/sshkeys) and no network=/meta= snippet."""
    cicustom = property_string(vm.config.get("cicustom", ""))
    extra = sorted(key for key in ("network", "meta", "vendor") if cicustom.get(key))
    if extra:
        raise ValueError(f"VM {vm.vmid}: cicustom {', '.join(extra)}= snippets are not supported by NspawnMachines")
    if vm.user_data is None:
        raise ValueError(
            f"VM {vm.vmid} has no cicustom user= snippet: NspawnMachines boots VMs whose user-data is a snippet"
        )
    network = network_config(vm.config)
    return Seed(user_data=vm.user_data, meta_data=meta_data(vm.user_data, network), network_config=network)
