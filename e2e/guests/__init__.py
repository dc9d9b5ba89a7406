"""Booted Linux guests behind the fake Proxmox's VMs (docs/e2e.md, "Guests"): `machines.NspawnMachines`, and
`record.cleanup(run_dir)` for a guard process."""
