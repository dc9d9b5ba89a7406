"""Which traffic each VM accepts, as plain data: the Proxmox VM firewall drops everything else.

Why the Proxmox firewall and not ufw in the guest: Docker publishes container ports through its own
iptables chains, which bypass ufw on the web servers; the hypervisor's firewall sits outside the
guest, so a root user or a container inside cannot open a port by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

from plan.model import Host, LabConfig


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One inbound ACCEPT rule: protocol, destination port (None for ICMP), allowed source network."""

    proto: str
    dport: int | None
    source: str
    comment: str


def load_balancer_rules(lab: LabConfig) -> tuple[Rule, ...]:
    """Clients reach the site; admins reach SSH and the stats page; the lab network may ping."""
    return (
        Rule(proto="tcp", dport=lab.haproxy.frontend_port, source=str(lab.haproxy.client_cidr), comment="site (HTTP)"),
        Rule(proto="tcp", dport=lab.haproxy.stats_port, source=str(lab.ssh.admin_cidr), comment="HAProxy stats"),
        Rule(proto="tcp", dport=22, source=str(lab.ssh.admin_cidr), comment="SSH from the admin network"),
        Rule(proto="icmp", dport=None, source=str(lab.network.cidr), comment="ping from the lab network"),
    )


def web_server_rules(lab: LabConfig) -> tuple[Rule, ...]:
    """Only the load balancer reaches the app (its health checks and traffic); admins reach SSH."""
    return (
        Rule(proto="tcp", dport=80, source=f"{lab.load_balancer.ip}/32", comment="HTTP from the load balancer"),
        Rule(proto="tcp", dport=22, source=str(lab.ssh.admin_cidr), comment="SSH from the admin network"),
        Rule(proto="icmp", dport=None, source=str(lab.network.cidr), comment="ping from the lab network"),
    )


def rules_for(lab: LabConfig, host: Host) -> tuple[Rule, ...]:
    """The inbound rules of one VM of the plan."""
    return load_balancer_rules(lab) if host == lab.load_balancer else web_server_rules(lab)
