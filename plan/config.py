"""The only place that reads `pulumi.Config`: stack config in, validated model and secrets out.

Why here: every problem (plan and secrets alike) is found and reported at once, naming the key and
the command that fixes it, before `__main__` declares a single resource.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any

import pulumi
import pulumi.runtime
import pulumi.runtime.config

from plan.model import PROJECT, ConfigError, LabConfig, LabSecrets
from plan.parse import PLAN_KEYS, SECRET_SETTINGS, parse_lab_config
from plan.tls import TLS_PRIVATE_KEY, check_private_key
from plan.values import MAX_STATS_PASSWORD

SSH_PRIVATE_KEY, STATS_PASSWORD, _ = SECRET_SETTINGS
MIN_STATS_PASSWORD_LENGTH = 12
_PRIVATE_KEY = re.compile(r"-----BEGIN ([A-Z0-9]+ )?PRIVATE KEY-----.+-----END ([A-Z0-9]+ )?PRIVATE KEY-----", re.S)


def _set_secret_hint(key: str, example: str) -> str:
    return f"run `pulumi config set --secret {key} {example}`"


def _read_secret(full_key: str, example: str, problems: list[str]) -> str | None:
    """The raw value of a secret config key, or None after recording why it is unusable."""
    value = pulumi.runtime.get_config(full_key)
    if value is None or not str(value).strip():
        problems.append(f"{full_key}: is not set; expected a secret: {_set_secret_hint(full_key, example)}")
        return None
    if not pulumi.runtime.is_config_secret(full_key):
        problems.append(
            f"{full_key}: is stored in plain text in the stack file; expected a secret: "
            f"{_set_secret_hint(full_key, example)} (this encrypts it)"
        )
        return None
    return str(value)


def _check_ssh_private_key(value: str, problems: list[str]) -> None:
    if not _PRIVATE_KEY.search(value):
        key = f"{PROJECT}:{SSH_PRIVATE_KEY}"
        problems.append(
            f"{key}: is not a PEM/OpenSSH private key; expected the key file's whole text: "
            f"`pulumi config set --secret {key} < ~/.ssh/id_ed25519`"
        )


def _check_stats_password(value: str, problems: list[str]) -> None:
    key = f"{PROJECT}:{STATS_PASSWORD}"
    if len(value) < MIN_STATS_PASSWORD_LENGTH:
        problems.append(
            f"{key}: is shorter than {MIN_STATS_PASSWORD_LENGTH} characters; expected a long random password: "
            f'`pulumi config set --secret {key} "$(openssl rand -base64 24)"`'
        )
    elif len(value) > MAX_STATS_PASSWORD:
        problems.append(
            f"{key}: is longer than {MAX_STATS_PASSWORD} characters (haproxy.cfg holds it as one word); expected "
            f'a shorter random password: `pulumi config set --secret {key} "$(openssl rand -base64 24)"`'
        )
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        problems.append(f"{key}: contains a control character; expected printable characters only")


def _read_tls_key(raw: dict[str, Any], lab: LabConfig | None, problems: list[str]) -> str | None:
    """`tlsPrivateKey`: required with a brought `tls.certificate` (and checked against it), refused without one."""
    full = f"{PROJECT}:{TLS_PRIVATE_KEY}"
    tls = raw.get("tls")
    brought = isinstance(tls, dict) and tls.get("certificate") is not None and tls.get("enabled", True) is not False
    if not brought:
        if pulumi.runtime.get_config(full) is not None:
            problems.append(
                f"{full}: is set but {PROJECT}:tls.certificate is not; expected both (bring your own certificate) "
                f"or neither (tls: {{}} generates one): `pulumi config rm {full}`"
            )
        return None
    key = _read_secret(full, "< server.key", problems)
    if key is not None and lab is not None and lab.tls is not None and lab.tls.certificate is not None:
        problems.extend(check_private_key(lab.tls.certificate, key))
    return key


def _check_proxmox_credentials(problems: list[str]) -> None:
    """The provider reads its own config; we only check that some credential is there, and secret."""
    if os.environ.get("PROXMOX_VE_API_TOKEN") or (
        os.environ.get("PROXMOX_VE_USERNAME") and os.environ.get("PROXMOX_VE_PASSWORD")
    ):
        return
    token_key = "proxmoxve:apiToken"  # noqa: S105 (a config key's name)
    hint = _set_secret_hint(token_key, "'terraform@pve!lab=<uuid>'")
    if pulumi.runtime.get_config(token_key) is None:
        problems.append(
            f"{token_key}: is not set; expected the Proxmox API token: {hint} (or export PROXMOX_VE_API_TOKEN)"
        )
    elif not pulumi.runtime.is_config_secret(token_key):
        problems.append(f"{token_key}: is stored in plain text in the stack file; expected a secret: {hint}")


def _decode(value: Any) -> Any:
    """A config value as the engine hands it (objects and lists as JSON text) -> YAML-like data.

    Text that is not JSON is a plain string: the parser then reports it per key ("is a string;
    expected an object") instead of Pulumi's ConfigTypeError stopping at the first such key.
    """
    if not isinstance(value, str):
        return value
    try:
        return json.loads(value)
    except ValueError:
        return value


def _stack_keys() -> set[str]:
    """Every `haproxy-lab:` key the stack sets (the engine passes them in the config map or environment)."""
    keys = {*pulumi.runtime.config.CONFIG.get(), *pulumi.runtime.config.get_config_env()}
    return {key for key in keys if key.startswith(f"{PROJECT}:")}


def raw_plan_config() -> tuple[dict[str, Any], frozenset[str]]:
    """Every `haproxy-lab:` key of the stack (without the prefix) decoded, and which of them are secrets.

    Secret settings are left out (plan.config checks them itself) but still listed, so the parser
    knows them; a misspelt key is kept so the parser can refuse it.
    """
    prefix = f"{PROJECT}:"
    raw: dict[str, Any] = {}
    secret: set[str] = set()
    for full in sorted(_stack_keys() | {f"{prefix}{key}" for key in PLAN_KEYS}):
        key = full[len(prefix) :]
        if pulumi.runtime.is_config_secret(full):
            secret.add(key)
        value = pulumi.runtime.get_config(full)
        if key not in SECRET_SETTINGS and value is not None:
            raw[key] = _decode(value)
    return raw, frozenset(secret)


def load_config(*, check_provider_credentials: bool = True) -> tuple[LabConfig, LabSecrets]:
    """Parse and validate the whole stack config; raise ConfigError naming every bad key.

    Nothing is declared before this returns, so a bad stack registers no resource at all.
    """
    problems: list[str] = []
    lab: LabConfig | None = None
    raw, secret_keys = raw_plan_config()
    try:
        lab = parse_lab_config(raw, secret_keys=secret_keys)
    except ConfigError as error:
        problems.extend(error.problems)

    private_key = _read_secret(f"{PROJECT}:{SSH_PRIVATE_KEY}", "< ~/.ssh/id_ed25519", problems)
    if private_key is not None:
        _check_ssh_private_key(private_key, problems)
    password = _read_secret(f"{PROJECT}:{STATS_PASSWORD}", '"$(openssl rand -base64 24)"', problems)
    if password is not None:
        _check_stats_password(password, problems)
    tls_key = _read_tls_key(raw, lab, problems)
    if check_provider_credentials:
        _check_proxmox_credentials(problems)

    if problems or lab is None or private_key is None or password is None:
        raise ConfigError(problems or ["the configuration is incomplete"])
    secrets = LabSecrets(
        ssh_private_key=pulumi.Output.secret(private_key),
        stats_password=pulumi.Output.secret(password),
        tls_private_key=None if tls_key is None else pulumi.Output.secret(tls_key),
    )
    return lab, secrets
