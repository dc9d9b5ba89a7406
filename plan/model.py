"""The lab's plan as frozen dataclasses: what every other layer reads, built only by plan.parse.

Nothing here reads config, validates or touches the network; the secrets type lives here too, so the
Pulumi components never import the config reader.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pulumi

PROJECT = "haproxy-lab"


class ConfigError(ValueError):
    """Bad stack configuration: every problem found, each naming its key, what is wrong and what is expected."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        lines = "\n".join(f"  - {problem}" for problem in self.problems)
        super().__init__(f"invalid stack configuration ({len(self.problems)} problem(s)):\n{lines}")


@dataclass(frozen=True, kw_only=True)
class Network:
    """The lab network all VMs sit in (report: 10.0.0.0/16 behind 10.0.0.1, bridge vmbr1)."""

    cidr: ipaddress.IPv4Network
    gateway: ipaddress.IPv4Address
    dns: tuple[ipaddress.IPv4Address, ...]
    domain: str
    bridge: str


@dataclass(frozen=True, kw_only=True)
class Host:
    """One VM of the plan: its hostname, static address, optional fixed Proxmox VM id, and optional
    resource key (set it to keep a renamed host's resources: see the README's "Updates")."""

    name: str
    ip: ipaddress.IPv4Address
    vm_id: int | None = None
    resource_key: str | None = None

    @property
    def key(self) -> str:
        """The stable, lower-case token in this host's resource names: the configured `key`, else the
        hostname in lower case (hostnames are case-insensitive)."""
        return self.resource_key or self.name.lower()


@dataclass(frozen=True, kw_only=True)
class WebServer(Host):
    """A web server VM and the message its Flask app answers on `GET /`."""

    message: str


@dataclass(frozen=True, kw_only=True)
class Proxmox:
    """Where on Proxmox VE the VMs go, and what they boot from."""

    nodes: tuple[str, ...]
    vm_datastore: str
    image_datastore: str
    snippets_datastore: str
    image_url: str
    image_checksum: str | None
    """Lower-case SHA-256 hex the downloaded image must match, or None (not verified)."""
    template_vm_id: int | None
    boot_disk: str
    """The interface of the disk the VM boots from (the template's, when cloning): virtio0, scsi0..."""

    @property
    def node(self) -> str:
        """The first node: where the cloud image or the template VM is read from."""
        return self.nodes[0]


@dataclass(frozen=True, kw_only=True)
class VmSize:
    """Size of every VM (report: 2 cores, 2048 MB, 20 GB)."""

    cores: int
    memory_mb: int
    disk_gb: int


@dataclass(frozen=True, kw_only=True)
class Ssh:
    """The admin account cloud-init creates and Pulumi's remote commands log in with."""

    user: str
    public_key: str
    admin_cidr: ipaddress.IPv4Network


@dataclass(frozen=True, kw_only=True)
class Haproxy:
    """Load-balancer behaviour: algorithm, health checks, who may reach it, and the stats page."""

    balance: str
    frontend_port: int
    stats_port: int
    stats_user: str
    client_cidr: ipaddress.IPv4Network


@dataclass(frozen=True, kw_only=True)
class Tls:
    """HTTPS at the edge (`tls`): the port, whether plain HTTP redirects to it, and whose certificate."""

    https_port: int
    redirect_http: bool
    certificate: str | None = None
    """A PEM chain, server certificate first, with the secret `tlsPrivateKey` (bring your own); None: the
    program generates a lab CA and a server certificate (components/tls.py)."""


@dataclass(frozen=True, kw_only=True)
class LabConfig:
    """The whole validated plan: one load balancer (or an active/standby pair behind a virtual IP) in front
    of one or more web servers."""

    network: Network
    proxmox: Proxmox
    vm_size: VmSize
    ssh: Ssh
    haproxy: Haproxy
    load_balancers: tuple[Host, ...]
    """`loadBalancer`, then in an HA pair `loadBalancer.standby`: one tuple from here to the components."""
    web_servers: tuple[WebServer, ...]
    virtual_ip: ipaddress.IPv4Address | None = None
    """The address VRRP moves between the pair (`loadBalancer.virtualIp`); set exactly when there is a pair."""
    tls: Tls | None = None
    """HTTPS at the edge, or None (plain HTTP only, as before issue 18)."""

    @property
    def is_pair(self) -> bool:
        """Two load balancers behind the virtual IP (keepalived), rather than one."""
        return len(self.load_balancers) == 2

    @property
    def site_ip(self) -> ipaddress.IPv4Address:
        """Where clients reach the site: the virtual IP of a pair, else the load balancer's address."""
        return self.load_balancers[0].ip if self.virtual_ip is None else self.virtual_ip

    @property
    def listen_ports(self) -> tuple[int, ...]:
        """Every port HAProxy listens on from outside: the site's, the stats page's, and HTTPS's when on."""
        https = () if self.tls is None else (self.tls.https_port,)
        return (self.haproxy.frontend_port, self.haproxy.stats_port, *https)

    @property
    def hosts(self) -> tuple[Host, ...]:
        """Every VM of the plan, load balancers first."""
        return (*self.load_balancers, *self.web_servers)

    def node_for(self, host: Host) -> str:
        """The Proxmox node of a VM: the VMs, in `hosts` order, go round-robin over `proxmox.nodes`, so the two
        load balancers land on different nodes whenever two or more are given."""
        keys = [each.key for each in self.hosts]
        return self.proxmox.nodes[keys.index(host.key) % len(self.proxmox.nodes)]


@dataclass(frozen=True, kw_only=True)
class LabSecrets:
    """The stack's secrets, kept as secret Outputs so they never reach the state or logs in plain text."""

    ssh_private_key: pulumi.Output[str]
    stats_password: pulumi.Output[str]
    tls_private_key: pulumi.Output[str] | None = None
    """The key of a brought `tls.certificate` (`tlsPrivateKey`); None when the certificate is generated."""
