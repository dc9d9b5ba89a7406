"""Checks across settings that plan.parse runs once each part is read: what no single value shows.

Why apart: each names the key to fix, like every other problem, but needs two parts of the plan at once
(ports against SSH and each other, a host's name with the domain, the template against the VMs' ids).
"""

from __future__ import annotations

from collections.abc import Sequence

from plan import values as v
from plan.model import Host, Network, Proxmox


def check_ports(r: v.Reader, frontend: int | None, stats: int | None) -> None:
    """The LB's two ports: neither SSH's (sshd holds it, and the firewall would open SSH to the clients)
    nor the same one twice."""
    for name, port in (("frontendPort", frontend), ("statsPort", stats)):
        if port == v.SSH_PORT:
            r.fail(f"haproxy.{name}", f"{r.show('haproxy', port)} is SSH's port", "a port sshd does not use, e.g. 80")
    if frontend is not None and frontend == stats:
        r.fail("haproxy.statsPort", f"{r.show('haproxy', stats)} is also haproxy.frontendPort", "a port of its own")


def check_fqdns(r: v.Reader, network: Network | None, hosts: Sequence[tuple[str, Host]]) -> None:
    """cloud-init's fqdn and the health-check Host header are name.domain: DNS allows 253 characters."""
    if network is None:
        return
    for key, host in hosts:
        length = len(host.name) + 1 + len(network.domain)
        if length > v.MAX_FQDN:
            r.fail(
                f"{key}.name",
                f"with network.domain it makes a {length}-character name",
                f"a host name and domain of at most {v.MAX_FQDN} characters together",
            )


def check_template_vm_id(r: v.Reader, proxmox: Proxmox | None, hosts: Sequence[tuple[str, Host]]) -> None:
    """The template the VMs are cloned from cannot be one of the VMs."""
    if proxmox is None or proxmox.template_vm_id is None:
        return
    for key, host in hosts:
        if host.vm_id == proxmox.template_vm_id:
            r.fail(
                "proxmox.templateVmId",
                f"{r.show('proxmox', proxmox.template_vm_id)} is also {key}.vmId",
                "the id of an existing template VM, not of a VM this lab creates",
            )
