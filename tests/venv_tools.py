"""A tool the dev dependency group installs (hadolint, Docker Compose), found in the venv first: a Debian copy
on PATH (docker-compose 1.x) must not win."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def venv_tool(name: str, install: str) -> str:
    """The venv's copy of a tool first (a Debian docker-compose 1.x on PATH must not win), else PATH."""
    candidate = VENV_BIN / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    found = shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: {install}")
    return found
