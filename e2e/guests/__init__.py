"""Booted Linux guests behind the fake Proxmox's VMs: `NspawnMachines` and `cleanup` (docs/e2e.md, Guests)."""

from e2e.guests.machines import NspawnMachines
from e2e.guests.record import cleanup

__all__ = ["NspawnMachines", "cleanup"]
