"""The whole lab: the Ubuntu image brought onto each node used once, one load balancer (or an
active/standby pair behind a keepalived virtual IP), N web servers.

Children: the image download per node (unless a template VM is configured), one LoadBalancer per
load balancer of the plan and one WebServerVm per planned server. The load balancers do not depend
on the web servers, so a new stack's VMs and their provisioning run in parallel; app rollouts are chained
(drain, deploy, ready: one server at a time, on both load balancers of a pair), and once the stack is
deployed so are the VMs' replacements and reboots (components/rolling.py). Outputs: `lb_url`,
`stats_url` (the virtual IP's in a pair), `web_servers` and `load_balancers` (name -> address).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.load_balancer import LoadBalancer, LoadBalancerArgs, lab_site_url, stats_url
from components.rolling import NEW_STACK, Previous
from components.tls import site_tls
from components.web_server import LoadBalancerAccess, WebServerArgs, WebServerVm
from plan.model import Host, LabConfig, LabSecrets
from render.file_names import image_file_name
from render.keepalived import pair_settings


@dataclass(frozen=True, kw_only=True)
class LabArgs:
    """The validated plan and the secrets from the stack config."""

    lab: LabConfig
    secrets: LabSecrets
    previous: Previous = NEW_STACK
    """What the stack deployed before: once deployed, VMs are replaced and rebooted one at a time."""


class Lab(pulumi.ComponentResource):
    """The report's HAProxy lab on Proxmox VE."""

    lb_url: pulumi.Output[str]
    """The site behind the load balancer."""
    stats_url: pulumi.Output[str]
    """HAProxy's stats page (password protected)."""
    web_servers: pulumi.Output[dict[str, str]]
    """Each web server's name and static address."""
    balancers: tuple[LoadBalancer, ...]
    """The load-balancer components, in plan order (the second one is an HA pair's standby)."""
    load_balancers: pulumi.Output[dict[str, str]]
    """Each load balancer's name and own address (its stats page answers there too)."""
    servers: tuple[WebServerVm, ...]
    """The web-server components, in plan order."""
    ca_certificate: pulumi.Output[str] | None
    """The generated lab CA for clients to trust (None: TLS off, or a brought certificate)."""

    def __init__(self, name: str, args: LabArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:lab:Lab", name, None, opts)
        lab = args.lab
        child = pulumi.ResourceOptions(parent=self)

        # One image per node used: the Import content type usually lives on node-local storage.
        images: dict[str, pulumi.Output[str]] = {}
        if lab.proxmox.template_vm_id is None:
            checksum = lab.proxmox.image_checksum
            file_name = image_file_name(pulumi.get_stack(), lab.proxmox.image_url, checksum)
            for node in dict.fromkeys(lab.node_for(host) for host in lab.hosts):
                # The first node's resource and file keep their names: stacks on one node see no change.
                # Other nodes' files get the node in their name, so a shared datastore holds one per node.
                first = node == lab.proxmox.node
                image = proxmoxve.download.File(
                    f"{name}-ubuntu-image" if first else f"{name}-ubuntu-image-{node.lower()}",
                    node_name=node,
                    datastore_id=lab.proxmox.image_datastore,
                    content_type="import",
                    url=lab.proxmox.image_url,
                    # Stack and URL hash in the name: a new imageUrl is a new file, and no other stack's file.
                    file_name=file_name if first else f"{file_name.removesuffix('.qcow2')}-{node.lower()}.qcow2",
                    checksum=checksum,
                    checksum_algorithm=None if checksum is None else "sha256",
                    # Never replace the image under running VMs because upstream published a new one.
                    overwrite=False,
                    # A file with our stack's name that no state manages is a leftover of this stack: take it over.
                    overwrite_unmanaged=True,
                    upload_timeout=1800,
                    # VMs import a copy at creation: the file may go first; a reused name must never be deleted last.
                    opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
                )
                images[node] = image.id

        def image_for(host: Host) -> pulumi.Output[str] | None:
            return images.get(lab.node_for(host))

        keepalived = pair_settings(lab)
        tls = site_tls(name, lab, args.secrets, self)
        self.ca_certificate = None if tls is None else tls.ca_certificate
        # Once deployed, one VM at a time: the standby, then the load balancer, then each web server (the load
        # balancers first: after a key rotation, the steps on them need them built with the new key).
        built: dict[str, LoadBalancer] = {}
        back: list[pulumi.Resource] = []
        for host in reversed(lab.load_balancers):
            built[host.key] = LoadBalancer(
                f"{name}-{host.key}",
                LoadBalancerArgs(
                    lab=lab,
                    host=host,
                    secrets=args.secrets,
                    image_id=image_for(host),
                    keepalived=keepalived.get(host.name),
                    tls_pem=None if tls is None else tls.haproxy_pem,
                    previous=args.previous,
                    after=back,
                ),
                child,
            )
            back = [built[host.key].back]
        self.balancers = tuple(built[host.key] for host in lab.load_balancers)
        access = tuple(LoadBalancerAccess(ssh=lb.ssh, config_applied=lb.config_applied) for lb in self.balancers)
        servers: list[WebServerVm] = []
        for server in lab.web_servers:
            # Rolling: this server is drained only once the previous one is back (ready) in HAProxy.
            previous = [servers[-1].rolled_out] if servers else []
            servers.append(
                WebServerVm(
                    f"{name}-{server.key}",
                    WebServerArgs(
                        lab=lab,
                        server=server,
                        secrets=args.secrets,
                        image_id=image_for(server),
                        load_balancers=access,
                        deploy_after=previous,
                        previous=args.previous,
                        roll_after=previous or back,
                    ),
                    child,
                )
            )
        self.servers = tuple(servers)

        site = str(lab.site_ip)
        self.lb_url = pulumi.Output.from_input(lab_site_url(site, lab))
        self.stats_url = pulumi.Output.from_input(stats_url(site, lab))
        self.web_servers = pulumi.Output.from_input({server.name: str(server.ip) for server in lab.web_servers})
        self.load_balancers = pulumi.Output.from_input({host.name: str(host.ip) for host in lab.load_balancers})
        self.register_outputs(
            {
                "lb_url": self.lb_url,
                "stats_url": self.stats_url,
                "web_servers": self.web_servers,
                "load_balancers": self.load_balancers,
            }
        )
