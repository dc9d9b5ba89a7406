"""The building blocks of plan.parse: value patterns, converters, and a reader that collects problems.

Each converter raises ValueError/TypeError with a short reason; the reader turns that into one line
naming the key, what is wrong and what is expected, and carries on, so one run reports every problem.
"""

from __future__ import annotations

import difflib
import ipaddress
import re
import reprlib
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any, TypeVar
from urllib.parse import urlsplit

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
# The file name Proxmox stores a downloaded image under: a real name, not a bare extension.
IMAGE_FILE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,200}\.(img|qcow2)$")
MAX_STATS_PASSWORD = 256  # HAProxy reads one config word; far above any generated password
SSH_PORT = 22  # sshd: the remote commands connect to it, the firewall opens it to admins
HTTP_PORT = 80  # the web servers publish the app on it; the default frontend port; a URL without a port
MAX_FQDN = 253  # DNS's limit for a whole name: cloud-init's fqdn and HAProxy's health-check Host header
SHOWN_LIMIT = 80  # longest value an error message repeats
HIDDEN = "(a secret value, not shown)"

# Accounts and groups that exist on Ubuntu 24.04's cloud image (base-passwd's passwd.master and
# group.master, plus the image's own system users) or that provisioning creates (haproxy, docker):
# cloud-init cannot create the admin user over one of them and the VM is left without a login.
RESERVED_LINUX_USERS = frozenset(
    {
        # base-passwd: passwd.master
        *("root", "daemon", "bin", "sys", "sync", "games", "man", "lp", "mail", "news", "uucp", "proxy"),
        *("www-data", "backup", "list", "irc", "gnats", "_apt", "nobody"),
        # base-passwd: group.master
        *("adm", "tty", "disk", "kmem", "dialout", "fax", "voice", "cdrom", "floppy", "tape", "sudo", "audio"),
        *("dip", "operator", "src", "shadow", "utmp", "video", "sasl", "plugdev", "staff", "users", "nogroup"),
        # the cloud image's system users and groups
        *("sshd", "_ssh", "syslog", "messagebus", "polkitd", "uuidd", "tcpdump", "landscape", "fwupd-refresh"),
        *("usbmux", "dnsmasq", "lxd", "tss", "pollinate", "dhcpcd", "_chrony", "netdev", "crontab", "input"),
        *("sgx", "kvm", "render", "rdma", "admin", "ubuntu", "clock", "_laurel", "ntp"),
        # created by this lab's provisioning
        *("haproxy", "docker", "containerd"),
    }
)
RESERVED_LINUX_USER_PREFIXES = ("systemd-",)


T = TypeVar("T")
MISSING = object()


def shown(value: Any, limit: int = SHOWN_LIMIT) -> str:
    """A value as an error message repeats it: repr, cut to `limit` characters (a pasted file stays out).

    reprlib bounds the work too: a deeply shared structure (a YAML alias bomb) is never expanded.
    """
    bounded = reprlib.Repr()
    bounded.maxlevel, bounded.maxlist, bounded.maxdict, bounded.maxstring = 3, 4, 4, limit
    text = repr(value[: limit + 1]) if isinstance(value, str) else bounded.repr(value)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


def closest(name: str, known: Collection[str]) -> str:
    """' (did you mean `x`?)' for the known name nearest a misspelt one, or nothing."""
    match = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean `{match[0]}`?)" if match else ""


def root_key(key: str) -> str:
    """'webServers[1].ip' -> 'webServers': the top-level stack key a nested key lives in."""
    return re.split(r"[.\[]", key, maxsplit=1)[0]


class Reader:
    """Reads raw config values, collecting one message per problem instead of stopping at the first.

    Values of keys stored as secrets (`pulumi config set --secret`, whole objects included) are never
    repeated in a message; any other value is cut to SHOWN_LIMIT characters.
    """

    def __init__(self, secret_keys: Collection[str] = ()) -> None:
        self.problems: list[str] = []
        self.secret_keys = frozenset(secret_keys)

    def fail(self, key: str, problem: str, expected: str) -> None:
        self.problems.append(f"{PROJECT}:{key}: {problem}; expected {expected}")

    def show(self, key: str, value: Any, *, quote: bool = False) -> str:
        """How a message names `value`, read at `key`: cut, or hidden when the key is a secret."""
        if root_key(key) in self.secret_keys:
            return HIDDEN
        if isinstance(value, (int, ipaddress.IPv4Address, ipaddress.IPv4Network)) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and not quote:
            return value if len(value) <= SHOWN_LIMIT else f"{value[: SHOWN_LIMIT - 3]}..."
        return shown(value)

    def mapping(self, raw: Any, key: str, *, required: bool = True) -> Mapping[str, Any]:
        if raw is None or raw is MISSING:
            if required:
                self.fail(key, "is not set", f"an object; set it in Pulumi.<stack>.yaml under `{PROJECT}:{key}`")
            return {}
        if not isinstance(raw, Mapping):
            self.fail(key, f"is {kind(raw)}", "an object (a YAML mapping)")
            return {}
        return raw

    def unknown_keys(self, raw: Mapping[str, Any], key: str, known: Sequence[str]) -> None:
        for name in raw:
            if name not in known:
                label = str(name) if len(str(name)) <= SHOWN_LIMIT else shown(name)
                where = f"{key}.{label}" if key else label
                self.fail(where, f"is not a known setting{closest(str(name), known)}", f"one of {', '.join(known)}")

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
            quoted = HIDDEN if root_key(full) in self.secret_keys else shown(value)
            self.fail(full, f"{quoted} {reason}", expected)
            return None


def kind(value: Any) -> str:
    """How an error names a value's type: the YAML word, not Python's."""
    names = {str: "a string", bool: "a boolean", int: "a number", float: "a fractional number", list: "a list"}
    if value is None:
        return "null"
    return "an object" if isinstance(value, Mapping) else names.get(type(value), f"a {type(value).__name__}")


def text(pattern: re.Pattern[str] | None = None, max_len: int = 255) -> Callable[[Any], str]:
    def convert(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError(f"is {kind(value)}, not a string")
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
            raise TypeError(f"is {kind(value)}, not a whole number")
        if not low <= value <= high:
            raise ValueError(f"is outside {low}..{high}")
        return value

    return convert


def admin_user(value: Any) -> str:
    user = text(LINUX_USER, 32)(value)
    if user in RESERVED_LINUX_USERS or user.startswith(RESERVED_LINUX_USER_PREFIXES):
        raise ValueError("is a system account or group of the Ubuntu image (cloud-init could not create the user)")
    return user


def ipv4(value: Any) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise TypeError(f"is {kind(value)}, not a string")
    try:
        return ipaddress.IPv4Address(value.strip())
    except ValueError:
        raise ValueError("is not an IPv4 address") from None


def ipv4_network(value: Any) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise TypeError(f"is {kind(value)}, not a string")
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


def image_url(value: Any) -> str:
    url = text(max_len=500)(value)
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise ValueError("contains a space or a control character")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("is not an http(s) URL with a host")
    if not IMAGE_FILE_NAME.fullmatch(PurePosixPath(parts.path).name):
        raise ValueError("does not end its path with a file name such as noble-server-cloudimg-amd64.img")
    return url


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"is {kind(value)}, not true or false")
    return value
