"""The steps every lab VM goes through, shared by the load balancer and the web servers.

Why one place: both roles boot a LabVm, reach it over SSH as the cloud-init admin, wait for
cloud-init, then run our scripts in order. Day 2 rules (see the README's "Updates"):
- a step re-runs when its script or what it ships changes, and whenever the step before it re-ran
  (its id is in the step's triggers: pulumi-command gives every new run a new id);
- the first step re-runs whenever the VM is a new instance (its MAC address is in the triggers), so
  a VM re-created with the same inputs is provisioned again from scratch;
- every step has a Budget (components/remote.py): its custom timeouts, and the bound the VM enforces on
  its command line; only the first step dials SSH until it answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi
import pulumi_command as command

from components.remote import Budget, RootScript, connection
from components.rolling import Rolling
from components.vm import LabVm, LabVmArgs
from plan.model import Host, LabConfig
from render.shipping import script_text, sha256_hex

# Create: a fresh VM's boot, cloud-init and its package installs. Update: the same step on a VM that
# has long booted (its connection changed, e.g. a new key): dialing forever must end sooner.
WAIT_FOR_BOOT = Budget.minutes(30, update=5)


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
    script: RootScript,
    *,
    budget: Budget,
    triggers: Sequence[pulumi.Input[str]],
    after: pulumi.Input[Sequence[pulumi.Input[pulumi.Resource]]],
    stdin: pulumi.Input[str] | None = None,
    logging: command.remote.Logging | None = None,
    secret_outputs: bool = False,
    rolling: Rolling | None = None,
) -> command.remote.Command:
    """`script` as root on the VM, child of `owner`: runs after `after`, re-runs when `triggers` change,
    and is stopped on the VM when it runs past `budget` (the step then fails with a message saying so).

    Rolling steps (components/rolling.py), which run nothing on create (a new stack's first `pulumi up`
    dials nothing for them): `Rolling.on_update(fingerprint)` runs the script on update (an input changed:
    the fingerprint rides in its text), with the connection of this run; `Rolling.on_replace` runs it on
    the delete of a replacement (its triggers changed), with the connection of the previous run, and not
    when `owner` is deleted with it (a destroy: the VM is gone by then)."""
    line, update = script.command_line(budget), budget.on_update
    create: str | None = line
    update_line: str | None = None if update == budget else script.command_line(update)
    delete: str | None = None
    if rolling is not None:
        create, update_line = None, None
        if rolling.fingerprint is not None:
            update_line = script.marked(rolling.fingerprint).command_line(budget)
        else:
            delete = line
    return command.remote.Command(
        resource_name,
        connection=ssh,
        create=create,
        update=update_line,
        delete=delete,
        stdin=stdin,
        triggers=list(triggers),
        logging=logging,
        # pulumi-command would pass the previous run's output with SSH Setenv, which a stock sshd refuses
        # (AcceptEnv): a warning on every run, and no script of ours reads it.
        add_previous_output_in_env=False,
        opts=pulumi.ResourceOptions(
            parent=owner,
            depends_on=after,
            custom_timeouts=budget.custom_timeouts(),
            # A step fed a secret keeps what it echoes secret too (the engine would only mark `stdin`).
            additional_secret_outputs=["stdin", "stdout", "stderr"] if secret_outputs else None,
            delete_before_replace=True if delete is not None else None,
            deleted_with=owner if delete is not None else None,
        ),
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
    after: pulumi.Input[Sequence[pulumi.Input[pulumi.Resource]]] = (),
) -> BootedVm:
    """Declare the VM as a child of `owner` (after `after`: the rolling order), then wait (dialing SSH until
    it answers) for cloud-init."""
    vm = LabVm(
        f"{name}-machine",
        LabVmArgs(lab=lab, host=host, role=role, image_id=image_id, after=after),
        pulumi.ResourceOptions(parent=owner),
    )
    text = script_text("wait-for-cloud-init.sh")
    cloud_init = remote_step(
        owner,
        f"{name}-cloud-init",
        connection(host, lab.ssh, private_key, wait_for_boot=True),
        RootScript(text, "wait-for-cloud-init.sh"),
        budget=WAIT_FOR_BOOT,
        # A new VM instance (new MAC address) starts the whole chain of steps again.
        triggers=[sha256_hex(text), vm.instance],
        after=[vm],
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
    budget: Budget,
    after: Sequence[pulumi.Resource] = (),
    stdin: pulumi.Input[str] | None = None,
    stdin_is_bundle: bool = False,
    shipped_hash: pulumi.Input[str] | None = None,
    logging: command.remote.Logging | None = None,
    args: tuple[str, ...] = (),
    secret_outputs: bool = False,
) -> command.remote.Command:
    """Run files/scripts/<script> as root on the VM after `previous` (and `after`); re-run per
    script_triggers. With `stdin_is_bundle`, stdin is a bundle of files (render.shipping) and the
    script gets their directory as its argument."""
    return remote_step(
        owner,
        f"{name}-{script.removesuffix('.sh')}",
        booted.ssh,
        RootScript(script_text(script), script, args, bundle=stdin_is_bundle),
        budget=budget,
        triggers=script_triggers(script, previous, shipped_hash),
        after=[previous, *after],
        stdin=stdin,
        logging=logging,
        secret_outputs=secret_outputs,
    )
