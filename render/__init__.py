"""Pure renderers: what goes to the VMs, as text, from the plan (no Pulumi, no I/O but files/)."""
