"""Every template under files/ renders only with all its variables: a missing one is an error, never ''."""

from __future__ import annotations

import jinja2
import pytest

from plan.stack_file import load_stack_file
from render.haproxy_cfg import lab_settings, render_haproxy_cfg
from render.shipping import FILES_DIR, render, sha256_hex

TEMPLATES = sorted(path.relative_to(FILES_DIR).as_posix() for path in FILES_DIR.rglob("*.j2"))


@pytest.mark.parametrize("template", TEMPLATES)
def test_a_missing_variable_is_an_error(template: str) -> None:
    with pytest.raises(jinja2.UndefinedError):
        render(template)


def test_the_lab_config_renders_with_every_variable_given() -> None:
    lab = load_stack_file("dev")
    text = render_haproxy_cfg(lab_settings(lab, "a-long-stats-password"))
    assert "{{" not in text
    assert "{%" not in text


def test_content_hashes_are_stable_and_unambiguous() -> None:
    assert sha256_hex("ab", "c") != sha256_hex("a", "bc"), "part boundaries are part of the hash"
    assert sha256_hex("abc") != sha256_hex("abd")
