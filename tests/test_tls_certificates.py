"""The generated material (render/certificates.py) and the dynamic provider that keeps it in state
(components/tls.py): stable while nothing changes, a new server certificate from the same CA when the names
change or the end nears, a new CA only when the CA's own end nears.

Faults seen failing: `diff` always reporting changes (`test_an_unchanged_certificate_shows_no_diff`), RENEW_BEFORE
set to 0 (the 10-days-left certificate showed no diff), `update` making a new CA each time."""

from __future__ import annotations

import datetime
from typing import Any

from cryptography import x509

from components.tls import CertificateProvider, issue_material
from render.certificates import RENEW_BEFORE, Pem, due_for_renewal, issue_server, make_ca, serial_hex

NAMES: dict[str, Any] = {
    "dns_names": ["haproxy-sam.mvgroup.local"],
    "ip_addresses": ["10.0.0.30"],
    "key_type": "ecdsa-p256",
}
NOW = datetime.datetime.now(datetime.UTC)


def test_a_created_certificate_names_the_site_and_chains_to_its_ca() -> None:
    outs = CertificateProvider().create(dict(NAMES)).outs
    assert outs is not None
    leaf = x509.load_pem_x509_certificate(outs["certificate"].encode())
    ca = x509.load_pem_x509_certificate(outs["ca_certificate"].encode())
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["haproxy-sam.mvgroup.local"]
    assert [str(ip) for ip in names.get_values_for_type(x509.IPAddress)] == ["10.0.0.30"]
    assert outs["serial"] == serial_hex(outs["certificate"])
    assert "PRIVATE KEY" in outs["private_key"]


def test_an_unchanged_certificate_shows_no_diff() -> None:
    outs = issue_material(dict(NAMES), None)
    assert not CertificateProvider().diff("id", outs, dict(NAMES)).changes


def test_new_names_give_a_new_server_certificate_from_the_same_ca() -> None:
    outs = issue_material(dict(NAMES), None)
    news = {**NAMES, "ip_addresses": ["10.0.0.30", "10.0.0.33"]}
    assert CertificateProvider().diff("id", outs, news).changes
    updated = CertificateProvider().update("id", outs, news).outs
    assert updated is not None
    assert updated["ca_certificate"] == outs["ca_certificate"]
    assert updated["serial"] != outs["serial"]


def test_a_certificate_near_its_end_is_renewed_and_its_ca_kept() -> None:
    ca = make_ca(NOW)
    old = issue_server(ca, NAMES["dns_names"], NAMES["ip_addresses"], NOW - datetime.timedelta(days=387))
    assert due_for_renewal(old.certificate, NOW)
    assert not due_for_renewal(old.certificate, NOW - RENEW_BEFORE)
    outs = {**NAMES, "ca_certificate": ca.certificate, "ca_private_key": ca.private_key}
    outs |= {"certificate": old.certificate, "private_key": old.private_key, "serial": serial_hex(old.certificate)}
    assert CertificateProvider().diff("id", outs, dict(NAMES)).changes
    renewed = CertificateProvider().update("id", outs, dict(NAMES)).outs
    assert renewed is not None
    assert renewed["ca_certificate"] == ca.certificate
    assert not due_for_renewal(renewed["certificate"], NOW)


def test_a_ca_near_its_end_is_replaced() -> None:
    ca = make_ca(NOW - datetime.timedelta(days=3640))
    server = issue_server(ca, NAMES["dns_names"], NAMES["ip_addresses"], NOW)
    outs = {**NAMES, "ca_certificate": ca.certificate, "ca_private_key": ca.private_key}
    outs |= {"certificate": server.certificate, "private_key": server.private_key, "serial": "x"}
    assert CertificateProvider().diff("id", outs, dict(NAMES)).changes
    renewed = CertificateProvider().update("id", outs, dict(NAMES)).outs
    assert renewed is not None
    assert renewed["ca_certificate"] != ca.certificate
    assert Pem(renewed["certificate"], renewed["private_key"]).certificate != server.certificate
