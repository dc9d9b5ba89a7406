"""Stack config as the Pulumi engine hands it: wrong types, misspelt keys and secrets in errors.

Through the real config reader (plan.config) under Pulumi's mocks: every problem is reported at once,
naming its key, before any resource is registered, and no error repeats a secret.
"""

from __future__ import annotations

import pytest

from tests.plans import dev_raw as dev_plan
from tests.pulumi_harness import TEST_API_TOKEN, TEST_PRIVATE_KEY, Run, run_program, stack_config

pytestmark = pytest.mark.timeout(120)


def refused(config: dict[str, str], secret_keys: list[str]) -> str:
    """The error text of a refused stack; asserts that nothing was registered."""
    run = Run()
    with pytest.raises(Exception, match="invalid stack configuration") as caught:
        run_program(config, secret_keys, run=run)
    assert run.resources == [], "a bad config must not register any resource"
    return str(caught.value)


def test_plain_strings_where_objects_are_expected_are_each_reported() -> None:
    plan = dev_plan()
    plan["ssh"] = "samuel"
    plan["vm"] = "big"
    text = refused(*stack_config(plan))
    assert "haproxy-lab:ssh: is a string; expected an object" in text
    assert "haproxy-lab:vm: is a string; expected an object" in text


def test_a_misspelt_top_level_key_is_refused() -> None:
    plan = dev_plan()
    plan["hapoxy"] = plan.pop("haproxy")
    text = refused(*stack_config(plan))
    assert "haproxy-lab:hapoxy: is not a known setting (did you mean `haproxy`?)" in text


def test_a_secret_object_is_never_printed() -> None:
    """A private key pasted into `ssh.publicKey` of a secret `ssh` object (the PR workflow posts previews)."""
    plan = dev_plan()
    plan["ssh"]["publicKey"] = TEST_PRIVATE_KEY
    config, secret_keys = stack_config(plan)
    text = refused(config, [*secret_keys, "haproxy-lab:ssh"])
    assert "haproxy-lab:ssh.publicKey: (a secret value, not shown)" in text
    for line in TEST_PRIVATE_KEY.splitlines():
        assert line not in text


def test_an_overlong_stats_password_is_refused_before_any_resource() -> None:
    password = "p" * 300
    secrets = {
        "haproxy-lab:sshPrivateKey": TEST_PRIVATE_KEY,
        "haproxy-lab:statsPassword": password,
        "proxmoxve:apiToken": TEST_API_TOKEN,
    }
    text = refused(*stack_config(dev_plan(), secrets=secrets))
    assert "haproxy-lab:statsPassword: is longer than 256 characters" in text
    assert "p" * 20 not in text
