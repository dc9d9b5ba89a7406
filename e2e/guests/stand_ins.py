"""Files each guest gets on its disk before its first boot, where the lab's network differs from a VM's.

Each is a stand-in listed in docs/e2e.md ("Guests: what differs from an Ubuntu VM, and why"). They depend on
the run (the gateway the proxy listens on), so the machines write them, not the golden image; none touches
what the program sends (its user-data, scripts and compose file stay as they are).
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path

from rehearsal.ha.netns import TEST_NETWORKS

HOST_EXTRA_CAS = Path("/usr/local/share/ca-certificates")
BUNDLE = "etc/ssl/certs/ca-certificates.crt"


def proxy_url(gateway: ipaddress.IPv4Interface, port: int) -> str:
    return f"http://{gateway.ip}:{port}"


def docker_networks(gateway: ipaddress.IPv4Interface) -> tuple[str, str]:
    """Docker's own bridge (bip) and address pool inside a guest, kept in 198.18.0.0/15 but in the /16 the
    guests' subnet is not in (they are NATed inside the guest and never seen on the bridge)."""
    halves = list(TEST_NETWORKS.subnets(new_prefix=16))
    other = halves[1] if gateway.network.subnet_of(halves[0]) else halves[0]
    top = list(other.subnets(new_prefix=20))[-1]
    bip = ipaddress.IPv4Interface((int(top.broadcast_address) - 254, 24))
    pool = next(top.subnets(new_prefix=21))
    return str(bip), str(pool)


def host_cas(rootfs: Path, extra: Path = HOST_EXTRA_CAS) -> dict[str, str]:
    """The CAs this machine trusts beyond Debian's (its egress re-signs TLS with one of them), for the guest:
    each as a local CA (kept by a later update-ca-certificates) and appended to the image's bundle (so
    curl, apt and, through the base image, pip trust it from the first boot)."""
    cas = {path.name: path.read_text() for path in sorted(extra.glob("*.crt"))} if extra.is_dir() else {}
    if not cas:
        return {}
    files = {f"usr/local/share/ca-certificates/{name}": text for name, text in cas.items()}
    bundle = (rootfs / BUNDLE).read_text()
    files[BUNDLE] = bundle + "".join(text if text.endswith("\n") else text + "\n" for text in cas.values())
    return files


def guest_files(gateway: ipaddress.IPv4Interface, proxy_port: int, rootfs: Path) -> dict[str, str]:
    """Path inside the guest -> content."""
    url = proxy_url(gateway, proxy_port)
    bip, pool = docker_networks(gateway)
    return host_cas(rootfs) | {
        # apt reaches Debian's mirror only through the allow-list proxy (a VM would go direct).
        "etc/apt/apt.conf.d/80haproxy-lab-proxy": (
            "// haproxy-lab guest: the private bridge has no route out; apt goes through the allow-list proxy.\n"
            f'Acquire::http::Proxy "{url}";\nAcquire::https::Proxy "{url}";\n'
        ),
        # docker compose passes these to the build as HTTP(S)_PROXY: pip in the web app's Dockerfile reaches
        # PyPI through the proxy. The Dockerfile and compose file are the program's, unchanged. Docker also puts
        # them in the app container's environment: loopback is exempt by name (urllib ignores CIDRs in
        # no_proxy), so the container's health check still reaches the app directly.
        "root/.docker/config.json": json.dumps(
            {"proxies": {"default": {"httpProxy": url, "httpsProxy": url, "noProxy": "localhost,127.0.0.1,::1"}}},
            indent=2,
        )
        + "\n",
        # Docker's default 172.17.0.0/16 is outside the test range the house rules allow.
        "etc/docker/daemon.json": json.dumps(
            {"bip": bip, "default-address-pools": [{"base": pool, "size": 24}]}, indent=2
        )
        + "\n",
    }
