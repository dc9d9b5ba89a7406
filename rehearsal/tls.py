"""HTTPS in the rehearsal: the lab's generated material on disk, client contexts that verify against its CA, and the
TLS rows: HTTPS with HTTP/2, old protocols refused, the redirect, stats over TLS only, a rotation under load.

Why the shipped pieces: the material comes from render/certificates.py (what the dynamic resource makes), the
rotation runs apply-tls-cert.sh against the running HAProxy's admin socket, as `pulumi up` does on a VM.
"""

from __future__ import annotations

import datetime
import http.client
import socket
import ssl
import struct
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from rehearsal.lab_scripts import SCRIPT_TIMEOUT, run_script
from rehearsal.load import FAIL_AFTER, LoadResult, connect, run_load
from rehearsal.local_lab import LocalLab
from rehearsal.results import CheckResult
from rehearsal.stats import basic_auth_header
from render.certificates import Pem, haproxy_pem, issue_server, make_ca, serial_hex
from render.shipping import CONFIG_TRAILER

CA_FILE, CA_KEY, SITE_PEM = "ca.pem", "ca.key", "site.pem"
AFTER_ROTATION = 2.0  # seconds of load at least after apply-tls-cert.sh returns: the switch must show
_HSTS = "Strict-Transport-Security"
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
_SETTINGS_MAX_CONCURRENT_STREAMS = 0x3


def write_material(directory: Path, dns_names: list[str], ip_addresses: list[str]) -> tuple[Path, Path]:
    """A lab CA and a server certificate in `directory` (0700): the CA file clients trust, HAProxy's PEM."""
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.UTC)
    ca = make_ca(now, label="haproxy-lab rehearsal CA")
    (directory / CA_FILE).write_text(ca.certificate, encoding="ascii")
    (directory / CA_KEY).write_text(ca.private_key, encoding="ascii")
    (directory / CA_KEY).chmod(0o600)
    site = directory / SITE_PEM
    site.write_text(haproxy_pem(issue_server(ca, dns_names, ip_addresses, now)), encoding="ascii")
    site.chmod(0o600)
    return directory / CA_FILE, site


def next_certificate(ca_file: Path, dns_names: list[str], ip_addresses: list[str]) -> str:
    """A new server certificate (and key) from the same CA, as HAProxy's PEM: what a renewal ships."""
    ca = Pem(ca_file.read_text(encoding="ascii"), (ca_file.parent / CA_KEY).read_text(encoding="ascii"))
    return haproxy_pem(issue_server(ca, dns_names, ip_addresses, datetime.datetime.now(datetime.UTC)))


def client_context(ca_file: Path, alpn: tuple[str, ...] = ("http/1.1",)) -> ssl.SSLContext:
    """Verifies the server against the lab CA alone (and its name: the address in the URL)."""
    context = ssl.create_default_context(cafile=str(ca_file))
    context.set_alpn_protocols(list(alpn))
    return context


def legacy_client(version: ssl.TLSVersion) -> ssl.SSLContext:
    """A client that offers only TLS 1.0 or 1.1, at OpenSSL security level 0 (this machine's default refuses them
    on the client side already): only the server's own settings can then refuse the handshake."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with warnings.catch_warnings():  # deprecated on purpose: the point is to offer them
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = context.maximum_version = version
    context.set_ciphers("ALL:@SECLEVEL=0")
    return context


def handshake(host: str, port: int, context: ssl.SSLContext) -> tuple[str | None, str | None, str]:
    """(negotiated protocol version, ALPN protocol, error) of one handshake."""
    try:
        with socket.create_connection((host, port), timeout=5) as raw:
            server_name = host if context.check_hostname else None
            with context.wrap_socket(raw, server_hostname=server_name) as tls:
                return tls.version(), tls.selected_alpn_protocol(), ""
    except (OSError, ssl.SSLError) as error:
        return None, None, type(error).__name__


def h2_max_streams(host: str, port: int, context: ssl.SSLContext) -> int | None:
    """SETTINGS_MAX_CONCURRENT_STREAMS from the server's first HTTP/2 SETTINGS frame (None if it sends none)."""
    with (
        socket.create_connection((host, port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname=host) as tls,
    ):
        tls.sendall(_H2_PREFACE + struct.pack(">I", 0)[1:] + b"\x04\x00" + b"\x00\x00\x00\x00")
        head = _read_exactly(tls, 9)
        length, kind = int.from_bytes(head[:3], "big"), head[3]
        payload = _read_exactly(tls, length)
    if kind != 0x4:
        return None
    for offset in range(0, length - 5, 6):
        key, value = struct.unpack(">HI", payload[offset : offset + 6])
        if key == _SETTINGS_MAX_CONCURRENT_STREAMS:
            return int(value)
    return None


def _read_exactly(sock: ssl.SSLSocket, count: int) -> bytes:
    data = b""
    while len(data) < count:
        chunk = sock.recv(count - len(data))
        if not chunk:
            raise ConnectionError("the server closed the HTTP/2 connection")
        data += chunk
    return data


def _get(
    conn: http.client.HTTPConnection, path: str, headers: dict[str, str] | None = None
) -> tuple[int, str, str, str]:
    """(status, Location header, body, Strict-Transport-Security header) of one GET; closes the connection."""
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read().decode("utf-8", "replace")
        return response.status, response.getheader("Location") or "", body, response.getheader(_HSTS) or ""
    finally:
        conn.close()


@dataclass(frozen=True)
class TlsLab:
    """Where the lab answers HTTPS and what a client trusts."""

    host: str
    https_port: int
    ca_file: Path
    redirect_http: bool


def tls_of(lab: LocalLab) -> TlsLab:
    spec = lab.lb
    if spec.https_port is None or spec.ca_file is None or spec.settings is None or spec.settings.tls is None:
        raise RuntimeError("this lab does not serve HTTPS")
    return TlsLab(spec.host, spec.https_port, spec.ca_file, spec.settings.tls.redirect_http)


def https_row(lab: LocalLab) -> CheckResult:
    """HTTPS answers with the page (verified against the lab CA); ALPN picks h2; HTTP/2 streams are bounded;
    TLS 1.0 and 1.1 are refused; plain HTTP redirects (301 + HSTS) when redirectHttp is on, else answers."""
    tls = tls_of(lab)
    status, _, body, hsts = _get(connect(tls.host, tls.https_port, FAIL_AFTER, None, client_context(tls.ca_file)), "/")
    page_ok = status == 200 and body in lab.messages
    _, alpn, _ = handshake(tls.host, tls.https_port, client_context(tls.ca_file, ("h2", "http/1.1")))
    streams = h2_max_streams(tls.host, tls.https_port, client_context(tls.ca_file, ("h2",)))
    old = {name: handshake(tls.host, tls.https_port, legacy_client(v)) for name, v in _OLD.items()}
    refused = all(version is None for version, _, _ in old.values())
    plain_status, location, _, plain_hsts = _get(connect(tls.host, lab.lb.port, FAIL_AFTER, None, None), "/")
    redirected = plain_status == 301 and location.startswith("https://") and bool(hsts) and not plain_hsts
    redirect_ok = redirected if tls.redirect_http else plain_status == 200 and not hsts
    passed = page_ok and alpn == "h2" and streams is not None and streams <= 128 and refused and redirect_ok
    accepted = ", ".join(f"{name} {'refused' if v is None else 'ACCEPTED as ' + v}" for name, (v, _, _) in old.items())
    figures = (
        f"GET / -> {status} {body!r} (CA verified); ALPN {alpn}; HTTP/2 max streams {streams}; {accepted}; "
        f"plain HTTP -> {plain_status}{' ' + location if location else ''}{'; HSTS ' + hsts if hsts else ''}"
    )
    return CheckResult("https", passed, figures)


_OLD = {"TLS 1.0": ssl.TLSVersion.TLSv1, "TLS 1.1": ssl.TLSVersion.TLSv1_1}


def stats_tls_row(lab: LocalLab) -> CheckResult:
    """Stats and /metrics answer over TLS with the credentials; plain HTTP on the stats port gets no answer."""
    tls = tls_of(lab)
    auth = {"Authorization": basic_auth_header(lab.lb.stats_user or "", lab.lb.stats_password or "")}
    context = client_context(tls.ca_file)
    csv_status, *_ = _get(connect(tls.host, lab.lb.stats_port, FAIL_AFTER, None, context), "/stats;csv", auth)
    metrics, *_ = _get(connect(tls.host, lab.lb.stats_port, FAIL_AFTER, None, context), "/metrics", auth)
    try:
        plain = str(_get(connect(tls.host, lab.lb.stats_port, FAIL_AFTER, None, None), "/stats;csv", auth)[0])
    except (OSError, http.client.HTTPException) as error:
        plain = f"no answer ({type(error).__name__})"
    passed = csv_status == 200 and metrics == 200 and plain.startswith("no answer")
    return CheckResult(
        "stats over TLS", passed, f"stats CSV -> {csv_status}, /metrics -> {metrics}; plain HTTP: {plain}"
    )


def rotate(lab: LocalLab, pem: str) -> str:
    """apply-tls-cert.sh with `pem` into the running lab (runtime API, no reload); raises with its stderr."""
    spec = lab.lb
    if spec.settings is None or spec.settings.tls is None or spec.admin_socket is None:
        raise RuntimeError("this lab has no certificate file or admin socket")
    env = {"HAPROXY_ADMIN_SOCKET": spec.admin_socket}
    done = run_script(
        lab, "apply-tls-cert.sh", spec.settings.tls.certificate, env=env, stdin=f"{pem}{CONFIG_TRAILER}\n"
    )
    if done.returncode != 0:
        raise RuntimeError(f"apply-tls-cert.sh failed (exit {done.returncode}): {done.stderr.strip()}")
    return done.stdout


@dataclass(frozen=True)
class Rotation:
    """A certificate rotation under load: what the clients saw."""

    load: LoadResult
    old_serial: str
    new_serial: str
    rotated_at: float

    @property
    def switched(self) -> bool:
        """Both serials seen, and after the rotation ended only the new one."""
        seen = [o.serial for o in self.load.outcomes if o.ok]
        late = {o.serial for o in self.load.outcomes if o.ok and o.start >= self.rotated_at}
        return self.old_serial in seen and self.new_serial in seen and late == {self.new_serial}

    def check(self) -> CheckResult:
        outcomes = self.load.outcomes
        old = sum(1 for o in outcomes if o.serial == self.old_serial)
        new = sum(1 for o in outcomes if o.serial == self.new_serial)
        figures = (
            f"{self.load.total} req on fresh handshakes (CA verified), failed {len(self.load.failed)}"
            f"{' (' + self.load.error_summary() + ')' if self.load.failed else ''}; serial {self.old_serial[:8]}... "
            f"{old} times, then {self.new_serial[:8]}... {new} times"
        )
        return CheckResult("tls rotation", not self.load.failed and self.switched, figures)


def rotation(lab: LocalLab, *, seconds: float = 10.0, concurrency: int = 16, rotate_at: float = 2.0) -> Rotation:
    """`concurrency` clients open a new verified HTTPS connection per request; at `rotate_at` a new certificate
    from the same CA goes in through apply-tls-cert.sh. The load runs `seconds` in all, and at least
    AFTER_ROTATION seconds after the script returns, however long it took (a loaded machine)."""
    tls = tls_of(lab)
    if lab.lb.settings is None or lab.lb.settings.tls is None:
        raise RuntimeError("this lab does not serve HTTPS")
    pem = next_certificate(tls.ca_file, [lab.lb.settings.health_host], [tls.host])
    old = serial_hex(Path(lab.lb.settings.tls.certificate).read_text(encoding="ascii"))
    box: list[LoadResult] = []
    context = client_context(tls.ca_file)
    stop = threading.Event()

    def load() -> None:
        box.append(
            run_load(
                tls.host,
                tls.https_port,
                concurrency=concurrency,
                seconds=seconds + SCRIPT_TIMEOUT,
                expected=lab.messages,
                context=context,
                fresh=True,
                stop=stop,
            )
        )

    thread = threading.Thread(target=load, name="rotation-load", daemon=True)
    begin = time.monotonic()
    thread.start()
    try:
        time.sleep(max(0.0, begin + rotate_at - time.monotonic()))
        rotate(lab, pem)
        rotated_at = time.monotonic()
        time.sleep(max(AFTER_ROTATION, begin + seconds - rotated_at))
    finally:
        stop.set()
        thread.join(timeout=seconds + SCRIPT_TIMEOUT + 30)
    if not box:
        raise RuntimeError("the load generator did not finish")
    return Rotation(box[0], old, serial_hex(pem), rotated_at)


def pair_row(serials: dict[str, str]) -> CheckResult:
    """--ha: the virtual IP and both load balancers' own addresses show one certificate, verified by the lab CA."""
    shown = ", ".join(f"{ip} {serial[:8]}..." for ip, serial in serials.items())
    return CheckResult(
        "same certificate", len(set(serials.values())) == 1 and len(serials) == 3, f"HTTPS (CA verified): {shown}"
    )
