"""The end-to-end harness: `pulumi up`, day-2 changes and `pulumi destroy` for real on this machine,
against a fake Proxmox VE API (fakepve, test-only) whose VMs can boot as real Linux guests."""
