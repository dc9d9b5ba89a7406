"""Every shell script shipped to the VMs: shellcheck-clean as written and as shipped, POSIX sh with set -eu.

Run as on a VM with fake system commands: tests/script_harness.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from render.shipping import script_text
from tests.script_harness import (
    REPO,
    SCRIPTS,
    shell_scripts,
    shellcheck,
    vm_scripts,
)

# --- static checks ----------------------------------------------------------------------------


def test_scripts_are_found() -> None:
    names = {p.name for p in shell_scripts()}
    assert {"wait-for-cloud-init.sh", "install-docker.sh", "apply-haproxy-cfg.sh", "build-haproxy3.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_clean(script: Path) -> None:
    first = script.read_text().splitlines()[0]
    dialect = ["-s", "sh"] if first in ("#!/bin/sh", "# shellcheck shell=sh") else []
    result = subprocess.run(
        [shellcheck(), *dialect, str(script)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", vm_scripts(), ids=lambda p: p.name)
def test_shellcheck_clean_as_shipped(script: Path) -> None:
    """What really runs on a VM is the script with its includes inlined: check that text too."""
    result = subprocess.run(
        [shellcheck(), "-s", "sh", "-"],
        input=script_text(script.name),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", vm_scripts(), ids=lambda p: p.name)
def test_vm_script_is_posix_sh_with_set_eu(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in (line.strip() for line in lines)
    assert lines[1].startswith("# "), "a header comment says what the script does and why"


def test_install_scripts_share_one_copy_of_the_apt_helpers() -> None:
    library = (SCRIPTS / "lib" / "apt.sh").read_text()
    for name in ("install-docker.sh", "install-haproxy.sh"):
        assert "apt_get()" not in (SCRIPTS / name).read_text(), f"{name} must include lib/apt.sh, not copy it"
        shipped = script_text(name)
        assert library in shipped
        assert "\n# haproxy-lab: include lib/" not in shipped, "every include line is replaced"
