"""Shared fixtures: the dev stack's validated plan (see tests/plans.py for the raw plans)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from e2e.pve_running import RunningPve, running_pve
from plan.model import LabConfig
from plan.stack_file import load_stack_file
from tests.engine_harness import Engine, engine
from tests.lab_harness import LabFactory

# The shell-script tests' fixtures (fakes, signing_keys), shared by their modules.
pytest_plugins = ["tests.script_harness"]


@pytest.fixture(scope="session")
def dev() -> LabConfig:
    """The dev stack (the report's plan), validated."""
    return load_stack_file("dev")


@pytest.fixture(scope="session")
def pulumi_engine() -> Engine:
    """The real Pulumi engine (tests/engine_harness.py): fails under CI when it is missing, never skips there."""
    return engine()


@pytest.fixture(scope="module")
def pve(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPve]:
    """The fake Proxmox node (e2e/pve_running.py) with a token of exactly the README's role, for one module."""
    with running_pve(tmp_path_factory.mktemp("pve")) as running:
        yield running


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, pve: RunningPve) -> LabFactory:
    """Stacks of the repository's shapes on the module's fake node (tests/lab_harness.py)."""
    return LabFactory(tmp_path_factory.mktemp("stacks"), engine(), pve)
