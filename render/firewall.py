"""Which traffic each VM accepts, as plain data: the Proxmox VM firewall drops everything else.

Why the Proxmox firewall and not ufw in the guest: Docker publishes container ports through its own
iptables chains, which bypass ufw on the web servers; the hypervisor's firewall sits outside the
guest, so a root user or a container inside cannot open a port by mistake.
"""

from __future__ import annotations

from dataclasses import dataclass

from plan.app_contract import SERVER_PORT
from plan.model import Host, LabConfig
from plan.values import SSH_PORT


@dataclass(frozen=True, kw_only=True)
class Rule:
    """One inbound ACCEPT rule: protocol, destination port (None for ICMP and VRRP), allowed source network."""

    proto: str
    dport: int | None
    source: str
    comment: str


def load_balancer_rules(lab: LabConfig, host: Host | None = None) -> tuple[Rule, ...]:
    """Clients reach the site; admins reach SSH and the stats page; the lab network may ping. In a pair,
    VRRP (IP protocol 112) from the other load balancer only: VRRPv3 has no authentication, so anyone
    else's adverts could steal the virtual IP."""
    rules = (
        Rule(proto="tcp", dport=lab.haproxy.frontend_port, source=str(lab.haproxy.client_cidr), comment="site (HTTP)"),
        Rule(proto="tcp", dport=lab.haproxy.stats_port, source=str(lab.ssh.admin_cidr), comment="HAProxy stats"),
        Rule(proto="tcp", dport=SSH_PORT, source=str(lab.ssh.admin_cidr), comment="SSH from the admin network"),
        Rule(proto="icmp", dport=None, source=str(lab.network.cidr), comment="ping from the lab network"),
    )
    peers = [other for other in lab.load_balancers if host is not None and other.key != host.key]
    vrrp = tuple(
        Rule(proto="vrrp", dport=None, source=f"{peer.ip}/32", comment=f"VRRP from {peer.name}") for peer in peers
    )
    # Last, so that turning TLS on moves no existing rule.
    https = (
        ()
        if lab.tls is None
        else (Rule(proto="tcp", dport=lab.tls.https_port, source=str(lab.haproxy.client_cidr), comment="site (HTTPS)"),)
    )
    return rules + vrrp + https


def web_server_rules(lab: LabConfig) -> tuple[Rule, ...]:
    """Only the load balancers reach the app (their health checks and traffic); admins reach SSH."""
    single = not lab.is_pair  # the single-LB comment stays as it was: no diff for existing stacks
    return (
        *(
            Rule(
                proto="tcp",
                dport=SERVER_PORT,
                source=f"{lb.ip}/32",
                comment="HTTP from the load balancer" if single else f"HTTP from the load balancer {lb.name}",
            )
            for lb in lab.load_balancers
        ),
        Rule(proto="tcp", dport=SSH_PORT, source=str(lab.ssh.admin_cidr), comment="SSH from the admin network"),
        Rule(proto="icmp", dport=None, source=str(lab.network.cidr), comment="ping from the lab network"),
    )


def rules_for(lab: LabConfig, host: Host) -> tuple[Rule, ...]:
    """The inbound rules of one VM of the plan."""
    if host in lab.load_balancers:
        return load_balancer_rules(lab, host)
    return web_server_rules(lab)
