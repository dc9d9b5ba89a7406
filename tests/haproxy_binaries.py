"""Where the tests find the HAProxy binaries that bracket the lab VMs' 2.8: Debian's 2.6 and a 3.0 build.

tools/build-haproxy3.sh builds 3.0 from Debian trixie's upstream tarball into a cache outside the
repository; CI always has it, a developer machine may not (then those checks are skipped, not faked).
"""

from __future__ import annotations

import datetime
import os
import shutil
from pathlib import Path

import pytest

from benchmark.tls_study import HAPROXY3

DEFAULT_HAPROXY3 = HAPROXY3


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


def checkable_cfg(cfg: str, directory: Path) -> Path:
    """`cfg` written to `directory/haproxy.cfg` for `haproxy -c`: the VM's certificate path (TLS on) pointing at a
    throw-away certificate there, since `haproxy -c` loads every `crt` it names."""
    from render.certificates import haproxy_pem, issue_server, make_ca
    from render.haproxy_cfg import TLS_PEM_PATH

    if TLS_PEM_PATH in cfg:
        now = datetime.datetime.now(datetime.UTC)
        pem = directory / "site.pem"
        pem.write_text(haproxy_pem(issue_server(make_ca(now), ["lab.test"], ["198.18.0.30"], now)), encoding="utf-8")
        cfg = cfg.replace(TLS_PEM_PATH, str(pem))
    path = directory / "haproxy.cfg"
    path.write_text(cfg, encoding="utf-8")
    return path
