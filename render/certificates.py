"""The lab's generated TLS material as PEM text: a lab CA, and the server certificate it signs for the site.

Why one pure module: the dynamic resource (components/tls.py) keeps this material in the stack's state, while the
rehearsal, the benchmark and the tests make their own with the same recipe. The key type was chosen by the
benchmark's TLS study (docs/benchmark.md, "TLS"): ECDSA P-256.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

KEY_TYPES = ("ecdsa-p256", "rsa-2048")
KEY_TYPE = "ecdsa-p256"
CA_DAYS = 3650
SERVER_DAYS = 397  # under the 398 days browsers accept for a server certificate
RENEW_BEFORE = datetime.timedelta(days=30)  # a `pulumi up` within 30 days of the end issues a new one
_BACKDATE = datetime.timedelta(minutes=5)  # clients whose clocks lag a little still accept a fresh one

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


@dataclass(frozen=True)
class Pem:
    """A certificate and its private key, PEM text each."""

    certificate: str
    private_key: str


def new_key(key_type: str = KEY_TYPE) -> PrivateKey:
    if key_type == "ecdsa-p256":
        return ec.generate_private_key(ec.SECP256R1())
    if key_type == "rsa-2048":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    raise ValueError(f"unknown key type {key_type!r}; expected one of {', '.join(KEY_TYPES)}")


def _key_pem(key: PrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "haproxy-lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def make_ca(now: datetime.datetime, label: str = "haproxy-lab CA", key_type: str = KEY_TYPE) -> Pem:
    """A self-signed CA that may sign server certificates only (pathlen 0)."""
    key = new_key(key_type)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(label))
        .issuer_name(_name(label))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), _key_pem(key))


def issue_server(
    ca: Pem,
    dns_names: Sequence[str],
    ip_addresses: Sequence[str],
    now: datetime.datetime,
    key_type: str = KEY_TYPE,
    days: int = SERVER_DAYS,
) -> Pem:
    """A server certificate for these names, signed by `ca`, with a new key."""
    ca_cert = x509.load_pem_x509_certificate(ca.certificate.encode("ascii"))
    ca_key = serialization.load_pem_private_key(ca.private_key.encode("ascii"), password=None)
    if not isinstance(ca_key, (ec.EllipticCurvePrivateKey, rsa.RSAPrivateKey)):
        raise TypeError("the CA key is neither ECDSA nor RSA")
    key = new_key(key_type)
    names: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    names += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ip_addresses]
    common = dns_names[0] if dns_names else ip_addresses[0]
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(min(now + datetime.timedelta(days=days), ca_cert.not_valid_after_utc))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return Pem(cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), _key_pem(key))


def not_after(certificate: str) -> datetime.datetime:
    return x509.load_pem_x509_certificate(certificate.encode("ascii")).not_valid_after_utc


def serial_hex(certificate: str) -> str:
    """The serial as `openssl x509 -serial` and HAProxy's `show ssl cert` print it (upper-case hex)."""
    return f"{x509.load_pem_x509_certificate(certificate.encode('ascii')).serial_number:X}"


def due_for_renewal(certificate: str, now: datetime.datetime) -> bool:
    """Within RENEW_BEFORE of its end (or past it): the next `pulumi up` renews it."""
    return now >= not_after(certificate) - RENEW_BEFORE


def haproxy_pem(server: Pem, chain: str = "") -> str:
    """What HAProxy's `crt` file holds: the certificate, its chain (issuers, not the root), then the key."""
    parts = [server.certificate, chain, server.private_key]
    return "".join(part if part.endswith("\n") else f"{part}\n" for part in parts if part)
