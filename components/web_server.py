"""A web-server VM: the VM, then Docker, then the Flask app built and started with docker compose.

Children: the LabVm, then remote commands: wait for cloud-init, install Docker Engine and the compose
plugin, and the app's rollout: drain this server in HAProxy (a command on the load balancer), deploy
the app bundle (files/webapp plus this server's compose file, on stdin; it waits for the app's health
check), then set the server ready in HAProxy again (waiting for its check to pass). The Lab chains
rollouts, one server at a time. On each load balancer too: `pause` (drains the server before its VM is
rebooted or re-created; ready runs after): components/rolling.py. Outputs: `vm_id`, `ip`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import pulumi
import pulumi_command as command

from components.provisioning import boot_vm, remote_step, run_script, script_triggers
from components.remote import Budget, RootScript
from components.rolling import NEW_STACK, Previous, Rolling, when
from components.vm import disruption_fingerprint
from plan.model import LabConfig, LabSecrets, WebServer
from render.shipping import script_text, sha256_hex, tar_gz_base64
from render.webapp import webapp_bundle

INSTALL = Budget.minutes(20)
DEPLOY = Budget.minutes(20)
# drain waits (bounded, in the script) for sessions to end; ready for the server's check to pass.
SERVER_STATE = Budget.minutes(10)
SERVER_STATE_SCRIPT = "haproxy-server-state.sh"


@dataclass(frozen=True, kw_only=True)
class LoadBalancerAccess:
    """How a web server's rollout reaches HAProxy: the load balancer's SSH connection, and the step
    after which its haproxy.cfg lists every server of the plan."""

    ssh: command.remote.ConnectionArgs
    config_applied: pulumi.Resource


@dataclass(frozen=True, kw_only=True)
class WebServerArgs:
    """The plan, which server, the secrets, the disk image, the load balancer, and what this server's
    rollout must wait for (the previous server's)."""

    lab: LabConfig
    server: WebServer
    secrets: LabSecrets
    image_id: pulumi.Input[str] | None
    load_balancers: tuple[LoadBalancerAccess, ...]
    """Each load balancer of the plan, in its order: the server is drained and set ready on each (in a pair,
    either may be the active one when the rollout runs)."""
    deploy_after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    previous: Previous = NEW_STACK
    roll_after: Sequence[pulumi.Resource] = field(default_factory=tuple)
    """Once deployed, this server's VM is rebooted or replaced only after these (the previous server's ready)."""


class WebServerVm(pulumi.ComponentResource):
    """One Flask web server in Docker, answering its own message on `GET /`."""

    vm_id: pulumi.Output[int]
    """The web server's Proxmox VM id."""
    ip: pulumi.Output[str]
    """Its static address."""
    deployed: command.remote.Command
    """The app deploy command."""
    rolled_out: command.remote.Command
    """The last step of this server's rollout (ready in HAProxy): the next server's rollout waits for it."""

    def __init__(self, name: str, args: WebServerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:lab:WebServer", name, None, opts)
        lab, server = args.lab, args.server
        state_text = script_text(SERVER_STATE_SCRIPT)
        drain = RootScript(state_text, SERVER_STATE_SCRIPT, ("drain", server.name))
        # In a pair, on both load balancers, one after the other; the first one's step names are unchanged.
        balancers = [
            (name if index == 0 else f"{name}-standby", access) for index, access in enumerate(args.load_balancers)
        ]
        fingerprint = disruption_fingerprint(lab, server)
        rolling = args.previous.rolling
        # Before the provider reboots this VM or the engine re-creates it: drained on every load balancer, with
        # this run's connection (the load balancers went first). Nothing on create: a new server is not served.
        pauses = [
            remote_step(
                self,
                f"{prefix}-pause",
                access.ssh,
                drain,
                budget=SERVER_STATE,
                triggers=[],
                after=when(rolling, [access.config_applied, *args.roll_after]),
                rolling=Rolling.on_update(fingerprint),
            )
            for prefix, access in balancers
        ]
        booted = boot_vm(
            self,
            name,
            lab=lab,
            host=server,
            role="web-server",
            image_id=args.image_id,
            private_key=args.secrets.ssh_private_key,
            # A new stack's VMs wait for nothing: its first `pulumi up` is parallel.
            after=when(rolling, pauses),
        )
        install = run_script(self, name, booted, "install-docker.sh", previous=booted.cloud_init, budget=INSTALL)
        # The app trusts X-Forwarded-For from the load balancers only (a comma-separated list).
        trusted = ",".join(str(host.ip) for host in lab.load_balancers)
        bundle = tar_gz_base64(webapp_bundle(server, trusted_proxies=trusted))
        bundle_hash = sha256_hex(bundle)

        # Drain and ready run exactly when the deploy does: drain's triggers are the deploy's, ready's the
        # deploy's new id. Drain waits for the load balancer's config, so HAProxy knows the server.
        drain_triggers = [sha256_hex(state_text), *script_triggers("deploy-webapp.sh", install, bundle_hash)]
        drains: list[command.remote.Command] = []
        for prefix, access in balancers:
            drains.append(
                remote_step(
                    self,
                    f"{prefix}-drain",
                    access.ssh,
                    drain,
                    budget=SERVER_STATE,
                    triggers=drain_triggers,
                    after=[access.config_applied, *args.deploy_after, *drains],
                )
            )
        self.deployed = run_script(
            self,
            name,
            booted,
            "deploy-webapp.sh",
            previous=install,
            after=drains,
            budget=DEPLOY,
            stdin=bundle,
            stdin_is_bundle=True,
            shipped_hash=bundle_hash,
        )
        readies: list[command.remote.Command] = []
        for prefix, access in balancers:
            readies.append(
                remote_step(
                    self,
                    f"{prefix}-ready",
                    access.ssh,
                    RootScript(state_text, SERVER_STATE_SCRIPT, ("ready", server.name)),
                    budget=SERVER_STATE,
                    # Also after each reboot or re-creation: the fingerprint.
                    triggers=[sha256_hex(state_text), self.deployed.id, fingerprint],
                    after=[self.deployed, *readies],
                )
            )
        self.rolled_out = readies[-1]

        self.vm_id = booted.vm.vm_id
        self.ip = booted.vm.ip
        self.register_outputs({"vm_id": self.vm_id, "ip": self.ip})
