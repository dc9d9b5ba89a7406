"""The steps every lab VM goes through, shared by the load balancer and the web servers.

Why one place: both roles boot a LabVm, reach it over SSH as the cloud-init admin, wait for
cloud-init, then run our scripts in order. Day 2 rules (see the README's "Updates"):
- a step re-runs when its script or what it ships changes, and whenever the step before it re-ran
  (its id is in the step's triggers: pulumi-command gives every new run a new id);
- the first step re-runs whenever the VM is a new instance (its MAC address is in the triggers), so
  a VM re-created with the same inputs is provisioned again from scratch;
- every step has create/update/delete timeouts, and only the first one dials SSH until it answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.remote import WAIT_FOR_BOOT, connection, sudo_script, sudo_script_with_bundle, timeouts
from components.vm import LabVm, LabVmArgs
from plan.model import Host, LabConfig
from render.shipping import script_text, sha256_hex


@dataclass(frozen=True)
class BootedVm:
    """A VM of the plan, how to reach it, and the step that waited for its cloud-init to finish."""

    vm: LabVm
    ssh: command.remote.ConnectionArgs
    cloud_init: command.remote.Command


def remote_step(
    owner: pulumi.ComponentResource,
    resource_name: str,
    ssh: command.remote.ConnectionArgs,
    create: str,
    *,
    triggers: Sequence[pulumi.Input[str]],
    after: Sequence[pulumi.Resource],
    timeout_minutes: int,
    stdin: pulumi.Input[str] | None = None,
    logging: command.remote.Logging | None = None,
) -> command.remote.Command:
    """One remote command, child of `owner`: runs after `after`, re-runs when `triggers` change, and
    fails instead of hanging after `timeout_minutes`."""
    return command.remote.Command(
        resource_name,
        connection=ssh,
        create=create,
        stdin=stdin,
        triggers=list(triggers),
        logging=logging,
        opts=pulumi.ResourceOptions(parent=owner, depends_on=list(after), custom_timeouts=timeouts(timeout_minutes)),
    )


def boot_vm(
    owner: pulumi.ComponentResource,
    name: str,
    *,
    lab: LabConfig,
    host: Host,
    role: str,
    image_id: pulumi.Input[str] | None,
    private_key: pulumi.Output[str],
) -> BootedVm:
    """Declare the VM as a child of `owner`, then wait (dialing SSH until it answers) for cloud-init."""
    vm = LabVm(
        f"{name}-machine",
        LabVmArgs(lab=lab, host=host, role=role, image_id=image_id),
        pulumi.ResourceOptions(parent=owner),
    )
    text = script_text("wait-for-cloud-init.sh")
    cloud_init = command.remote.Command(
        f"{name}-cloud-init",
        connection=connection(host, lab.ssh, private_key, wait_for_boot=True),
        create=sudo_script(text, "wait-for-cloud-init.sh"),
        # A new VM instance (new MAC address) starts the whole chain of steps again.
        triggers=[sha256_hex(text), vm.instance],
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[vm], custom_timeouts=WAIT_FOR_BOOT),
    )
    return BootedVm(vm=vm, ssh=connection(host, lab.ssh, private_key), cloud_init=cloud_init)


def script_triggers(
    script: str, previous: command.remote.Command, shipped_hash: pulumi.Input[str] | None = None
) -> list[pulumi.Input[str]]:
    """When a step re-runs: its script's text, what it ships, or a new run of the step before it."""
    return [sha256_hex(script_text(script)), *([] if shipped_hash is None else [shipped_hash]), previous.id]


def run_script(
    owner: pulumi.ComponentResource,
    name: str,
    booted: BootedVm,
    script: str,
    *,
    previous: command.remote.Command,
    timeout_minutes: int,
    after: Sequence[pulumi.Resource] = (),
    stdin: pulumi.Input[str] | None = None,
    stdin_is_bundle: bool = False,
    shipped_hash: pulumi.Input[str] | None = None,
    logging: command.remote.Logging | None = None,
) -> command.remote.Command:
    """Run files/scripts/<script> as root on the VM after `previous` (and `after`); re-run per
    script_triggers. With `stdin_is_bundle`, stdin is a bundle of files (render.shipping) and the
    script gets their directory as its argument."""
    text = script_text(script)
    return remote_step(
        owner,
        f"{name}-{script.removesuffix('.sh')}",
        booted.ssh,
        sudo_script_with_bundle(text, script) if stdin_is_bundle else sudo_script(text, script),
        triggers=script_triggers(script, previous, shipped_hash),
        after=[previous, *after],
        timeout_minutes=timeout_minutes,
        stdin=stdin,
        logging=logging,
    )
