"""Where the tests find the HAProxy binaries that bracket the lab VMs' 2.8: Debian's 2.6 and a 3.0 build.

tools/build-haproxy3.sh builds 3.0 from Debian trixie's upstream tarball into a cache outside the
repository; CI always has it, a developer machine may not (then those checks are skipped, not faked).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

DEFAULT_HAPROXY3 = Path("/var/cache/haproxy-lab/haproxy-3.0/haproxy")


def haproxy26() -> str:
    """Debian's haproxy on PATH (2.6 on bookworm)."""
    path = shutil.which("haproxy")
    if path is None:
        pytest.fail("haproxy is not installed: run tools/setup.sh (apt-get install haproxy)")
    return path


def haproxy30() -> str:
    """The HAProxy 3.0 build, from $HAPROXY3_BIN or the default cache; required under CI."""
    path = Path(os.environ.get("HAPROXY3_BIN", str(DEFAULT_HAPROXY3)))
    if path.is_file() and os.access(path, os.X_OK):
        return str(path)
    message = f"HAProxy 3.0 not found at {path}: run tools/build-haproxy3.sh"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
    raise AssertionError("unreachable")  # pragma: no cover


def all_haproxies() -> list[tuple[str, str]]:
    """(label, path) for every HAProxy a rendered config must pass `haproxy -c` on."""
    return [("2.6", haproxy26()), ("3.0", haproxy30())]
