"""The rolling order as the real engine plans it (issue 17 item 4): an SSH key rotation (every VM re-created)
and a `vm.cores` change (every VM rebooted by the provider) of the dev and ha stacks, previewed from their
deployed state (tests/engine_state.py) with the real CLI, language host, bpg's provider and the command
stand-in (plan only: nothing runs). The order is the engine's event order: the program registers a resource
only once its dependencies' registrations returned, and the engine deletes a delete-before-replace
resource's dependents first.

What must hold: no web server's VM is deleted (or rebooted) before the previous one is ready again; the
load balancers go first (the second of the pair, then the first), each one only once the previous VM serves
again; a web server is drained on every HAProxy (its `pause` is updated: the drain runs) before its VM goes,
and a load balancer of a pair hands the virtual IP off (its `pause` is deleted for its replacement: the
handoff runs, with the connection of the state) before its VM goes. The data path of those steps:
tests/test_load_balancer_state.py, tests/test_haproxy_server_state.py.
"""

from __future__ import annotations

import copy
import itertools
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from e2e.pve_running import RunningPve, running_pve
from tests.engine_harness import REPO, Engine, Workspace
from tests.engine_state import import_planned_state, import_state

pytestmark = pytest.mark.timeout(900)

STACKS: dict[str, list[str]] = {
    # The rolling order (components/lab.py): load balancers first, the standby before the other.
    "dev": ["haproxy-sam", "web1-sam", "web2-sam"],
    "ha": ["haproxy2-sam", "haproxy1-sam", "web1-sam", "web2-sam"],
}


def plan_of(stack: str) -> dict[str, Any]:
    config = yaml.safe_load((REPO / f"Pulumi.{stack}.yaml").read_text())["config"]
    return {k: v for k, v in config.items() if k.startswith("haproxy-lab:")}


@pytest.fixture(scope="module")
def fake(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPve]:
    with running_pve(tmp_path_factory.mktemp("fake-pve")) as running:
        yield running


@pytest.fixture(scope="module")
def states(
    tmp_path_factory: pytest.TempPathFactory, pulumi_engine: Engine, fake: RunningPve
) -> dict[str, list[dict[str, Any]]]:
    """Each stack's state as this program deployed it (its outputs say so), built once."""
    built = {}
    for stack in STACKS:
        workspace = Workspace(tmp_path_factory.mktemp(f"{stack}-state"), pulumi_engine)
        workspace.init_stack(fake.endpoint, plan_of(stack))
        plan = {k.removeprefix("haproxy-lab:"): v for k, v in plan_of(stack).items()}
        built[stack] = import_planned_state(workspace, plan)
    return built


def deployed(
    tmp_path: Path, pulumi_engine: Engine, fake: RunningPve, states: dict[str, list[dict[str, Any]]], stack: str
) -> Workspace:
    workspace = Workspace(tmp_path / "ws", pulumi_engine)
    workspace.init_stack(fake.endpoint, plan_of(stack))
    import_state(workspace, copy.deepcopy(states[stack]))
    return workspace


def first(order: list[tuple[str, str]], ops: set[str], name: str) -> int:
    """Where the engine first takes one of these ops on this resource."""
    found = [index for index, (op, step) in enumerate(order) if op in ops and step == name]
    assert found, f"no {sorted(ops)} of {name} planned: {[step for step in order if step[1] == name]}"
    return found[0]


DELETE = {"delete-replaced"}
CREATE = {"create-replacement", "create"}
# A web server's pause drains on update; a load balancer's hands the virtual IP off on its replacement's delete.
TAKEN_OUT = {"update", "delete-replaced"}


def serving_again(host: str) -> str:
    """The step after which this VM serves again: a web server's ready on the last load balancer, a load
    balancer's back."""
    return f"haproxy-lab-{host}-{'ready' if host.startswith('web') else 'back'}"


def pauses_of(stack: str, host: str) -> list[str]:
    """The steps that take this VM out of service: a web server's drain on each load balancer, a load
    balancer's handoff in a pair (a single load balancer has nothing to hand off: its reboot is an outage)."""
    if host.startswith("web"):
        return ["pause", "standby-pause"] if stack == "ha" else ["pause"]
    return ["pause"] if stack == "ha" else []


@pytest.mark.parametrize("stack", list(STACKS))
def test_an_ssh_key_rotation_re_creates_one_vm_at_a_time(
    tmp_path: Path, pulumi_engine: Engine, fake: RunningPve, states: dict[str, list[dict[str, Any]]], stack: str
) -> None:
    workspace = deployed(tmp_path, pulumi_engine, fake, states, stack)
    ssh = plan_of(stack)["haproxy-lab:ssh"]
    ssh["publicKey"] = ssh["publicKey"].replace("AAAAIH0", "AAAAIH1")
    workspace.set_config("haproxy-lab:ssh", ssh)
    order = workspace.planned_order()
    hosts = STACKS[stack]
    deleted = {host: first(order, DELETE, f"haproxy-lab-{host}-machine-vm") for host in hosts}
    for before, after in itertools.pairwise(hosts):
        back = first(order, CREATE, serving_again(before))
        assert back < deleted[after], f"{after}'s VM deleted before {before} serves again"
    for index, host in enumerate(hosts):
        # Out of service (drained on the load balancers as they are by then, or the VIP handed off) after the
        # VM before it serves again, and before its own VM goes.
        for pause in pauses_of(stack, host):
            taken_out = first(order, TAKEN_OUT, f"haproxy-lab-{host}-{pause}")
            assert taken_out < deleted[host], f"{host}'s VM deleted before its {pause} ran"
            if index:
                assert first(order, CREATE, serving_again(hosts[index - 1])) < taken_out, f"{host} left too early"


@pytest.mark.parametrize("stack", list(STACKS))
def test_a_cores_change_reboots_one_vm_at_a_time(
    tmp_path: Path, pulumi_engine: Engine, fake: RunningPve, states: dict[str, list[dict[str, Any]]], stack: str
) -> None:
    workspace = deployed(tmp_path, pulumi_engine, fake, states, stack)
    workspace.set_config("haproxy-lab:vm", {**plan_of(stack)["haproxy-lab:vm"], "cores": 4})
    order = workspace.planned_order()
    hosts = STACKS[stack]
    rebooted = {host: first(order, {"update"}, f"haproxy-lab-{host}-machine-vm") for host in hosts}
    assert not [step for step in order if step[0] in DELETE and step[1].endswith("-machine-vm")], "no VM re-created"
    for host in hosts:
        back = first(order, CREATE, serving_again(host))
        assert rebooted[host] < back, f"{host} back in service before its reboot"
        for pause in pauses_of(stack, host):
            taken_out = first(order, TAKEN_OUT, f"haproxy-lab-{host}-{pause}")
            assert taken_out < rebooted[host], f"{host} rebooted in service"
    for before, after in itertools.pairwise(hosts):
        assert first(order, CREATE, serving_again(before)) < rebooted[after], f"{after} rebooted before {before}"


def test_the_first_up_of_a_new_stack_stays_parallel(tmp_path: Path, pulumi_engine: Engine, fake: RunningPve) -> None:
    """A new stack: no VM waits for another host (only for the image). The program's read of its own outputs
    is an invoke: no step; the cost of the gating there is that one read (timed, for docs/day2.md)."""
    workspace = Workspace(tmp_path / "ws", pulumi_engine)
    workspace.init_stack(fake.endpoint, plan_of("ha"))
    started = time.monotonic()
    steps = workspace.preview().json()["steps"]
    print(f"preview of a new ha stack: {time.monotonic() - started:.1f} s")
    urns = {step["urn"]: step["urn"].rsplit("::", 1)[1] for step in steps}
    for step in steps:
        name = urns[step["urn"]]
        if not name.endswith(("-machine-vm", "-machine-user-data")):
            continue
        host = name.removeprefix("haproxy-lab-").split("-machine-")[0]
        waits = {urns.get(urn, urn) for urn in step["newState"].get("dependencies", [])}
        others = {dep for dep in waits if not dep.startswith(f"haproxy-lab-{host}-")}
        assert others <= {"haproxy-lab-ubuntu-image"}, f"{name} waits for {others}"
    assert {step["op"] for step in steps} == {"create"}
