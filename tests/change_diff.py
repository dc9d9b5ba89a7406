"""Compare two evaluations of the program under mocks: which VMs a change re-creates, which remote
commands it runs again (tests/test_day2.py, tests/test_updates.py)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.plans import dev_raw
from tests.program_harness import evaluate
from tests.pulumi_harness import COMMAND, VM, Registered, Run, unwrap


def changed(mutate: Callable[[dict[str, Any]], None]) -> Run:
    plan = dev_raw()
    mutate(plan)
    return evaluate(plan)


def snippet_of(run: Run, host: str) -> Registered:
    return run.named(f"haproxy-lab-{host}-machine-user-data")


def triggers(command: Registered) -> Any:
    return unwrap(command.inputs["triggers"])


def all_steps(run: Run) -> dict[str, Registered]:
    return {c.name: c for c in run.of_type(COMMAND)}


def runs(before: Registered | None, after: Registered) -> bool:
    """Whether pulumi-command runs a script for this step between two runs: new, or its triggers differ (a
    replacement: the new `create`, and the old `delete`), or another input differs (an update: `update`, else
    `create`). A rolling step (components/rolling.py) has no `create`."""
    if before is None:
        return "create" in after.inputs
    if triggers(after) != triggers(before):
        return "create" in after.inputs or "delete" in before.inputs
    others = {key: value for key, value in after.inputs.items() if key != "triggers"}
    if others != {key: value for key, value in before.inputs.items() if key != "triggers"}:
        return "update" in after.inputs or "create" in after.inputs
    return False


def re_run_steps(before: Run, after: Run) -> set[str]:
    """The remote commands that run a script again (see `runs`)."""
    old = all_steps(before)
    return {name for name, step in all_steps(after).items() if runs(old.get(name), step)}


def re_created_vms(before: Run, after: Run) -> set[str]:
    """VMs whose user-data file id (ForceNew) changed, or that are new."""
    old = {vm.name: vm.inputs["initialization"]["userDataFileId"] for vm in before.of_type(VM)}
    return {vm.name for vm in after.of_type(VM) if old.get(vm.name) != vm.inputs["initialization"]["userDataFileId"]}
