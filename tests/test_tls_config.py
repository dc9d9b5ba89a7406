"""`haproxy-lab:tls` as the plan reads it: generated or brought certificates, the ports, and every refusal named
by its key, all at once, before any resource, with no key ever printed.

Faults seen failing (each check once): the expiry check removed (`expired` passed the plan), the SAN check
limited to the virtual IP (the pair's certificate naming only 10.0.0.30 passed), the key-match comparison made
`==` on the certificate's own key (a foreign key passed)."""

from __future__ import annotations

import datetime

import pytest

from plan.model import ConfigError, Tls
from plan.parse import parse_lab_config
from tests.plans import dev_raw, ha_raw
from tests.pulumi_harness import TEST_API_TOKEN, TEST_PRIVATE_KEY, TEST_STATS_PASSWORD, Run, run_program, stack_config
from tests.tls_material import NOW, brought

pytestmark = pytest.mark.timeout(120)


def problems(raw: dict[str, object]) -> tuple[str, ...]:
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    return caught.value.problems


@pytest.mark.parametrize("value", [{}, {"enabled": True}])
def test_an_empty_tls_object_asks_for_a_generated_certificate_on_443(value: dict[str, object]) -> None:
    raw = dev_raw()
    raw["tls"] = value
    assert parse_lab_config(raw).tls == Tls(https_port=443, redirect_http=False, certificate=None)


def test_tls_off_unless_asked() -> None:
    raw = dev_raw()
    raw.pop("tls")
    assert parse_lab_config(raw).tls is None
    raw["tls"] = {"enabled": False}
    assert parse_lab_config(raw).tls is None


def test_the_dev_and_ha_stacks_serve_https() -> None:
    for raw in (dev_raw(), ha_raw()):
        tls = parse_lab_config(raw).tls
        assert tls is not None
        assert tls.certificate is None


def test_bad_tls_values_are_all_reported_by_key() -> None:
    raw = dev_raw()
    raw["tls"] = {"redirectHttp": "yes", "httpsPort": 8404, "enabeld": True}
    found = problems(raw)
    assert "haproxy-lab:tls.redirectHttp: 'yes' is a string, not true or false; expected true" in " ".join(found)
    assert any(p.startswith("haproxy-lab:tls.httpsPort: 8404 is also haproxy.statsPort") for p in found)
    assert any(p.startswith("haproxy-lab:tls.enabeld: is not a known setting (did you mean `enabled`?)") for p in found)
    for port, clash in ((22, "is SSH's port"), (80, "is also haproxy.frontendPort")):
        raw["tls"] = {"httpsPort": port}
        assert problems(raw) == (
            f"haproxy-lab:tls.httpsPort: {port} {clash}; expected " + problems(raw)[0].split("expected ")[1],
        )
    raw["tls"] = True
    assert problems(raw)[0].startswith("haproxy-lab:tls: is a boolean; expected an object")


def test_a_brought_certificate_naming_the_site_is_taken() -> None:
    raw = dev_raw()
    cert, _key = brought(["10.0.0.30"])
    raw["tls"] = {"certificate": cert, "redirectHttp": True, "httpsPort": 8443}
    assert parse_lab_config(raw).tls == Tls(https_port=8443, redirect_http=True, certificate=cert)


def test_expired_weak_and_misnamed_certificates_are_refused_at_once() -> None:
    raw = ha_raw()
    expired, _ = brought(
        ["10.0.0.30", "10.0.0.33", "10.0.0.34"],
        not_before=NOW - datetime.timedelta(days=400),
        not_after=NOW - datetime.timedelta(days=1),
    )
    raw["tls"] = {"certificate": expired}
    assert problems(raw) == (
        f"haproxy-lab:tls.certificate: expired on {(NOW - datetime.timedelta(days=1)).date().isoformat()}; "
        "expected a certificate valid today (renew it), or tls: {}",
    )
    weak, _ = brought(["10.0.0.30"], rsa_bits=1024)
    raw["tls"] = {"certificate": weak}
    found = problems(raw)
    assert found[0] == (
        "haproxy-lab:tls.certificate: has a 1024-bit RSA key; expected an RSA key of 2048 bits or more, or ECDSA"
    )
    assert found[1] == (
        "haproxy-lab:tls.certificate: does not name 10.0.0.33 (loadBalancer.ip), 10.0.0.34 (loadBalancer.standby.ip) "
        "in its subjectAltName; expected a certificate listing every address clients and admins use, as IP entries"
    )


def test_text_that_is_not_a_certificate_is_refused_and_hidden_when_secret() -> None:
    raw = dev_raw()
    raw["tls"] = {"certificate": "-----BEGIN CERTIFICATE-----\nnot really\n-----END CERTIFICATE-----\n"}
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw, secret_keys={"tls"})
    assert caught.value.problems[0].startswith(
        "haproxy-lab:tls.certificate: (a secret value, not shown) is not a PEM certificate chain; expected a PEM chain"
    )


# --- the key: plan.config, through the program under mocks ------------------------------------------------------


def _refused(plan: dict[str, object], key: str | None, *, secret: bool = True) -> str:
    secrets = {
        "haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY,
        "haproxy-lab:statsPassword": TEST_STATS_PASSWORD,
        "proxmoxve:apiToken": TEST_API_TOKEN,
    }
    plain: dict[str, str] = {}
    if key is not None:
        (secrets if secret else plain)["haproxy-lab:tlsPrivateKey"] = key
    run = Run()
    with pytest.raises(Exception, match="invalid stack configuration") as caught:
        run_program(*stack_config(plan, secrets=secrets, plain=plain), run=run)
    assert run.resources == [], "a bad config must not register any resource"
    return str(caught.value)


def test_a_key_that_is_not_the_certificates_is_refused_and_never_printed() -> None:
    plan = dev_raw()
    cert, _ = brought(["10.0.0.30"])
    _, other_key = brought(["10.0.0.30"])
    plan["tls"] = {"certificate": cert}
    text = _refused(plan, other_key)
    assert "haproxy-lab:tlsPrivateKey: does not match the public key of haproxy-lab:tls.certificate" in text
    for line in other_key.splitlines()[1:-1]:
        assert line not in text
    assert "haproxy-lab:tlsPrivateKey: is not set; expected a secret" in _refused(plan, None)
    assert "haproxy-lab:tlsPrivateKey: is stored in plain text" in _refused(plan, other_key, secret=False)
    assert "haproxy-lab:tlsPrivateKey: is not an unencrypted PEM private key" in _refused(plan, "junk")


def test_a_key_without_a_brought_certificate_is_refused() -> None:
    _, key = brought(["10.0.0.30"])
    assert "haproxy-lab:tlsPrivateKey: is set but haproxy-lab:tls.certificate is not" in _refused(dev_raw(), key)
