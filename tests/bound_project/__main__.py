"""Remote steps declared by the program's own helper (components.provisioning.remote_step), with budgets
of a few seconds that only this test project uses (tests/test_step_bounds_engine.py).

Config: `connection` (host, port, user), the secret `privateKey`, and `steps`: a map of step name to
`script` (its text), `stdin`, `budgetSeconds` and `graceSeconds`. The repository is on PYTHONPATH.
"""

from __future__ import annotations

from typing import Any

import pulumi
import pulumi_command as command

from components.provisioning import remote_step
from components.remote import Budget, RootScript

config = pulumi.Config()
target: dict[str, Any] = config.require_object("connection")
ssh = command.remote.ConnectionArgs(
    host=target["host"],
    port=target["port"],
    user=target["user"],
    private_key=config.require_secret("privateKey"),
    dial_error_limit=2,
    per_dial_timeout=5,
)


class Steps(pulumi.ComponentResource):
    def __init__(self, name: str) -> None:
        super().__init__("bound-test:index:Steps", name)
        for step, spec in config.require_object("steps").items():
            budget = Budget(seconds=spec["budgetSeconds"], grace_seconds=spec["graceSeconds"])
            ran = remote_step(
                self,
                step,
                ssh,
                RootScript(spec["script"], f"{step}.sh"),
                budget=budget,
                triggers=[],
                after=[],
                stdin=spec.get("stdin"),
            )
            pulumi.export(step, ran.stdout)


Steps("steps")
