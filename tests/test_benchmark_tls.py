"""The TLS study's parsers and its config (`python -m benchmark --tls`): `openssl speed` and `s_time` as OpenSSL 3.0
prints them, `haproxy -vv`'s OpenSSL lines, and the self-answering TLS frontend under `haproxy -c`."""

from __future__ import annotations

import subprocess
from pathlib import Path

from benchmark.tls_study import linked_openssl, parse_s_time, parse_speed, tls_ceiling_cfg
from tests.haproxy_binaries import all_haproxies, checkable_cfg

SPEED = """
                  sign    verify    sign/s verify/s
rsa 2048 bits 0.000247s 0.000016s   4053.2  60997.9
                              sign    verify    sign/s verify/s
 256 bits ecdsa (nistp256)   0.0000s   0.0001s  51440.3  16471.9
"""
S_TIME = """Collecting connection statistics for 3 seconds
****************

1203 connections in 1.32s; 911.36 connections/user sec, bytes read 0
1203 connections in 4 real seconds, 0 bytes read per connection
"""


def test_openssl_speed_and_s_time_are_read() -> None:
    assert parse_speed(SPEED) == {"rsa-2048": 4053.2, "ecdsa-p256": 51440.3}
    assert parse_s_time(S_TIME) == (1203, 4.0)


def test_each_haproxy_names_the_openssl_it_links() -> None:
    for _label, binary in all_haproxies():
        assert linked_openssl(binary).startswith("built with OpenSSL 3.")


def test_the_tls_ceiling_config_passes_haproxy_c(tmp_path: Path) -> None:
    cfg = tls_ceiling_cfg("127.0.0.29:18443", Path("/etc/haproxy/tls/site.pem"))
    path = checkable_cfg(cfg, tmp_path)
    for label, binary in all_haproxies():
        result = subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, check=False)
        assert result.returncode == 0, f"HAProxy {label}: {result.stderr}"
