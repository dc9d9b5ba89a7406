"""The steps every lab VM goes through, shared by the load balancer and the web servers.

Why one place: both roles boot a LabVm, reach it over SSH as the cloud-init admin, wait for
cloud-init, then run our scripts in order, each re-run only when its text (or what it ships)
changes. Keeping that here means the two components only say what is specific to their role.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.remote import WAIT_FOR_SSH, connection, sudo_script, sudo_script_with_bundle
from components.vm import LabVm, LabVmArgs
from plan.model import Host, LabConfig
from render.shipping import script_text, sha256_hex


@dataclass(frozen=True)
class BootedVm:
    """A VM of the plan, how to reach it, and the step that waited for its cloud-init to finish."""

    vm: LabVm
    ssh: command.remote.ConnectionArgs
    cloud_init: command.remote.Command


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
    ssh = connection(host, lab.ssh, private_key)
    cloud_init = command.remote.Command(
        f"{name}-cloud-init",
        connection=ssh,
        create=sudo_script(script_text("wait-for-cloud-init.sh"), "wait-for-cloud-init.sh"),
        opts=pulumi.ResourceOptions(parent=owner, depends_on=[vm], custom_timeouts=WAIT_FOR_SSH),
    )
    return BootedVm(vm=vm, ssh=ssh, cloud_init=cloud_init)


def run_script(
    owner: pulumi.ComponentResource,
    name: str,
    booted: BootedVm,
    script: str,
    *,
    after: Sequence[pulumi.Resource],
    stdin: pulumi.Input[str] | None = None,
    stdin_is_bundle: bool = False,
    shipped_hash: pulumi.Input[str] | None = None,
    timeouts: pulumi.CustomTimeouts | None = None,
    logging: command.remote.Logging | None = None,
) -> command.remote.Command:
    """Run files/scripts/<script> as root on the VM, after `after`; re-run when the script or what it
    ships changes (`shipped_hash`), never otherwise. With `stdin_is_bundle`, stdin is a bundle of files
    (bundle.py) and the script gets their directory as its argument."""
    text = script_text(script)
    create = sudo_script_with_bundle(text, script) if stdin_is_bundle else sudo_script(text, script)
    triggers: list[pulumi.Input[str]] = [sha256_hex(text)]
    if shipped_hash is not None:
        triggers.append(shipped_hash)
    return command.remote.Command(
        f"{name}-{script.removesuffix('.sh')}",
        connection=booted.ssh,
        create=create,
        stdin=stdin,
        triggers=triggers,
        logging=logging,
        opts=pulumi.ResourceOptions(parent=owner, depends_on=list(after), custom_timeouts=timeouts),
    )
