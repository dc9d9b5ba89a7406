"""The HAProxy load-balancer VM: the VM, then HAProxy installed and its rendered haproxy.cfg applied.

Children: the LabVm, then remote commands in order: wait for cloud-init, install HAProxy, apply the
config (checked with `haproxy -c` on the VM, swapped in atomically, reloaded: a bad config never
replaces a good one). It needs only the web servers' planned addresses, never their resources, so
it is provisioned in parallel with them. Outputs: `vm_id`, `ip`, `url`, `stats_url`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.config import LabSecrets
from components.haproxy_config import render_lab_haproxy_cfg
from components.model import LabConfig
from components.remote import WAIT_FOR_SSH, connection, sudo_script
from components.scripts import script_text
from components.templates import sha256_hex
from components.vm import LabVm, LabVmArgs


def site_url(ip: str, port: int) -> str:
    """The URL clients use: no port in it when it is HTTP's own."""
    return f"http://{ip}/" if port == 80 else f"http://{ip}:{port}/"


@dataclass(frozen=True, kw_only=True)
class LoadBalancerArgs:
    """The plan, the secrets (SSH key, stats password), and the disk image (None: clone the template)."""

    lab: LabConfig
    secrets: LabSecrets
    image_id: pulumi.Input[str] | None


class LoadBalancer(pulumi.ComponentResource):
    """HAProxy in front of every web server of the plan, with the stats page behind a password."""

    vm_id: pulumi.Output[int]
    """The load balancer's Proxmox VM id."""
    ip: pulumi.Output[str]
    """Its static address."""
    url: pulumi.Output[str]
    """The site's URL, e.g. http://10.0.0.30/."""
    stats_url: pulumi.Output[str]
    """The stats page, e.g. http://10.0.0.30:8404/stats."""
    config_applied: command.remote.Command
    """The command that applied the current haproxy.cfg (for ordering and tests)."""

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:lab:LoadBalancer", name, None, opts)
        lab, host = args.lab, args.lab.load_balancer
        vm = LabVm(
            f"{name}-machine",
            LabVmArgs(lab=lab, host=host, role="load-balancer", image_id=args.image_id),
            pulumi.ResourceOptions(parent=self),
        )
        ssh = connection(host, lab.ssh, args.secrets.ssh_private_key)

        wait_script = script_text("wait-for-cloud-init.sh")
        cloud_init = command.remote.Command(
            f"{name}-cloud-init",
            connection=ssh,
            create=sudo_script(wait_script, "wait-for-cloud-init.sh"),
            opts=pulumi.ResourceOptions(parent=self, depends_on=[vm], custom_timeouts=WAIT_FOR_SSH),
        )

        install_script = script_text("install-haproxy.sh")
        install = command.remote.Command(
            f"{name}-install-haproxy",
            connection=ssh,
            create=sudo_script(install_script, "install-haproxy.sh"),
            triggers=[sha256_hex(install_script)],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[cloud_init]),
        )

        # The rendered file carries the stats password: derived from a secret, it stays a secret Output,
        # travels on stdin (never on a command line), and even its hash is kept secret.
        haproxy_cfg = args.secrets.stats_password.apply(lambda password: render_lab_haproxy_cfg(lab, password))
        apply_script = script_text("apply-haproxy-cfg.sh")
        self.config_applied = command.remote.Command(
            f"{name}-haproxy-cfg",
            connection=ssh,
            create=sudo_script(apply_script, "apply-haproxy-cfg.sh"),
            stdin=haproxy_cfg,
            triggers=[sha256_hex(apply_script), haproxy_cfg.apply(sha256_hex)],
            logging=command.remote.Logging.STDERR,
            opts=pulumi.ResourceOptions(parent=self, depends_on=[install]),
        )

        ip = str(host.ip)
        self.vm_id = vm.vm_id
        self.ip = vm.ip
        self.url = pulumi.Output.from_input(site_url(ip, lab.haproxy.frontend_port))
        self.stats_url = pulumi.Output.from_input(f"http://{ip}:{lab.haproxy.stats_port}/stats")
        self.register_outputs({"vm_id": self.vm_id, "ip": self.ip, "url": self.url, "stats_url": self.stats_url})
