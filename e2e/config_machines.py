"""ConfigMachines: VMs with no machine behind them, for tests of the Proxmox side alone.

Power is bookkeeping: a start marks the VM running, a shutdown or stop halts it. The guest agent
answers, once the VM runs, what an agent in a guest configured by Proxmox would: the MAC address of
`net0` and the address cloud-init's `ipconfig0` gives it (docs/e2e.md). `history` keeps every power
action, for tests that check what the fake asked of its machines.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from fakepve.lxc import split_props
from fakepve.qemu import NET_MODELS

from e2e.machines import VmSpec


def agent_interfaces(config: Mapping[str, str]) -> list[dict[str, Any]]:
    """network-get-interfaces as the guest would answer it: loopback, then eth0 with net0's MAC and the
    static address of ipconfig0 (none for DHCP or no ipconfig0)."""
    props = split_props(config.get("net0", ""))[1]
    mac = next((props[model] for model in NET_MODELS if model in props), props.get("macaddr", ""))
    addresses = []
    ip = split_props(config.get("ipconfig0", ""))[1].get("ip", "")
    if ip and ip != "dhcp":
        interface = ipaddress.ip_interface(ip)
        addresses.append(
            {"ip-address": str(interface.ip), "ip-address-type": "ipv4", "prefix": interface.network.prefixlen}
        )
    return [
        {
            "name": "lo",
            "hardware-address": "00:00:00:00:00:00",
            "ip-addresses": [{"ip-address": "127.0.0.1", "ip-address-type": "ipv4", "prefix": 8}],
        },
        {"name": "eth0", "hardware-address": mac.lower(), "ip-addresses": addresses},
    ]


class ConfigMachines:
    """A `Machines` with no guests (see the module's docstring)."""

    def __init__(self) -> None:
        self.running: dict[int, VmSpec] = {}
        self.history: list[tuple[str, int]] = []

    async def start(self, vm: VmSpec) -> None:
        self.history.append(("start", vm.vmid))
        self.running[vm.vmid] = vm

    async def shutdown(self, vmid: int, timeout_s: float) -> bool:
        self.history.append(("shutdown", vmid))
        self.running.pop(vmid, None)
        return True

    async def stop(self, vmid: int) -> None:
        self.history.append(("stop", vmid))
        self.running.pop(vmid, None)

    async def reboot(self, vm: VmSpec) -> None:
        self.history.append(("reboot", vm.vmid))
        self.running[vm.vmid] = vm

    async def destroy(self, vmid: int) -> None:
        self.history.append(("destroy", vmid))
        self.running.pop(vmid, None)

    def interfaces(self, vmid: int) -> list[dict[str, Any]] | None:
        vm = self.running.get(vmid)
        return None if vm is None else agent_interfaces(vm.config)
