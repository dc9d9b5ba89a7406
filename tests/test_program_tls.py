"""The program with `tls` on and off (under mocks): one certificate for the lab, shipped to each load balancer as a
secret on stdin before haproxy.cfg, the HTTPS port opened to clients, and the outputs in https.

Faults seen failing: the certificate step's `additional_secret_outputs` dropped (its stdout was no longer
marked), the pair given one certificate resource per load balancer (two different PEMs shipped)."""

from __future__ import annotations

from typing import Any

import pytest

from plan.parse import parse_lab_config
from render.firewall import load_balancer_rules
from render.haproxy_cfg import TLS_PEM_PATH
from render.shipping import CONFIG_TRAILER
from tests.plans import dev_raw, ha_raw
from tests.program_harness import commands_of, depends_on, evaluate
from tests.pulumi_harness import CERTIFICATE, TEST_API_TOKEN, TEST_PRIVATE_KEY, TEST_STATS_PASSWORD, is_secret, unwrap
from tests.tls_material import brought

pytestmark = pytest.mark.timeout(120)


def test_the_certificate_goes_to_the_load_balancer_as_a_secret_before_haproxy_cfg() -> None:
    run = evaluate(dev_raw())
    (certificate,) = run.of_type(CERTIFICATE)
    assert certificate.inputs["dns_names"] == ["haproxy-sam.mvgroup.local"]
    assert certificate.inputs["ip_addresses"] == ["10.0.0.30"]
    assert set(certificate.additional_secret_outputs) >= {"ca_private_key", "private_key"}
    steps = commands_of(run, "haproxy-lab-haproxy-sam")
    step = steps["apply-tls-cert"]
    assert is_secret(step.inputs["stdin"])
    pem = unwrap(step.inputs["stdin"])
    assert "-----BEGIN CERTIFICATE-----" in pem
    assert "-----BEGIN PRIVATE KEY-----" in pem
    assert pem.endswith(f"{CONFIG_TRAILER}\n")
    assert "PRIVATE KEY" not in step.inputs["create"], "never on a command line"
    assert f"apply-tls-cert.sh {TLS_PEM_PATH}" in step.inputs["create"]
    assert set(step.additional_secret_outputs) >= {"stdin", "stdout", "stderr"}
    assert is_secret(step.inputs["triggers"]), "even its hash stays secret"
    assert depends_on(run, steps["apply-haproxy-cfg"], "haproxy-lab-haproxy-sam-apply-tls-cert")


def test_both_load_balancers_of_a_pair_serve_one_certificate_naming_the_site_and_each() -> None:
    run = evaluate(ha_raw())
    (certificate,) = run.of_type(CERTIFICATE)
    assert certificate.inputs["dns_names"] == ["haproxy1-sam.mvgroup.local", "haproxy2-sam.mvgroup.local"]
    assert certificate.inputs["ip_addresses"] == ["10.0.0.30", "10.0.0.33", "10.0.0.34"]
    pems = [
        unwrap(commands_of(run, f"haproxy-lab-{lb}")["apply-tls-cert"].inputs["stdin"])
        for lb in ("haproxy1-sam", "haproxy2-sam")
    ]
    assert pems[0] == pems[1]
    assert run.exports["caCertificate"] == certificate.outputs["ca_certificate"]


def test_tls_off_keeps_plain_http_everywhere() -> None:
    raw = dev_raw()
    raw.pop("tls")
    run = evaluate(raw)
    assert run.of_type(CERTIFICATE) == []
    assert "apply-tls-cert" not in commands_of(run, "haproxy-lab-haproxy-sam")
    assert run.exports["lbUrl"] == "http://10.0.0.30/"
    assert run.exports["statsUrl"] == "http://10.0.0.30:8404/stats"
    assert "caCertificate" not in run.exports
    assert [rule.dport for rule in load_balancer_rules(parse_lab_config(raw))] == [80, 8404, 22, None]


def test_the_https_port_is_opened_to_the_clients_last() -> None:
    raw = dev_raw()
    raw["tls"] = {"httpsPort": 8443}
    rules = load_balancer_rules(parse_lab_config(raw))
    assert [(rule.dport, rule.source) for rule in rules][-1] == (8443, "10.0.0.0/16")
    run = evaluate(raw)
    assert run.exports["lbUrl"] == "https://10.0.0.30:8443/"


def test_a_brought_certificate_is_shipped_with_its_key_and_no_ca_is_made() -> None:
    raw = dev_raw()
    cert, key = brought(["10.0.0.30"])
    raw["tls"] = {"certificate": cert}
    secrets: dict[str, Any] = {
        "haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY,
        "haproxy-lab:statsPassword": TEST_STATS_PASSWORD,
        "proxmoxve:apiToken": TEST_API_TOKEN,
        "haproxy-lab:tlsPrivateKey": key,
    }
    run = evaluate(raw, secrets=secrets)
    assert run.of_type(CERTIFICATE) == []
    assert "caCertificate" not in run.exports
    step = commands_of(run, "haproxy-lab-haproxy-sam")["apply-tls-cert"]
    assert is_secret(step.inputs["stdin"])
    assert unwrap(step.inputs["stdin"]) == f"{cert}{key}{CONFIG_TRAILER}\n"
