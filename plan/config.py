"""The only place that reads `pulumi.Config`: stack config in, validated model and secrets out.

Why here: every problem (plan and secrets alike) is found and reported at once, naming the key and
the command that fixes it, before `__main__` declares a single resource.
"""

from __future__ import annotations

import os
import re
from typing import Any

import pulumi
import pulumi.runtime

from plan.model import PROJECT, ConfigError, LabConfig, LabSecrets
from plan.parse import parse_lab_config

PLAN_KEYS = ("network", "proxmox", "vm", "ssh", "haproxy", "loadBalancer", "webServers")
SSH_PRIVATE_KEY = "sshPrivateKey"
STATS_PASSWORD = "statsPassword"  # noqa: S105 (a config key's name, not a password)
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
    elif any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        problems.append(f"{key}: contains a control character; expected printable characters only")


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


def raw_plan_config(config: pulumi.Config) -> dict[str, Any]:
    """The plan's keys as the stack gives them (objects and lists already decoded)."""
    return {key: config.get_object(key) for key in PLAN_KEYS}


def load_config(*, check_provider_credentials: bool = True) -> tuple[LabConfig, LabSecrets]:
    """Parse and validate the whole stack config; raise ConfigError naming every bad key.

    Nothing is declared before this returns, so a bad stack registers no resource at all.
    """
    config = pulumi.Config(PROJECT)
    problems: list[str] = []
    lab: LabConfig | None = None
    try:
        lab = parse_lab_config(raw_plan_config(config))
    except ConfigError as error:
        problems.extend(error.problems)

    private_key = _read_secret(f"{PROJECT}:{SSH_PRIVATE_KEY}", "< ~/.ssh/id_ed25519", problems)
    if private_key is not None:
        _check_ssh_private_key(private_key, problems)
    password = _read_secret(f"{PROJECT}:{STATS_PASSWORD}", '"$(openssl rand -base64 24)"', problems)
    if password is not None:
        _check_stats_password(password, problems)
    if check_provider_credentials:
        _check_proxmox_credentials(problems)

    if problems or lab is None or private_key is None or password is None:
        raise ConfigError(problems or ["the configuration is incomplete"])
    secrets = LabSecrets(
        ssh_private_key=pulumi.Output.secret(private_key),
        stats_password=pulumi.Output.secret(password),
    )
    return lab, secrets
