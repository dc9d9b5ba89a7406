"""One HAProxy load-balancer VM: the VM, then HAProxy installed and its rendered haproxy.cfg applied;
in an HA pair, keepalived too.

Children: the LabVm, then remote commands in order: wait for cloud-init, install HAProxy, apply the
config (checked with `haproxy -c` on the VM, swapped in atomically, reloaded: a bad config never
replaces a good one). In a pair, then: install keepalived, apply its config and track script (checked
with `keepalived -t`, same atomic apply). It needs only the web servers' planned addresses, never their
resources, so it is provisioned in parallel with them. Then `back` (it serves); in a pair, before it, `pause`
(hands the virtual IP off before a reboot or re-creation): components/rolling.py. Outputs: `vm_id`, `ip`,
`url`, `stats_url` (this VM's own address; the Lab's outputs use the virtual IP of a pair).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from components.provisioning import boot_vm, remote_step, run_script
from components.remote import Budget, RootScript, connection
from components.rolling import HANDOFF, LB_STATE_SCRIPT, NEW_STACK, Previous, Rolling, when
from components.vm import disruption_fingerprint
from plan.model import Host, LabConfig, LabSecrets
from plan.tls import HTTPS_PORT
from plan.values import HTTP_PORT
from render.haproxy_cfg import TLS_PEM_PATH, render_lab_haproxy_cfg
from render.keepalived import KeepalivedSettings, keepalived_bundle
from render.shipping import CONFIG_TRAILER, script_text, sha256_hex, tar_gz_base64

INSTALL = Budget.minutes(20)
APPLY = Budget.minutes(10)


def site_url(ip: str, port: int, *, https: bool = False) -> str:
    """The URL clients use: no port in it when it is the scheme's own."""
    scheme, default = ("https", HTTPS_PORT) if https else ("http", HTTP_PORT)
    return f"{scheme}://{ip}/" if port == default else f"{scheme}://{ip}:{port}/"


def stats_url(ip: str, lab: LabConfig) -> str:
    """The stats page: over TLS only when TLS is on."""
    return f"{'https' if lab.tls else 'http'}://{ip}:{lab.haproxy.stats_port}/stats"


def lab_site_url(ip: str, lab: LabConfig) -> str:
    """The site: its HTTPS URL when TLS is on."""
    if lab.tls is None:
        return site_url(ip, lab.haproxy.frontend_port)
    return site_url(ip, lab.tls.https_port, https=True)


@dataclass(frozen=True, kw_only=True)
class LoadBalancerArgs:
    """The plan, which of its load balancers, the secrets (SSH key, stats password), the disk image (None:
    clone the template), and this VM's keepalived settings in an HA pair (None: a single load balancer)."""

    lab: LabConfig
    host: Host
    secrets: LabSecrets
    image_id: pulumi.Input[str] | None
    keepalived: KeepalivedSettings | None = None
    tls_pem: pulumi.Output[str] | None = None
    """The site's certificate, chain and key (a secret), when TLS is on: the same for both LBs of a pair."""
    previous: Previous = NEW_STACK
    after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Once deployed, this load balancer is rebooted or replaced only after these (the standby's `back`)."""


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
    """The command that applied the current haproxy.cfg: web servers' drain/ready steps wait for it, so
    HAProxy knows every server of the plan before one is drained."""
    ssh: command.remote.ConnectionArgs
    """How to reach the load balancer (finite dial retries): web servers drain themselves through it."""
    back: command.remote.Command
    """The step after which it serves (after a boot, a provisioning): the next VM in the rolling order waits."""

    def __init__(self, name: str, args: LoadBalancerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:lab:LoadBalancer", name, None, opts)
        lab, host = args.lab, args.host
        fingerprint = disruption_fingerprint(lab, host)
        lb_state = script_text(LB_STATE_SCRIPT)
        pause: list[pulumi.Resource] = []
        if args.keepalived is not None:
            # Before the provider reboots it or the engine re-creates it: hand the virtual IP to the peer. The
            # script runs on the delete of a replacement (a new fingerprint), with the connection the step was
            # created with: the key the VM was built with, even when this run rotates it.
            pause.append(
                remote_step(
                    self,
                    f"{name}-pause",
                    connection(host, lab.ssh, args.secrets.ssh_private_key),
                    RootScript(lb_state, LB_STATE_SCRIPT, ("handoff", str(args.keepalived.virtual_ip))),
                    budget=HANDOFF,
                    triggers=[fingerprint],
                    after=when(args.previous.rolling, args.after),
                    rolling=Rolling.on_replace(),
                )
            )
        booted = boot_vm(
            self,
            name,
            lab=lab,
            host=host,
            role="load-balancer",
            image_id=args.image_id,
            private_key=args.secrets.ssh_private_key,
            # A single load balancer goes first: nothing to wait for, and its reboot is an outage anyway.
            after=when(args.previous.rolling, pause),
        )
        install = run_script(self, name, booted, "install-haproxy.sh", previous=booted.cloud_init, budget=INSTALL)
        before_config = install
        if args.tls_pem is not None:
            # Before haproxy.cfg (whose `crt` names the file); a new certificate alone goes in without a reload.
            shipped = args.tls_pem.apply(lambda pem: f"{pem}{CONFIG_TRAILER}\n")
            before_config = run_script(
                self,
                name,
                booted,
                "apply-tls-cert.sh",
                previous=install,
                budget=APPLY,
                args=(TLS_PEM_PATH,),
                stdin=shipped,
                shipped_hash=pulumi.Output.secret(shipped.apply(sha256_hex)),
                logging=command.remote.Logging.STDERR,
                secret_outputs=True,
            )
        # The rendered file carries the stats password: derived from a secret, it stays a secret Output,
        # travels on stdin (never on a command line), and even its hash is kept secret.
        haproxy_cfg = args.secrets.stats_password.apply(lambda password: render_lab_haproxy_cfg(lab, password))
        self.config_applied = run_script(
            self,
            name,
            booted,
            "apply-haproxy-cfg.sh",
            previous=before_config,
            budget=APPLY,
            stdin=haproxy_cfg,
            shipped_hash=haproxy_cfg.apply(sha256_hex),
            logging=command.remote.Logging.STDERR,
            secret_outputs=True,
        )
        last: command.remote.Command = self.config_applied
        if args.keepalived is not None:
            install_keepalived = run_script(
                self, name, booted, "install-keepalived.sh", previous=install, budget=INSTALL
            )
            # No secret in it (VRRPv3 has no authentication; the firewall admits the peer only).
            bundle = tar_gz_base64(keepalived_bundle(args.keepalived))
            # After haproxy.cfg: keepalived's track script asks the liveness listener that config adds.
            last = run_script(
                self,
                name,
                booted,
                "apply-keepalived-conf.sh",
                previous=install_keepalived,
                after=[self.config_applied],
                budget=APPLY,
                stdin=bundle,
                stdin_is_bundle=True,
                shipped_hash=sha256_hex(bundle),
                logging=command.remote.Logging.STDERR,
            )

        # Serving again: after each provisioning of a new instance, and after each reboot (the fingerprint).
        self.back = remote_step(
            self,
            f"{name}-back",
            booted.ssh,
            RootScript(
                lb_state,
                LB_STATE_SCRIPT,
                ("back",) if args.keepalived is None else ("back", args.keepalived.check_url),
            ),
            budget=HANDOFF,
            triggers=[sha256_hex(lb_state), fingerprint, booted.cloud_init.id],
            after=[last],
        )

        self.ssh = booted.ssh
        ip = str(host.ip)
        self.vm_id = booted.vm.vm_id
        self.ip = booted.vm.ip
        self.url = pulumi.Output.from_input(lab_site_url(ip, lab))
        self.stats_url = pulumi.Output.from_input(stats_url(ip, lab))
        self.register_outputs({"vm_id": self.vm_id, "ip": self.ip, "url": self.url, "stats_url": self.stats_url})
