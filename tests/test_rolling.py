"""Rolling replacements and reboots (components/rolling.py), under mocks: what each step runs and what it
waits for. The engine's own order of a key rotation and a cores change: tests/test_engine_rolling.py.

A new stack declares no order between VMs (its first `pulumi up` stays parallel); once the stack's previous
outputs say it is deployed, the standby goes first, then the other load balancer, then each web server after
the previous one is ready again.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.plans import dev_raw, ha_raw
from tests.program_harness import commands_of
from tests.pulumi_harness import (
    COMMAND,
    SNIPPET,
    TEST_PRIVATE_KEY,
    VM,
    Registered,
    Run,
    run_program,
    stack_config,
    unwrap,
)

pytestmark = pytest.mark.timeout(180)


def previous_outputs(plan: dict[str, Any]) -> dict[str, Any]:
    """The outputs a deployment of `plan` left, as the next run reads them back."""
    lbs = [plan["loadBalancer"], *([plan["loadBalancer"]["standby"]] if "standby" in plan["loadBalancer"] else [])]
    keys = sorted(host.get("key", host["name"].lower()) for host in [*lbs, *plan["webServers"]])
    return {"deployed": keys}


def evaluate(plan: dict[str, Any], *, deployed: bool) -> Run:
    config, secret_keys = stack_config(plan)
    return run_program(config, secret_keys, previous=previous_outputs(plan) if deployed else None)


def names_under(run: Run, resource: Registered) -> set[str]:
    """The names of every resource `resource` depends on, directly or not."""
    seen: set[str] = set()
    registered = {r.urn for r in run.resources}
    pending = [urn for urn in resource.dependencies if urn in registered]
    while pending:
        dependency = run.by_urn(pending.pop())
        if dependency.name not in seen:
            seen.add(dependency.name)
            pending.extend(urn for urn in dependency.dependencies if urn in registered)
    return seen


@pytest.fixture(scope="module")
def runs() -> dict[str, Run]:
    return {
        f"{stack}-{'deployed' if deployed else 'new'}": evaluate(raw(), deployed=deployed)
        for stack, raw in (("dev", dev_raw), ("ha", ha_raw))
        for deployed in (False, True)
    }


VMS = {
    "dev": ["haproxy-sam", "web1-sam", "web2-sam"],
    "ha": ["haproxy2-sam", "haproxy1-sam", "web1-sam", "web2-sam"],  # the rolling order: the standby first
}


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_a_new_stack_provisions_every_vm_in_parallel(runs: dict[str, Run], stack: str) -> None:
    run = runs[f"{stack}-new"]
    for host in VMS[stack]:
        for resource in (
            run.named(f"haproxy-lab-{host}-machine-vm"),
            run.named(f"haproxy-lab-{host}-machine-user-data"),
        ):
            others = {name for name in names_under(run, resource) if not name.startswith(f"haproxy-lab-{host}-")}
            assert others <= {"haproxy-lab-ubuntu-image"}, f"{resource.name} waits for {sorted(others)}"
    for step in run.of_type(COMMAND):
        if step.name.endswith("-pause"):
            assert "create" not in step.inputs, f"{step.name}: a new stack has nothing to take out of service"


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_a_deployed_stack_replaces_and_reboots_one_vm_at_a_time(runs: dict[str, Run], stack: str) -> None:
    run = runs[f"{stack}-deployed"]
    order = VMS[stack]
    for index, host in enumerate(order):
        for kind in ("machine-vm", "machine-user-data"):
            resource = run.named(f"haproxy-lab-{host}-{kind}")
            waits = names_under(run, resource)
            for before in order[:index]:
                last = "ready" if before.startswith("web") else "back"
                assert f"haproxy-lab-{before}-{last}" in waits, f"{resource.name} must wait for {before}'s {last}"
            for after in order[index + 1 :]:
                assert not any(name.startswith(f"haproxy-lab-{after}-") for name in waits), (
                    f"{resource.name} must not wait for {after}"
                )


def test_each_web_server_is_drained_before_a_reboot_or_a_re_creation_on_every_load_balancer(
    runs: dict[str, Run],
) -> None:
    run = runs["ha-deployed"]
    for host, server in (("web1-sam", "WEB1-SAM"), ("web2-sam", "WEB2-SAM")):
        steps = commands_of(run, f"haproxy-lab-{host}")
        vm = run.named(f"haproxy-lab-{host}-machine-vm")
        fingerprint = unwrap(steps["ready"].inputs["triggers"])[-1]
        for prefix, lb_ip in (("", "10.0.0.33"), ("standby-", "10.0.0.34")):
            pause = steps[f"{prefix}pause"]
            # This run's connection: the load balancers went first (after a key rotation, with the new key).
            connection = unwrap(pause.inputs["connection"])
            assert (connection["host"], connection["privateKey"]) == (lb_ip, TEST_PRIVATE_KEY)
            # Before a reboot or a re-creation: the VM waits for it; it runs (update) when the VM's disruption
            # fingerprint, in its text, changes; nothing on create (a new stack), nothing on delete.
            assert pause.urn in vm.dependencies
            assert set(pause.inputs) & {"create", "delete"} == set()
            assert f" haproxy-server-state.sh drain {server} || " in pause.inputs["update"]
            assert f"# haproxy-lab: {fingerprint}" in pause.inputs["update"]
            assert unwrap(pause.inputs["triggers"]) == []


def test_the_load_balancers_hand_the_virtual_ip_off_before_a_reboot_or_a_re_creation(runs: dict[str, Run]) -> None:
    run = runs["ha-deployed"]
    for host, lb_ip in (("haproxy1-sam", "10.0.0.33"), ("haproxy2-sam", "10.0.0.34")):
        steps = commands_of(run, f"haproxy-lab-{host}")
        vm = run.named(f"haproxy-lab-{host}-machine-vm")
        pause, back = steps["pause"], steps["back"]
        assert pause.urn in vm.dependencies
        # Runs on the delete of its replacement (a new fingerprint), with the connection it was created with:
        # the state's, i.e. the key the VM was built with; not on a destroy (deleted with its component).
        assert set(pause.inputs) & {"create", "update"} == set()
        assert " load-balancer-state.sh handoff 10.0.0.30 || " in pause.inputs["delete"]
        assert pause.delete_before_replace
        assert pause.deleted_with == run.by_urn(pause.parent).urn
        assert run.by_urn(pause.parent).type == "haproxy-lab:lab:LoadBalancer"
        assert unwrap(pause.inputs["connection"])["host"] == lb_ip
        assert " load-balancer-state.sh back http://127.0.0.1:8405/haproxy-alive || " in back.inputs["create"]
        assert unwrap(pause.inputs["triggers"]) == unwrap(back.inputs["triggers"])[1:2]


def test_no_input_of_any_step_differs_between_a_new_stack_and_a_deployed_one(runs: dict[str, Run]) -> None:
    """The first `pulumi up` deploys the stack and the second reads that back: nothing but the order (depends_on,
    not an input) may change then, or the second up would run steps (a no-change preview would show them)."""
    for stack in ("dev", "ha"):
        new, deployed = runs[f"{stack}-new"], runs[f"{stack}-deployed"]
        assert {r.name for r in new.resources} == {r.name for r in deployed.resources}
        for resource in new.resources:
            other = deployed.named(resource.name)
            assert resource.inputs == other.inputs, resource.name
            assert (resource.delete_before_replace, resource.deleted_with) == (
                other.delete_before_replace,
                other.deleted_with,
            ), resource.name


def test_a_single_load_balancer_has_no_virtual_ip_to_hand_off(runs: dict[str, Run]) -> None:
    steps = commands_of(runs["dev-deployed"], "haproxy-lab-haproxy-sam")
    assert "pause" not in steps
    assert "handoff" not in steps
    assert " load-balancer-state.sh back || " in steps["back"].inputs["create"]


def test_the_disruption_fingerprint_follows_what_reboots_or_re_creates_a_vm() -> None:
    """cores, memory and cloud-init's DNS change the fingerprint of every VM (bpg reboots them), so does the
    SSH key (in the user-data: every VM re-created), a vmId only its VM's; the disk size does not (grown
    online)."""
    base = evaluate(dev_raw(), deployed=True)

    def fingerprints(run: Run) -> dict[str, Any]:
        return {
            host: unwrap(
                commands_of(run, f"haproxy-lab-{host}")["back" if host.startswith("haproxy") else "ready"].inputs[
                    "triggers"
                ]
            )
            for host in VMS["dev"]
        }

    before = fingerprints(base)
    for key, value, changes in (
        ("vm", {"cores": 4}, set(VMS["dev"])),
        ("vm", {"memoryMb": 4096}, set(VMS["dev"])),
        ("vm", {"diskGb": 40}, set()),
        ("network", {"dns": ["10.0.200.3"]}, set(VMS["dev"])),
        ("ssh", {"publicKey": dev_raw()["ssh"]["publicKey"].replace("AAAAIH0", "AAAAIH1")}, set(VMS["dev"])),
        ("loadBalancer", {"vmId": 150}, {"haproxy-sam"}),
    ):
        plan = dev_raw()
        plan[key].update(value)
        after = fingerprints(evaluate(plan, deployed=True))
        assert {host for host in before if before[host] != after[host]} == changes, (key, value)
    assert len(base.of_type(VM)) == len(base.of_type(SNIPPET)) == 3


def test_a_checkpoint_being_written_is_read_again() -> None:
    """The engine's read of the stack's outputs fails while the file backend writes the checkpoint ("failed to
    load checkpoint: EOF", seen under load): read again, the deployed stack still rolls; past the attempts, the
    error stands."""
    plan = dev_raw()
    config, secret_keys = stack_config(plan)
    run = run_program(config, secret_keys, previous=previous_outputs(plan), unreadable_checkpoint=3)
    vm = run.named("haproxy-lab-web2-sam-machine-vm")
    assert "haproxy-lab-web1-sam-ready" in names_under(run, vm), "read again: the order is there"
    failed = Run()
    with pytest.raises(Exception, match="failed to load checkpoint"):
        run_program(config, secret_keys, run=failed, previous=previous_outputs(plan), unreadable_checkpoint=10)
