"""`haproxy-lab:tls`: HTTPS at the edge, read and checked like the rest of the plan, every problem by its key.

Why apart from plan.parse: the certificate checks need `cryptography` and the names the plan gives the site.
A brought certificate is refused here when expired, under 2048-bit RSA, or not naming the site's and each load
balancer's address; its key is a secret that plan.config reads, and checks against it with check_private_key.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Sequence
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from plan import values as v
from plan.model import PROJECT, Haproxy, Host, LabConfig, Tls

TLS_KEYS = ("enabled", "certificate", "redirectHttp", "httpsPort")
TLS_PRIVATE_KEY = "tlsPrivateKey"
HTTPS_PORT = 443
MIN_RSA_BITS = 2048
MAX_PEM = 65_536
_BRING = (
    "a PEM chain, server certificate first: "
    "`pulumi config set --path 'haproxy-lab:tls.certificate' \"$(cat chain.pem)\"`"
)


def _pem_chain(value: Any) -> str:
    text = v.text(max_len=MAX_PEM)(value)
    try:
        x509.load_pem_x509_certificates(text.encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        raise ValueError("is not a PEM certificate chain") from None
    return text


def parse_tls(
    r: v.Reader,
    raw_any: Any,
    haproxy: Haproxy | None,
    hosts: Sequence[tuple[str, Host]],
    virtual_ip: ipaddress.IPv4Address | None,
) -> tuple[Tls | None, bool]:
    """The `tls` object ({} or {enabled: true}: a generated certificate), or None when unset or disabled; a
    brought certificate checked against the load balancers among `hosts` (key, host) and the virtual IP.

    Returns the settings and whether that part of the plan is usable."""
    tls, ok = _read_tls(r, raw_any, haproxy)
    balancers = [(key, host) for key, host in hosts if key.startswith("loadBalancer")]
    check_certificate(r, tls, site_addresses(balancers, virtual_ip))
    return tls, ok


def _read_tls(r: v.Reader, raw_any: Any, haproxy: Haproxy | None) -> tuple[Tls | None, bool]:
    if raw_any is None:
        return None, True
    if not isinstance(raw_any, dict):
        r.fail("tls", f"is {v.kind(raw_any)}", "an object: {} for a generated certificate, or {certificate: ...}")
        return None, False
    r.unknown_keys(raw_any, "tls", TLS_KEYS)
    enabled = r.value(raw_any, "tls", "enabled", v.boolean, "true or false", True)
    redirect = r.value(raw_any, "tls", "redirectHttp", v.boolean, "true (301 to HTTPS, and HSTS) or false", False)
    port = r.value(raw_any, "tls", "httpsPort", v.integer(1, 65535), "a TCP port from 1 to 65535", HTTPS_PORT)
    certificate = (
        r.value(raw_any, "tls", "certificate", _pem_chain, _BRING) if raw_any.get("certificate") is not None else None
    )
    if port is not None:
        shown = r.show("tls", port)
        if port == v.SSH_PORT:
            r.fail("tls.httpsPort", f"{shown} is SSH's port", "a port sshd does not use, e.g. 443")
        taken = () if haproxy is None else (("frontendPort", haproxy.frontend_port), ("statsPort", haproxy.stats_port))
        for name, other in taken:
            if port == other:
                r.fail("tls.httpsPort", f"{shown} is also haproxy.{name}", "a port of its own, e.g. 443")
    if enabled is None or redirect is None or port is None or (raw_any.get("certificate") and certificate is None):
        return None, False
    if not enabled:
        return None, True
    return Tls(https_port=port, redirect_http=redirect, certificate=certificate), True


def site_addresses(
    load_balancers: Sequence[tuple[str, Host]], virtual_ip: ipaddress.IPv4Address | None
) -> list[tuple[str, ipaddress.IPv4Address]]:
    """The addresses the certificate must name, each with the key that sets it: the site's (the virtual IP of
    a pair) and every load balancer's own (each serves its stats page)."""
    found = [] if virtual_ip is None else [("loadBalancer.virtualIp", virtual_ip)]
    return found + [(f"{key}.ip", host.ip) for key, host in load_balancers]


def certificate_names(lab: LabConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The generated certificate's DNS names (`<lb name>.<network.domain>`) and IP addresses."""
    hosts = [(host.name, host) for host in lab.load_balancers]
    dns = tuple(f"{host.name.lower()}.{lab.network.domain}" for host in lab.load_balancers)
    return dns, tuple(str(ip) for _, ip in site_addresses(hosts, lab.virtual_ip))


def check_certificate(
    r: v.Reader,
    tls: Tls | None,
    addresses: Sequence[tuple[str, ipaddress.IPv4Address]],
    now: datetime.datetime | None = None,
) -> None:
    """A brought certificate: in its validity period, a strong enough key, naming every address clients use."""
    if tls is None or tls.certificate is None:
        return
    leaf = x509.load_pem_x509_certificates(tls.certificate.encode("ascii"))[0]
    now = now or datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc <= now:
        expired = leaf.not_valid_after_utc.date().isoformat()
        r.fail("tls.certificate", f"expired on {expired}", "a certificate valid today (renew it), or tls: {}")
    elif leaf.not_valid_before_utc > now:
        r.fail("tls.certificate", "is not valid yet", "a certificate valid today")
    key = leaf.public_key()
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < MIN_RSA_BITS:
        r.fail(
            "tls.certificate",
            f"has a {key.key_size}-bit RSA key",
            f"an RSA key of {MIN_RSA_BITS} bits or more, or ECDSA",
        )
    elif not isinstance(key, (rsa.RSAPublicKey, ec.EllipticCurvePublicKey)):
        r.fail("tls.certificate", "has a key that is neither RSA nor ECDSA", "an RSA (2048+ bits) or ECDSA key")
    try:
        named = set(
            leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
                x509.IPAddress
            )
        )
    except x509.ExtensionNotFound:
        named = set()
    missing = [f"{ip} ({key})" for key, ip in addresses if ip not in named]
    if missing:
        r.fail(
            "tls.certificate",
            f"does not name {', '.join(missing)} in its subjectAltName",
            "a certificate listing every address clients and admins use, as IP entries",
        )


def check_private_key(certificate: str, private_key: str) -> list[str]:
    """Problems with the brought key (never printed): not a PEM key, or not the certificate's."""
    key_name = f"{PROJECT}:{TLS_PRIVATE_KEY}"
    try:
        key = serialization.load_pem_private_key(private_key.encode("ascii"), password=None)
    except (ValueError, TypeError, UnicodeEncodeError):
        return [
            f"{key_name}: is not an unencrypted PEM private key; expected the certificate's key: "
            f"`pulumi config set --secret {key_name} < server.key`"
        ]
    leaf = x509.load_pem_x509_certificates(certificate.encode("ascii"))[0]
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        return [
            f"{key_name}: does not match the public key of {PROJECT}:tls.certificate; expected the key the "
            "certificate was issued for"
        ]
    return []
