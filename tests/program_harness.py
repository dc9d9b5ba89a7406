"""What the program tests share: running the program on a raw plan under mocks, and reading what it registered
(a component's remote commands, a shipped bundle, dependencies, parents). The type tokens: tests/pulumi_harness.py.

Why a module of its own: test modules import it, never each other (tests/pulumi_harness.py runs the mocks).
"""

from __future__ import annotations

import base64
import io
import tarfile
from typing import Any

import yaml

from tests.pulumi_harness import COMMAND, VM, Registered, Run, run_program, stack_config, unwrap

LAB = "haproxy-lab"  # the Lab component's name: every other resource lives inside it


def evaluate(plan: dict[str, Any], **kwargs: Any) -> Run:
    """Run the program on a raw plan (stack config values) under mocks."""
    config, secret_keys = stack_config(plan, **kwargs)
    return run_program(config, secret_keys)


def vm_named(run: Run, name: str) -> Registered:
    return next(r for r in run.of_type(VM) if r.inputs["name"] == name)


def commands_of(run: Run, component: str) -> dict[str, Registered]:
    """The remote commands parented to a component, keyed by their name's last part."""
    return {
        r.name.removeprefix(f"{component}-"): r for r in run.of_type(COMMAND) if run.by_urn(r.parent).name == component
    }


def unpack(stdin: Any) -> dict[str, str]:
    """The files of a bundle a command ships on stdin (base64 tar.gz), by path."""
    files: dict[str, str] = {}
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(unwrap(stdin))), mode="r:gz") as tar:
        for member in tar.getmembers():
            extracted = tar.extractfile(member)
            assert extracted is not None
            files[member.name] = extracted.read().decode()
    return files


def bundle_of(run: Run, host: str) -> dict[str, str]:
    """The files a web server's deploy command ships, unpacked from its stdin."""
    return unpack(commands_of(run, f"haproxy-lab-{host}")["deploy-webapp"].inputs["stdin"])


def compose_of(run: Run, host: str) -> dict[str, Any]:
    return dict(yaml.safe_load(bundle_of(run, host)["compose.yaml"]))


def ancestors(run: Run, resource: Registered) -> set[str]:
    """The names of every component above `resource`, up to (not including) the stack."""
    names: set[str] = set()
    while resource.parent and "::pulumi:pulumi:Stack::" not in resource.parent:
        resource = run.by_urn(resource.parent)
        names.add(resource.name)
    return names


def depends_on(run: Run, resource: Registered, name: str) -> bool:
    return any(run.by_urn(urn).name == name for urn in resource.dependencies)


def assert_parented_and_uniquely_named(run: Run) -> None:
    """Names are unique; every resource but the Lab lives inside it; a resource's parent is a component."""
    names = [r.name for r in run.resources]
    assert len(names) == len(set(names))
    for resource in run.resources:
        if resource.name != LAB:
            assert LAB in ancestors(run, resource), f"{resource.name} is not inside the Lab component"
    for custom in (r for r in run.resources if r.custom):
        assert not run.by_urn(custom.parent).custom, f"{custom.name}'s parent must be a component"
