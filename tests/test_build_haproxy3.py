"""tools/build-haproxy3.sh's cache check.

Run as on a VM with fake system commands: tests/script_harness.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.script_harness import (
    REPO,
)

# --- tools/build-haproxy3.sh ------------------------------------------------------------------


@pytest.mark.parametrize(("reported", "cached"), [("3.0.11-9e587df", True), ("3.1.0", False)])
def test_build_haproxy3_cache_check(tmp_path: Path, reported: str, cached: bool) -> None:
    """An existing binary that reports 3.0 is reused as is; the build itself is not run here."""
    binary = tmp_path / "haproxy"
    binary.write_text(f'#!/bin/sh\necho "HAProxy version {reported} 2025/06/02 - https://haproxy.org/"\n')
    binary.chmod(0o755)
    before = binary.read_bytes()
    # Without the cache hit the script would go on to apt/dpkg: make that fail at once instead.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("dpkg-query", "apt-get", "curl"):
        (fake_bin / tool).write_text("#!/bin/sh\nexit 42\n")
        (fake_bin / tool).chmod(0o755)
    result = subprocess.run(
        ["sh", str(REPO / "tools" / "build-haproxy3.sh")],
        capture_output=True,
        text=True,
        env={"PATH": f"{fake_bin}:/usr/bin:/bin", "HAPROXY3_BIN": str(binary)},
        timeout=30,
        check=False,
    )
    assert (result.returncode == 0) is cached, result.stdout + result.stderr
    assert ("already built" in result.stdout) is cached
    assert binary.read_bytes() == before
