"""Shared fixtures: the dev stack's validated plan (see tests/plans.py for the raw plans)."""

from __future__ import annotations

import pytest

from plan.model import LabConfig
from plan.stack_file import load_stack_file
from tests.engine_harness import Engine, engine

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
