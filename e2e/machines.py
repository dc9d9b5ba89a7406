"""The seam between the fake Proxmox API and the machines behind its VMs.

The fake (e2e.pve) keeps Proxmox's bookkeeping: configs, tasks, locks, permissions. What a VM *is* lives
behind this protocol: `ConfigMachines` (e2e.config_machines) has no machine at all, for tests of the Proxmox side
alone; `NspawnMachines` (e2e.guests) boots a real Linux guest per VM. The fake calls these from inside
its task bodies, so a task ends when the machine has done what the task says.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class VmSpec:
    """What a machine may know of its VM: Proxmox's view of it when the power action happens."""

    vmid: int
    name: str
    node: str
    config: Mapping[str, str]
    """The VM's current config as Proxmox answers it (net0, ipconfig0, cicustom, nameserver, searchdomain...)."""
    user_data: str | None
    """The text of the `cicustom` user= snippet as stored on the node (None: the VM has no cicustom)."""


class Machines(Protocol):
    """What the fake Proxmox asks of the machines behind its VMs."""

    async def start(self, vm: VmSpec) -> None:
        """Power on. A VM never started since it was created gets a fresh machine (its first boot); any
        other start boots the same machine again, disk kept. Returns once powered on, not once booted."""

    async def shutdown(self, vmid: int, timeout_s: float) -> bool:
        """Ask the guest OS to power off; True once halted, False if it still runs after `timeout_s`."""

    async def stop(self, vmid: int) -> None:
        """Power off at once, disk kept."""

    async def reboot(self, vm: VmSpec) -> None:
        """Reboot in place (the same machine and disk): Proxmox applies pending changes and regenerates the
        cloud-init drive from `vm.config` first, so the guest sees the new settings at this boot."""

    async def destroy(self, vmid: int) -> None:
        """The VM is deleted: its machine (stopped first if needed) and its disk go."""

    def interfaces(self, vmid: int) -> list[dict[str, Any]] | None:
        """The guest agent's `network-get-interfaces` answer, or None while no agent answers."""
        ...
