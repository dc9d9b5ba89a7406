"""The engine serves Python dynamic providers (pulumi.dynamic): tools/build-pulumi.sh installs the
Python SDK's pulumi-resource-pulumi-python beside the language host, and the engine starts it with the
project's virtualenv (docs/engine.md)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.engine_harness import STACK, Workspace, engine

pytestmark = pytest.mark.timeout(300)

PROJECT_SOURCE = Path(__file__).resolve().parent / "dynamic_project"


def test_a_dynamic_resource_is_created(tmp_path: Path) -> None:
    workspace = Workspace(tmp_path / "ws", engine(), PROJECT_SOURCE)
    workspace.pulumi("stack", "init", STACK)
    workspace.pulumi("up", "--yes", "--skip-preview", "--stack", STACK)
    outputs = workspace.pulumi("stack", "output", "--json", "--stack", STACK).json()
    assert outputs == {"text": "hello lab", "id": "greeting-lab"}
