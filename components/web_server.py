"""A web-server VM: the VM, then Docker, then the Flask app built and started with docker compose.

Children: the LabVm, then remote commands: wait for cloud-init, install Docker Engine and the compose
plugin, deploy the app bundle (files/webapp plus this server's compose file, on stdin). The deploy
waits for the app's health check before it ends; the Lab chains deploys so a changed app rolls out
one server at a time while HAProxy's checks drain the one being rebuilt. Outputs: `vm_id`, `ip`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from components.provisioning import boot_vm, run_script
from plan.model import LabConfig, LabSecrets, WebServer
from render.shipping import sha256_hex, tar_gz_base64
from render.webapp import webapp_bundle


@dataclass(frozen=True, kw_only=True)
class WebServerArgs:
    """The plan, which server, the secrets, the disk image, and what its deploy must wait for."""

    lab: LabConfig
    server: WebServer
    secrets: LabSecrets
    image_id: pulumi.Input[str] | None
    deploy_after: Sequence[pulumi.Resource] = field(default_factory=tuple)


class WebServerVm(pulumi.ComponentResource):
    """One Flask web server in Docker, answering its own message on `GET /`."""

    vm_id: pulumi.Output[int]
    """The web server's Proxmox VM id."""
    ip: pulumi.Output[str]
    """Its static address."""
    deployed: command.remote.Command
    """The deploy command: the next server's deploy waits for it (rolling updates)."""

    def __init__(self, name: str, args: WebServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:lab:WebServer", name, None, opts)
        lab, server = args.lab, args.server
        booted = boot_vm(
            self,
            name,
            lab=lab,
            host=server,
            role="web-server",
            image_id=args.image_id,
            private_key=args.secrets.ssh_private_key,
        )
        install = run_script(self, name, booted, "install-docker.sh", after=[booted.cloud_init])
        bundle = tar_gz_base64(webapp_bundle(server, trusted_proxies=str(lab.load_balancer.ip)))
        self.deployed = run_script(
            self,
            name,
            booted,
            "deploy-webapp.sh",
            after=[install, *args.deploy_after],
            stdin=bundle,
            stdin_is_bundle=True,
            shipped_hash=sha256_hex(bundle),
            timeouts=pulumi.CustomTimeouts(create="20m"),
        )

        self.vm_id = booted.vm.vm_id
        self.ip = booted.vm.ip
        self.register_outputs({"vm_id": self.vm_id, "ip": self.ip})
