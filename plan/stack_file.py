"""Read a Pulumi.<stack>.yaml straight from disk into the validated model.

Why: the local rehearsal, the benchmark and the tests use the same plan as `pulumi up` without a
Pulumi engine; only the non-secret `haproxy-lab:` keys are read (secrets never live in that file).
The file is data from a user: YAML anchors and aliases are refused (a few lines of aliases expand
to gigabytes) and so is a file over a size no stack file reaches.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from plan.model import PROJECT, ConfigError, LabConfig
from plan.parse import parse_lab_config
from plan.values import shown

REPO_ROOT = Path(__file__).resolve().parent.parent
MAX_STACK_FILE_BYTES = 1_000_000


def stack_file(stack: str) -> Path:
    """The path of Pulumi.<stack>.yaml at the top of the repository."""
    return REPO_ROOT / f"Pulumi.{stack}.yaml"


def _load_plain_yaml(path: Path) -> Any:
    """The file's YAML without anchors or aliases (checked on the event stream, before anything is built)."""
    size = path.stat().st_size
    if size > MAX_STACK_FILE_BYTES:
        raise ConfigError([f"{path.name}: is {size} bytes; expected a stack file under {MAX_STACK_FILE_BYTES} bytes"])
    text = path.read_text(encoding="utf-8")
    try:
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                where = f"{path.name}:{event.start_mark.line + 1}" if event.start_mark else path.name
                raise ConfigError([f"{where}: uses a YAML anchor or alias (&name, *name); expected plain YAML"])
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path.name}:{mark.line + 1}" if mark is not None else path.name
        reason = getattr(error, "problem", None) or "cannot be parsed"
        raise ConfigError([f"{where}: is not valid YAML ({shown(reason)}); expected a Pulumi stack file"]) from None


def _holds_secret(value: Any) -> bool:
    """Whether a stack-file value is, or contains, an encrypted `secure:` value."""
    if isinstance(value, Mapping):
        return set(value) == {"secure"} or any(_holds_secret(item) for item in value.values())
    if isinstance(value, list):
        return any(_holds_secret(item) for item in value)
    return False


def raw_project_config(path: Path) -> dict[str, Any]:
    """The `haproxy-lab:` keys of a stack file, without their prefix, values as YAML gives them."""
    document = _load_plain_yaml(path) or {}
    config = (document.get("config") or {}) if isinstance(document, Mapping) else {}
    if not isinstance(config, Mapping):
        raise ConfigError([f"{path.name}: `config` is not a mapping; expected `config:` with `{PROJECT}:` keys"])
    prefix = f"{PROJECT}:"
    return {key[len(prefix) :]: value for key, value in config.items() if str(key).startswith(prefix)}


def secret_keys(raw: Mapping[str, Any]) -> frozenset[str]:
    """The keys whose value is (or holds) a `secure:` value: errors must not repeat them."""
    return frozenset(key for key, value in raw.items() if _holds_secret(value))


def load_stack_file(stack: str = "dev") -> LabConfig:
    """Parse and validate Pulumi.<stack>.yaml (raises ConfigError naming each bad key)."""
    raw = raw_project_config(stack_file(stack))
    return parse_lab_config(raw, secret_keys=secret_keys(raw))
