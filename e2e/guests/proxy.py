"""The allow-list proxy: the only way out for guests, to the package registries this machine reaches.

Debian's tinyproxy does the job (no code of ours in the data path): it listens on the bridge's host address,
serves only clients of the guests' subnet, and with `FilterDefaultDeny Yes` and an anchored host-name
allow-list it answers 403 to any other host, for plain HTTP (apt) and CONNECT (pip's HTTPS) alike; CONNECT
only to port 443. It runs in the foreground inside a cgroup of ours, so cleanup() ends it like the guests.
"""

from __future__ import annotations

import ipaddress
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path

# apt (Debian's mirror; cloud-init's apt sources use the same host for debian-security), pip (PyPI's index
# and its files host).
ALLOWED_HOSTS = ("deb.debian.org", "pypi.org", "files.pythonhosted.org")
PORT = 3128


def config_text(
    listen: ipaddress.IPv4Address, port: int, clients: ipaddress.IPv4Network, filter_file: Path, log_file: Path
) -> str:
    return "\n".join(
        [
            "# haproxy-lab guests' allow-list proxy (e2e/guests/proxy.py)",
            "User nobody",
            "Group nogroup",
            f"Listen {listen}",
            f"Port {port}",
            f"Allow {clients}",
            "Timeout 600",
            "MaxClients 64",
            "ConnectPort 443",
            f'Filter "{filter_file}"',
            "FilterType ere",
            "FilterURLs Off",
            "FilterDefaultDeny Yes",
            "FilterCaseSensitive Off",
            "DisableViaHeader Yes",
            f'LogFile "{log_file}"',
            "LogLevel Connect",
            "",
        ]
    )


def filter_text(hosts: Sequence[str]) -> str:
    """One anchored, escaped pattern a host: `deb.debian.org` never lets `deb.debian.org.evil` through."""
    return "".join(f"^{re.escape(host)}$\n" for host in hosts)


def start(
    directory: Path,
    listen: ipaddress.IPv4Interface,
    port: int,
    cgroup_procs: Sequence[Path],
    hosts: Sequence[str] = ALLOWED_HOSTS,
) -> subprocess.Popen[bytes]:
    """Write the config into `directory` and start tinyproxy in the foreground, placed in our cgroups first."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o755)
    filter_file, log_file, conf = directory / "allow", directory / "proxy.log", directory / "tinyproxy.conf"
    filter_file.write_text(filter_text(hosts))
    log_file.touch()
    log_file.chmod(0o666)  # tinyproxy writes it after dropping to nobody
    conf.write_text(config_text(listen.ip, port, listen.network, filter_file, log_file))
    for path in (filter_file, conf):
        path.chmod(0o644)
    with (directory / "tinyproxy.stderr").open("wb") as stderr:
        return subprocess.Popen(
            ["sh", "-c", 'for p in "$@"; do echo $$ >"$p"; done; exec tinyproxy -d -c "$0"', str(conf)]
            + [str(p) for p in cgroup_procs],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
            start_new_session=True,
        )
