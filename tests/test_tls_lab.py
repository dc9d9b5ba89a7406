"""HTTPS on a real lab (real HAProxy 2.6 and 3.0, the real web app on loopback), with the rehearsal's TLS rows:
HTTPS with h2 and bounded streams, TLS 1.0/1.1 refused, the redirect, stats over TLS only, and a certificate
rotation through apply-tls-cert.sh under 16 clients opening fresh verified handshakes.

Faults seen failing: ssl-min-ver TLSv1.0 with the ciphers at @SECLEVEL=0 (`https`: TLS 1.0 ACCEPTED), the
runtime push left out of apply-tls-cert.sh (rotation: 4253 requests, every one on the old serial, no switch), the
stats bind without `ssl` (the lab's TLS stats client: WRONG_VERSION_NUMBER, plain HTTP there)."""

from __future__ import annotations

import contextlib
import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from plan.model import LabConfig, Tls
from rehearsal import checks
from rehearsal.lab_scripts import apply_config
from rehearsal.load import connect
from rehearsal.local_lab import LocalLab
from rehearsal.loopback import rehearsal_setup
from rehearsal.stats import stats_rows
from rehearsal.tls import client_context, https_row, rotation, stats_tls_row
from render.haproxy_cfg import TLS_CIPHERS, render_haproxy_cfg
from tests.haproxy_binaries import all_haproxies

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]


@contextlib.contextmanager
def tls_lab(plan: LabConfig, binary: str, workdir: Path) -> Iterator[LocalLab]:
    setup = rehearsal_setup(plan, 2, haproxy_bin=binary, tls_dir=workdir / "tls")
    with LocalLab(setup.lb, setup.servers, workdir) as lab:
        lab.start()
        yield lab


@pytest.fixture(params=[label for label, _ in all_haproxies()])
def binary(request: pytest.FixtureRequest) -> str:
    return dict(all_haproxies())[request.param]


def test_https_rows_and_a_rotation_under_load_lose_no_request(dev: LabConfig, binary: str, tmp_path: Path) -> None:
    with tls_lab(dev, binary, tmp_path) as lab:
        https = https_row(lab)
        assert https.passed, https.figures
        assert "ALPN h2; HTTP/2 max streams 16; TLS 1.0 refused, TLS 1.1 refused; plain HTTP -> 200" in https.figures
        stats = stats_tls_row(lab)
        assert stats.passed, stats.figures
        rotated = rotation(lab, seconds=6.0)
        row = rotated.check()
        assert row.passed, row.figures
        assert not rotated.load.failed
        serials = [o.serial for o in rotated.load.outcomes]
        assert serials.count(rotated.old_serial) > 0
        assert serials.count(rotated.new_serial) > 0
        drill = checks.fault_drill(lab, 1, "crash", seconds=5.0, https=True)
        assert drill.failed_after_fault == 0, drill.errors


def test_plain_http_redirects_with_hsts_when_asked(dev: LabConfig, binary: str, tmp_path: Path) -> None:
    plan = dataclasses.replace(dev, tls=Tls(https_port=443, redirect_http=True))
    with tls_lab(plan, binary, tmp_path) as lab:
        https = https_row(lab)
        assert https.passed, https.figures
        # The rehearsal's HTTPS port is a free one, not 443: the redirect names it.
        assert f"plain HTTP -> 301 https://127.0.0.30:{lab.lb.https_port}/; HSTS max-age=31536000" in https.figures


def test_the_old_protocols_row_fails_when_the_server_allows_them(dev: LabConfig, binary: str, tmp_path: Path) -> None:
    with tls_lab(dev, binary, tmp_path) as lab:
        assert lab.lb.settings is not None
        permissive = render_haproxy_cfg(lab.lb.settings).replace("ssl-min-ver TLSv1.2", "ssl-min-ver TLSv1.0")
        permissive = permissive.replace(TLS_CIPHERS, f"{TLS_CIPHERS}:ECDHE-ECDSA-AES128-SHA:@SECLEVEL=0")
        applied = apply_config(lab, permissive)
        assert applied.returncode == 0, applied.stderr
        https = https_row(lab)
        assert not https.passed
        assert "TLS 1.0 ACCEPTED as TLSv1" in https.figures


def test_no_request_body_reaches_a_server_over_http2(dev: LabConfig, binary: str, tmp_path: Path) -> None:
    """HTTP/2 carries a body in DATA frames without Content-Length or Transfer-Encoding: the header rules alone let
    it through (seen: curl --http2 with a chunked POST got the app's 405, so a server read it)."""
    with tls_lab(dev, binary, tmp_path) as lab:
        assert lab.lb.ca_file is not None
        before = stats_rows(lab.stats_csv(), lab.lb.backend)["BACKEND"]["stot"]
        url = f"https://{lab.lb.host}:{lab.lb.https_port}/"
        for body in (
            ["--data-binary", "@-"],
            ["-X", "POST", "-H", "Transfer-Encoding: chunked", "--data-binary", "@-"],
        ):
            sent = subprocess.run(
                [
                    *("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--http2"),
                    "--cacert",
                    str(lab.lb.ca_file),
                    *body,
                    url,
                ],
                input=b"a body",
                capture_output=True,
                timeout=30,
                check=False,
            )
            assert sent.stdout.decode() in ("413", "000"), "refused by HAProxy (curl may see the stream reset first)"
        assert stats_rows(lab.stats_csv(), lab.lb.backend)["BACKEND"]["stot"] == before
        get = subprocess.run(
            ["curl", "-s", "--http2", "--cacert", str(lab.lb.ca_file), url],
            capture_output=True,
            timeout=30,
            check=False,
        )
        assert get.stdout.decode() in lab.messages


# Answers X-Forwarded-Proto as HAProxy sent it (its message when asked directly, as LocalLab checks).
_ECHO = """
import http.server, sys
class Echo(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        body = self.headers.get("X-Forwarded-Proto", sys.argv[3]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        pass
http.server.ThreadingHTTPServer((sys.argv[1], int(sys.argv[2])), Echo).serve_forever()
"""


def test_the_servers_learn_the_scheme_from_haproxy_alone(dev: LabConfig, binary: str, tmp_path: Path) -> None:
    """Faults seen failing: the `set-header X-Forwarded-Proto` lines removed (the client's own 'https' passed over
    plain HTTP)."""
    setup = rehearsal_setup(dev, 2, haproxy_bin=binary, tls_dir=tmp_path / "tls")
    echoes = [
        dataclasses.replace(
            server, argv=(sys.executable, "-c", _ECHO, server.host, str(server.port), server.message), env={}, cwd=None
        )
        for server in setup.servers
    ]
    with LocalLab(setup.lb, echoes, tmp_path) as lab:
        lab.start()
        assert lab.lb.ca_file is not None
        forged = {"X-Forwarded-Proto": "https"}
        plain = connect(lab.lb.host, lab.lb.port, 5, None, None)
        plain.request("GET", "/", headers=forged)
        assert plain.getresponse().read() == b"http"
        plain.close()
        tls = connect(lab.lb.host, lab.lb.https_port or 0, 5, None, client_context(lab.lb.ca_file))
        tls.request("GET", "/", headers={"X-Forwarded-Proto": "http"})
        assert tls.getresponse().read() == b"https"
        tls.close()
