"""Shared fixtures: the dev stack's validated plan (see tests/plans.py for the raw plans)."""

from __future__ import annotations

import pytest

from plan.model import LabConfig
from plan.stack_file import load_stack_file


@pytest.fixture(scope="session")
def dev() -> LabConfig:
    """The dev stack (the report's plan), validated."""
    return load_stack_file("dev")
