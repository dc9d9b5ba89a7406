"""The whole lab: the Ubuntu image brought onto the node once, one load balancer, N web servers.

Children: the image download (unless a template VM is configured), the LoadBalancer and one
WebServerVm per planned server. The load balancer does not depend on the web servers, so all VMs
and their provisioning run in parallel; only app deploys are chained (rolling updates).
Outputs: `lb_url`, `stats_url`, `web_servers` (name -> address).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlparse

import pulumi
import pulumi_proxmoxve as proxmoxve

from components.load_balancer import LoadBalancer, LoadBalancerArgs
from components.web_server import WebServerArgs, WebServerVm
from plan.model import LabConfig, LabSecrets


def image_file_name(url: str) -> str:
    """The name the image gets on the node; Proxmox's Import content type wants a .qcow2 ending."""
    name = PurePosixPath(urlparse(url).path).name
    return name if name.endswith(".qcow2") else f"{name.removesuffix('.img')}.qcow2"


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
            image = proxmoxve.download.File(
                f"{name}-ubuntu-image",
                node_name=lab.proxmox.node,
                datastore_id=lab.proxmox.image_datastore,
                content_type="import",
                url=lab.proxmox.image_url,
                file_name=image_file_name(lab.proxmox.image_url),
                # Never replace the image under running VMs because upstream published a new one.
                overwrite=False,
                upload_timeout=1800,
                opts=child,
            )
            image_id = image.id

        self.load_balancer = LoadBalancer(
            f"{name}-{lab.load_balancer.key}",
            LoadBalancerArgs(lab=lab, secrets=args.secrets, image_id=image_id),
            child,
        )
        servers: list[WebServerVm] = []
        for server in lab.web_servers:
            previous = [servers[-1].deployed] if servers else []
            servers.append(
                WebServerVm(
                    f"{name}-{server.key}",
                    WebServerArgs(
                        lab=lab, server=server, secrets=args.secrets, image_id=image_id, deploy_after=previous
                    ),
                    child,
                )
            )
        self.servers = tuple(servers)

        self.lb_url = self.load_balancer.url
        self.stats_url = self.load_balancer.stats_url
        self.web_servers = pulumi.Output.from_input({server.name: str(server.ip) for server in lab.web_servers})
        self.register_outputs({"lb_url": self.lb_url, "stats_url": self.stats_url, "web_servers": self.web_servers})
