"""Rolling replacements and reboots: the steps that take a VM out of service before the engine deletes or
the provider reboots it, and the order that makes the VMs go one at a time (docs/day2.md, section 13).

Engine and pulumi-command mechanics used rather than fought (the steps: components/provisioning.py
remote_step):
- a resource is registered only once its dependencies' registrations returned: a VM that depends on a
  step (`pause`) is rebooted by the provider, or deleted for its replacement, only after that step ran;
- a web server's `pause` (on each load balancer) runs nothing on create and drains on update: the VM's
  disruption fingerprint (components/vm.py: what makes the provider reboot it or the engine re-create it)
  rides in its update text, so it drains exactly when the VM is about to go, with this run's connection
  (the load balancers go first: after a key rotation they are already rebuilt with the new key);
- a load balancer's `pause` (in a pair) runs nothing on create or update and hands the virtual IP off on
  delete; its triggers hold the fingerprint and it is delete-before-replace, so a fingerprint change deletes
  it first, with the connection it was created with (the key the VM was built with, even in a key rotation).
  It is deleted with its LoadBalancer component: a destroy skips it (the VM is gone by then);
- a replaced step's dependents through `depends_on` only are not replaced (calculateDependentReplacements in
  pulumi's step_generator.go looks at property dependencies): the VM waits for its pause, nothing more;
- the order between VMs holds only once the stack is deployed (`Previous.deployed`, read by __main__ from
  the stack's own previous outputs with the engine's `readStackOutputs` invoke, which leaves no resource in
  the state): a new stack's first `pulumi up` stays parallel. `depends_on` is no input: the order appearing
  after the first up changes no step.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import pulumi

from components.remote import Budget

# Hand the virtual IP off (at most a few seconds) or wait for a load balancer to serve again after a boot.
HANDOFF = Budget.minutes(5)
LB_STATE_SCRIPT = "load-balancer-state.sh"
# The builtin invoke that reads a stack's outputs (pulumi's resource/deploy/builtins.go): no resource.
READ_STACK_OUTPUTS = "pulumi:pulumi:readStackOutputs"
DEPLOYED = "deployed"
READ_ATTEMPTS = 10  # about 4.5 s of retries in all


@dataclass(frozen=True)
class Rolling:
    """How a rolling step runs (components/provisioning.py remote_step): nothing on create, and then
    on update when `fingerprint` is set (it rides in the update's text), else on a replacement's delete."""

    fingerprint: str | None = None

    @staticmethod
    def on_update(fingerprint: str) -> Rolling:
        return Rolling(fingerprint)

    @staticmethod
    def on_replace() -> Rolling:
        return Rolling(None)


@dataclass(frozen=True, kw_only=True)
class Previous:
    """What the stack's previous deployment tells this run (__main__ reads its own outputs)."""

    deployed: frozenset[str]
    """The host keys the stack deployed before (empty for a new stack, or one built before this version)."""

    @property
    def rolling(self) -> bool:
        """True once the stack is deployed: VMs then go one at a time."""
        return bool(self.deployed)


NEW_STACK = Previous(deployed=frozenset())


def read_previous() -> Previous:
    """This stack's own outputs of its last deployment, through the engine's builtin invoke (under the unit
    tests' mocks: what they answer). A stack the backend has no outputs for is a new one.

    The engine reads the stack's checkpoint while it may be writing it (the file backend: a first `pulumi up`
    writes the new stack resource as the program starts): "failed to load checkpoint: EOF" was seen, under
    load, in five first ups of the suite (tests/test_disk_speed.py, tests/test_role.py). A read that fails so
    is tried again. A checkpoint written during this run still holds the previous outputs: the stack resource
    keeps them (a same step, pulumi's step.go SameStep.Apply) until the program registers its own."""
    name = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    for attempt in range(1, READ_ATTEMPTS + 1):
        try:
            result = pulumi.runtime.invoke(READ_STACK_OUTPUTS, {"name": name})
            break
        except Exception as error:
            if "failed to load checkpoint" not in str(error) or attempt == READ_ATTEMPTS:
                raise
            time.sleep(0.1 * attempt)
    outputs = (result.value or {}).get("outputs") or {}
    keys = outputs.get(DEPLOYED)
    return Previous(deployed=frozenset(keys) if isinstance(keys, list) else frozenset())


def when(rolling: bool, resources: Sequence[pulumi.Resource]) -> list[pulumi.Resource]:
    """`resources` as dependencies once the stack is deployed, none before."""
    return list(resources) if rolling else []
