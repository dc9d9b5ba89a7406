"""apply-tls-cert.sh as a VM runs it (dash, includes inlined): the certificate file root-only, truncated or
mismatched uploads refused with the live file untouched, nothing printed of the key, and a run cut between the
swap and the push finished by the next one against the real HAProxy (2.6 and 3.0).

Faults seen failing: the key/certificate comparison removed (the mismatched pair went in), the pending marker
never checked (the cut run's certificate was never pushed: HAProxy kept the old serial)."""

from __future__ import annotations

import datetime
import os
import socket
import stat
import subprocess
from pathlib import Path

import pytest

from plan.model import LabConfig
from rehearsal.load import peer_serial
from rehearsal.tls import client_context, next_certificate
from render.certificates import haproxy_pem, issue_server, make_ca, serial_hex
from render.shipping import CONFIG_TRAILER, script_text
from tests.haproxy_binaries import all_haproxies
from tests.test_tls_lab import tls_lab

pytestmark = pytest.mark.timeout(120)
SCRIPT = "apply-tls-cert.sh"
NOW = datetime.datetime.now(datetime.UTC)


def run(
    live: Path, stdin: str, socket: str = "absent.sock", cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["dash", "-c", script_text(SCRIPT), SCRIPT, str(live)],
        input=stdin,
        capture_output=True,
        text=True,
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "HAPROXY_ADMIN_SOCKET": socket},
        cwd=cwd or live.parent.parent,
        timeout=60,
        check=False,
    )


def pem() -> str:
    return haproxy_pem(issue_server(make_ca(NOW), ["lab.test"], ["198.18.0.30"], NOW))


def test_the_certificate_is_root_only_and_never_printed(tmp_path: Path) -> None:
    live = tmp_path / "tls" / "site.pem"
    text = pem()
    first = run(live, f"{text}{CONFIG_TRAILER}\n")
    assert first.returncode == 0, first.stderr
    assert "certificate replaced" in first.stdout
    assert "the file is read at its next start" in first.stdout
    assert stat.S_IMODE(live.stat().st_mode) == 0o600
    assert stat.S_IMODE(live.parent.stat().st_mode) == 0o700
    assert live.read_text() == f"{text}{CONFIG_TRAILER}\n"
    again = run(live, f"{text}{CONFIG_TRAILER}\n")
    assert again.stdout.strip() == "certificate unchanged: nothing to do"
    key_lines = text.split("-----BEGIN PRIVATE KEY-----")[1].splitlines()[1:-1]
    for output in (first.stdout + first.stderr, again.stdout + again.stderr):
        assert not any(line in output for line in key_lines if line)
    assert sorted(os.listdir(live.parent)) == ["site.pem"], "no staged copy, no marker left"


@pytest.mark.parametrize(
    ("upload", "reason"),
    [
        ("truncated", "does not end with the line"),
        ("junk", "openssl finds no certificate or no private key"),
        ("mismatched", "the private key does not match the certificate"),
    ],
)
def test_bad_uploads_leave_the_live_file_untouched(tmp_path: Path, upload: str, reason: str) -> None:
    live = tmp_path / "tls" / "site.pem"
    good = f"{pem()}{CONFIG_TRAILER}\n"
    assert run(live, good).returncode == 0
    other = pem()
    bad = {
        "truncated": good[: len(good) // 2],
        "junk": f"not a certificate\n{CONFIG_TRAILER}\n",
        "mismatched": f"{other.split('-----BEGIN PRIVATE KEY-----')[0]}-----BEGIN PRIVATE KEY-----"
        f"{good.split('-----BEGIN PRIVATE KEY-----')[1]}",
    }[upload]
    refused = run(live, bad)
    assert refused.returncode == 1
    assert reason in refused.stderr
    assert live.read_text() == good
    assert sorted(os.listdir(live.parent)) == ["site.pem"], "no staged copy left"


@pytest.mark.parametrize("label", [label for label, _ in all_haproxies()])
def test_a_push_cut_short_is_finished_by_the_next_run(dev: LabConfig, label: str, tmp_path: Path) -> None:
    with tls_lab(dev, dict(all_haproxies())[label], tmp_path) as lab:
        assert lab.lb.settings is not None
        assert lab.lb.settings.tls is not None
        assert lab.lb.ca_file is not None
        live = Path(lab.lb.settings.tls.certificate)
        new = next_certificate(lab.lb.ca_file, ["lab.test"], [lab.lb.host])
        # What a run cut between its swap and its push leaves: the new file in place, the marker beside it.
        live.write_text(f"{new}{CONFIG_TRAILER}\n")
        (live.parent / ".site.pem.reload-pending").touch()
        assert served_serial(lab.lb.host, lab.lb.https_port, lab.lb.ca_file) != serial_hex(new)
        finished = run(live, f"{new}{CONFIG_TRAILER}\n", socket=lab.lb.admin_socket or "", cwd=lab.workdir)
        assert finished.returncode == 0, finished.stderr
        assert "push to HAProxy was cut short: pushing it" in finished.stdout
        assert "HAProxy serves the new certificate (runtime API, no reload)" in finished.stdout
        assert served_serial(lab.lb.host, lab.lb.https_port, lab.lb.ca_file) == serial_hex(new)
        assert not (live.parent / ".site.pem.reload-pending").exists()


def served_serial(host: str, port: int | None, ca_file: Path) -> str:
    assert port is not None
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        client_context(ca_file).wrap_socket(raw, server_hostname=host) as tls,
    ):
        return peer_serial(tls)
