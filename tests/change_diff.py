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


def re_run_steps(before: Run, after: Run) -> set[str]:
    """The remote commands whose triggers differ (pulumi-command replaces them: they run again)."""
    old = all_steps(before)
    return {name for name, step in all_steps(after).items() if name not in old or triggers(step) != triggers(old[name])}


def re_created_vms(before: Run, after: Run) -> set[str]:
    """VMs whose user-data file id (ForceNew) changed, or that are new."""
    old = {vm.name: vm.inputs["initialization"]["userDataFileId"] for vm in before.of_type(VM)}
    return {vm.name for vm in after.of_type(VM) if old.get(vm.name) != vm.inputs["initialization"]["userDataFileId"]}
