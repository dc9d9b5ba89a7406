"""The building blocks of plan.parse: value patterns, converters, and a reader that collects problems.

Each converter raises ValueError/TypeError with a short reason; the reader turns that into one line
naming the key, what is wrong and what is expected, and carries on, so one run reports every problem.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

from plan.model import PROJECT

BALANCE_ALGORITHMS = ("roundrobin", "static-rr", "leastconn", "first", "source", "random")
DEFAULT_IMAGE_URL = "https://cloud-images.ubuntu.com/noble/current/noble-server-cloudimg-amd64.img"

BOOT_DISKS = ("virtio0", "scsi0", "sata0", "ide0")
SHA256_HEX = re.compile(r"^[0-9A-Fa-f]{64}$")
RESOURCE_KEY = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")
HOSTNAME_LABEL = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?$")
DOMAIN = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)
LINUX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")
PROXMOX_ID = re.compile(r"^[A-Za-z][A-Za-z0-9._-]{0,63}$")
BRIDGE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,14}$")
SSH_PUBLIC_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com"
    r"|sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [^\x00-\x1f\x7f]{0,200})?$"
)
STATS_USER = re.compile(r"^[A-Za-z0-9._-]{1,32}$")
RESERVED_LINUX_USERS = frozenset({"root", "daemon", "bin", "sys", "sync", "nobody", "haproxy", "ubuntu"})


T = TypeVar("T")
MISSING = object()


class Reader:
    """Reads raw config values, collecting one message per problem instead of stopping at the first."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, key: str, problem: str, expected: str) -> None:
        self.problems.append(f"{PROJECT}:{key}: {problem}; expected {expected}")

    def mapping(self, raw: Any, key: str, *, required: bool = True) -> Mapping[str, Any]:
        if raw is None or raw is MISSING:
            if required:
                self.fail(key, "is not set", f"an object; set it in Pulumi.<stack>.yaml under `{PROJECT}:{key}`")
            return {}
        if not isinstance(raw, Mapping):
            self.fail(key, f"is a {type(raw).__name__}", "an object (a YAML mapping)")
            return {}
        return raw

    def unknown_keys(self, raw: Mapping[str, Any], key: str, known: Sequence[str]) -> None:
        for name in raw:
            if name not in known:
                self.fail(f"{key}.{name}", "is not a known setting", f"one of {', '.join(known)}")

    def value(
        self,
        raw: Mapping[str, Any],
        key: str,
        name: str,
        convert: Callable[[Any], T],
        expected: str,
        default: Any = MISSING,
    ) -> T | None:
        full = f"{key}.{name}" if key else name
        value = raw.get(name, MISSING)
        if value is MISSING or value is None:
            if default is MISSING:
                self.fail(full, "is not set", expected)
                return None
            value = default
        try:
            return convert(value)
        except (ValueError, TypeError) as error:
            reason = str(error) or "is not valid"
            self.fail(full, f"{value!r} {reason}", expected)
            return None


def text(pattern: re.Pattern[str] | None = None, max_len: int = 255) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"is a {type(value).__name__}, not a string")
        if not value.strip():
            raise ValueError("is empty")
        if len(value) > max_len:
            raise ValueError(f"is longer than {max_len} characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise ValueError("has a character or form that is not allowed")
        return value

    return convert


def message(value: Any) -> str:
    result = text(max_len=200)(value)
    if any(ord(ch) < 32 or ord(ch) == 127 for ch in result):
        raise ValueError("contains a control character (newline, tab...)")
    return result


def integer(low: int, high: int) -> Callable[[Any], int]:
    def convert(value: Any) -> int:
        if isinstance(value, bool):
            raise TypeError("is a boolean, not a whole number")
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value)
        if not isinstance(value, int):
            raise TypeError(f"is a {type(value).__name__}, not a whole number")
        if not low <= value <= high:
            raise ValueError(f"is outside {low}..{high}")
        return value

    return convert


def ipv4(value: Any) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise TypeError(f"is a {type(value).__name__}, not a string")
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise ValueError("is not an IPv4 address") from None


def ipv4_network(value: Any) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise TypeError(f"is a {type(value).__name__}, not a string")
    try:
        return ipaddress.IPv4Network(value.strip(), strict=True)
    except ValueError:
        raise ValueError("is not an IPv4 network in CIDR form with its host bits clear") from None


def ipv4_list(value: Any) -> tuple[ipaddress.IPv4Address, ...]:
    if not isinstance(value, list) or not value:
        raise TypeError("is not a non-empty list")
    return tuple(ipv4(item) for item in value)


def hostname(value: Any) -> str:
    return text(HOSTNAME_LABEL, max_len=63)(value)


def vm_id(value: Any) -> int:
    return integer(100, 999_999_999)(value)
