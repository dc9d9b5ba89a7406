"""The site's certificate: generated (a lab CA and a server certificate kept in the stack's state as secret
outputs of a Pulumi dynamic resource) or brought (`tls.certificate` + the secret `tlsPrivateKey`).

Why a dynamic resource: the pulumi-tls plugin cannot be had here (docs/engine.md), and material made in the
program itself would change at every run. A dynamic resource's outputs live in the state: a second `pulumi up`
finds them unchanged (diff: same names, not due), and one within RENEW_BEFORE of the end issues a new server
certificate from the same CA (render/certificates.py). The engine serves it with pulumi-resource-pulumi-python.
"""

from __future__ import annotations

import datetime
import uuid
from dataclasses import dataclass
from typing import Any

import pulumi
from pulumi.dynamic import CreateResult, DiffResult, ReadResult, Resource, ResourceProvider, UpdateResult

from plan.model import LabConfig, LabSecrets
from plan.tls import certificate_names
from render.certificates import KEY_TYPE, Pem, due_for_renewal, haproxy_pem, issue_server, make_ca, serial_hex

INPUTS = ("dns_names", "ip_addresses", "key_type")
SECRET_OUTPUTS = ("ca_private_key", "private_key")


def issue_material(props: dict[str, Any], old: dict[str, Any] | None) -> dict[str, Any]:
    """A new server certificate for `props`, from the old CA unless there is none or it is due itself."""
    now = datetime.datetime.now(datetime.UTC)
    ca = None if old is None else Pem(old["ca_certificate"], old["ca_private_key"])
    if ca is None or due_for_renewal(ca.certificate, now):
        ca = make_ca(now, key_type=props["key_type"])
    server = issue_server(ca, props["dns_names"], props["ip_addresses"], now, key_type=props["key_type"])
    return {
        **{key: props[key] for key in INPUTS},
        "ca_certificate": ca.certificate,
        "ca_private_key": ca.private_key,
        "certificate": server.certificate,
        "private_key": server.private_key,
        "serial": serial_hex(server.certificate),
    }


class CertificateProvider(ResourceProvider):
    """Create: a CA and a server certificate; update (names changed, or due): a new server certificate."""

    def create(self, props: dict[str, Any]) -> CreateResult:
        return CreateResult(id_=uuid.uuid4().hex, outs=issue_material(props, None))

    def diff(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> DiffResult:
        now = datetime.datetime.now(datetime.UTC)
        changed = any(olds.get(key) != news.get(key) for key in INPUTS)
        due = due_for_renewal(olds["certificate"], now) or due_for_renewal(olds["ca_certificate"], now)
        return DiffResult(changes=changed or due, replaces=[], delete_before_replace=False)

    def update(self, _id: str, olds: dict[str, Any], news: dict[str, Any]) -> UpdateResult:
        return UpdateResult(outs=issue_material(news, olds))

    def read(self, id_: str, props: dict[str, Any]) -> ReadResult:
        return ReadResult(id_=id_, outs=props)


class LabCertificate(Resource, module="tls", name="LabCertificate"):
    """A lab CA and a server certificate for these names; the two private keys are secret outputs."""

    ca_certificate: pulumi.Output[str]
    certificate: pulumi.Output[str]
    private_key: pulumi.Output[str]
    serial: pulumi.Output[str]

    def __init__(
        self, name: str, dns_names: list[str], ip_addresses: list[str], opts: pulumi.ResourceOptions | None = None
    ) -> None:
        props: dict[str, Any] = {"dns_names": dns_names, "ip_addresses": ip_addresses, "key_type": KEY_TYPE}
        props |= dict.fromkeys(("ca_certificate", "ca_private_key", "certificate", "private_key", "serial"))
        secret = pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_OUTPUTS))
        super().__init__(CertificateProvider(), name, props, pulumi.ResourceOptions.merge(opts, secret))


@dataclass(frozen=True)
class SiteTls:
    """What the load balancers serve (certificate, chain and key as one secret PEM) and what clients trust."""

    haproxy_pem: pulumi.Output[str]
    ca_certificate: pulumi.Output[str] | None


def site_tls(name: str, lab: LabConfig, secrets: LabSecrets, parent: pulumi.Resource) -> SiteTls | None:
    """The site's certificate (None when TLS is off): one for the whole lab, so both LBs of a pair serve it."""
    if lab.tls is None:
        return None
    if lab.tls.certificate is not None:
        if secrets.tls_private_key is None:
            raise ValueError("a brought certificate without its key: plan.config refuses this")
        chain = lab.tls.certificate
        pem = secrets.tls_private_key.apply(lambda key: haproxy_pem(Pem(chain, key)))
        return SiteTls(haproxy_pem=pulumi.Output.secret(pem), ca_certificate=None)
    dns, ips = certificate_names(lab)
    cert = LabCertificate(f"{name}-certificate", list(dns), list(ips), pulumi.ResourceOptions(parent=parent))
    pem = pulumi.Output.all(cert.certificate, cert.private_key).apply(lambda pair: haproxy_pem(Pem(*pair)))
    return SiteTls(haproxy_pem=pulumi.Output.secret(pem), ca_certificate=cert.ca_certificate)
