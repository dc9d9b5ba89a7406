"""The whole lab: the Ubuntu image brought onto the node once, one load balancer, N web servers.

Children: the image download (unless a template VM is configured), the LoadBalancer and one
WebServerVm per planned server. The load balancer does not depend on the web servers, so all VMs
and their provisioning run in parallel; only app rollouts are chained (drain, deploy, ready: one
server at a time). Outputs: `lb_url`, `stats_url`, `web_servers` (name -> address).
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.web_server import LoadBalancerAccess, WebServerArgs, WebServerVm
from plan.model import LabConfig, LabSecrets
from render.file_names import image_file_name


@dataclass(frozen=True, kw_only=True)
class LabArgs:
    """The validated plan and the secrets from the stack config."""

    lab: LabConfig
    secrets: LabSecrets


class Lab(pulumi.ComponentResource):
    """The report's HAProxy lab on Proxmox VE."""

    lb_url: pulumi.Output[str]
    """The site behind the load balancer."""
    stats_url: pulumi.Output[str]
    """HAProxy's stats page (password protected)."""
    web_servers: pulumi.Output[dict[str, str]]
    """Each web server's name and static address."""
    load_balancer: LoadBalancer
    """The load-balancer component."""
    servers: tuple[WebServerVm, ...]
    """The web-server components, in plan order."""

    def __init__(self, name: str, args: LabArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:lab:Lab", name, None, opts)
        lab = args.lab
        child = pulumi.ResourceOptions(parent=self)

        image_id: pulumi.Output[str] | None = None
        if lab.proxmox.template_vm_id is None:
            checksum = lab.proxmox.image_checksum
            image = proxmoxve.download.File(
                f"{name}-ubuntu-image",
                node_name=lab.proxmox.node,
                datastore_id=lab.proxmox.image_datastore,
                content_type="import",
                url=lab.proxmox.image_url,
                # Stack and URL hash in the name: a new imageUrl is a new file, and no other stack's file.
                file_name=image_file_name(pulumi.get_stack(), lab.proxmox.image_url, checksum),
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
            image_id = image.id

        self.load_balancer = LoadBalancer(
            f"{name}-{lab.load_balancer.key}",
            LoadBalancerArgs(lab=lab, secrets=args.secrets, image_id=image_id),
            child,
        )
        lb_access = LoadBalancerAccess(ssh=self.load_balancer.ssh, config_applied=self.load_balancer.config_applied)
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
                        image_id=image_id,
                        load_balancer=lb_access,
                        deploy_after=previous,
                    ),
                    child,
                )
            )
        self.servers = tuple(servers)

        self.lb_url = self.load_balancer.url
        self.stats_url = self.load_balancer.stats_url
        self.web_servers = pulumi.Output.from_input({server.name: str(server.ip) for server in lab.web_servers})
        self.register_outputs({"lb_url": self.lb_url, "stats_url": self.stats_url, "web_servers": self.web_servers})
