"""The plans tests start from: the dev stack, and the same plan with N web servers (one numbering:
WEB<i>-SAM at 10.0.0.(30+i) answering "Serveur <i>", so N=2 is the dev stack's own pair)."""

from __future__ import annotations

import copy
from typing import Any

from plan.model import LabConfig
from plan.parse import parse_lab_config
from plan.stack_file import raw_project_config, stack_file


def dev_raw() -> dict[str, Any]:
    """The dev stack's `haproxy-lab:` keys as the stack file gives them (a fresh copy to mutate)."""
    return copy.deepcopy(raw_project_config(stack_file("dev")))


def ha_raw() -> dict[str, Any]:
    """The ha stack's raw `haproxy-lab:` config (Pulumi.ha.yaml), a fresh copy."""
    return copy.deepcopy(raw_project_config(stack_file("ha")))


def raw_with_servers(count: int) -> dict[str, Any]:
    """The dev plan with `count` web servers and no fixed vmIds on them."""
    raw = dev_raw()
    raw["webServers"] = [
        {"name": f"WEB{i}-SAM", "ip": f"10.0.0.{30 + i}", "message": f"Serveur {i}"} for i in range(1, count + 1)
    ]
    return raw


def lab_with_servers(count: int) -> LabConfig:
    """The validated model of raw_with_servers(count)."""
    return parse_lab_config(raw_with_servers(count))
