"""Read a Pulumi.<stack>.yaml straight from disk into the validated model.

Why: the local rehearsal, the benchmark and the tests use the same plan as `pulumi up` without a
Pulumi engine; only the non-secret `haproxy-lab:` keys are read (secrets never live in that file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from plan.model import PROJECT, LabConfig
from plan.parse import parse_lab_config

REPO_ROOT = Path(__file__).resolve().parent.parent


def stack_file(stack: str) -> Path:
    """The path of Pulumi.<stack>.yaml at the top of the repository."""
    return REPO_ROOT / f"Pulumi.{stack}.yaml"


def raw_project_config(path: Path) -> dict[str, Any]:
    """The `haproxy-lab:` keys of a stack file, without their prefix, values as YAML gives them."""
    document = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    config = document.get("config") or {}
    prefix = f"{PROJECT}:"
    return {key[len(prefix) :]: value for key, value in config.items() if key.startswith(prefix)}


def load_stack_file(stack: str = "dev") -> LabConfig:
    """Parse and validate Pulumi.<stack>.yaml (raises ConfigError naming each bad key)."""
    return parse_lab_config(raw_project_config(stack_file(stack)))
