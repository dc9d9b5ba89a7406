"""The guests' private network: a Linux bridge whose host address is the stack's gateway, with no route out.

Why like this: the guests must see what a Proxmox VM sees (their static address, the gateway, each other,
VRRP between them) and reach only the allow-list proxy on the gateway address, nothing beyond it. The host's
ip_forward is left as it is; an nftables table of ours refuses at once anything a guest sends that is neither
for another guest on the bridge nor for the proxy (and replies to the host's own connections, e.g. SSH from
the harness). With br_netfilter's bridge-nf-call-iptables=1 (as on this machine), bridged guest-to-guest
frames also pass the IP hooks with the bridge as their interface, so the rules let through what stays on the
bridge, unicast in the subnet, IPv6 link-local, and multicast (VRRP): a plain `iifname` drop would cut them.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess

from e2e.guests.record import Journal
from rehearsal.ha.netns import TEST_NETWORKS

NAME_MAX = 15  # IFNAMSIZ - 1


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True, check=False, timeout=15)
    if result.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {result.stderr.strip()}")


def check_gateway(gateway: ipaddress.IPv4Interface) -> None:
    """Refuse a gateway (and so a guest network) outside 198.18.0.0/15 before anything is made."""
    if not gateway.network.subnet_of(TEST_NETWORKS):
        raise ValueError(
            f"gateway {gateway} is outside {TEST_NETWORKS}: guests live only on benchmarking addresses; "
            f"give the stack's network.gateway and cidr inside {TEST_NETWORKS}"
        )
    if gateway.ip in (gateway.network.network_address, gateway.network.broadcast_address):
        raise ValueError(f"gateway {gateway} is not a host address of {gateway.network}")


def host_routes() -> list[tuple[ipaddress.IPv4Network, str]]:
    """This host's IPv4 routes but the default one, as (network, device): another run's guests, a lab's bridge."""
    out = subprocess.run(["ip", "-4", "route", "show"], capture_output=True, text=True, check=False, timeout=15).stdout
    found = []
    for line in out.splitlines():
        words = line.split()
        with contextlib.suppress(ValueError, IndexError):
            network = ipaddress.IPv4Network(words[0], strict=False)
            if network.prefixlen > 0:
                found.append((network, words[words.index("dev") + 1] if "dev" in words else "?"))
    return found


def routed_networks() -> list[ipaddress.IPv4Network]:
    """The IPv4 networks this host has routes to."""
    return [network for network, _ in host_routes()]


def overlapping_routes(network: ipaddress.IPv4Network) -> list[str]:
    """This host's routes that overlap `network`, as `<network> dev <device>`."""
    return [f"{route} dev {device}" for route, device in host_routes() if route.overlaps(network)]


def refuse_routed_gateway(gateway: ipaddress.IPv4Interface) -> None:
    """Refuse a guest network this host already routes: the older route would win and the new bridge's guests
    be unreachable ("No route to host"). A dead run's leftovers are swept before this check (record.sweep)."""
    clash = overlapping_routes(gateway.network)
    if clash:
        raise ValueError(
            f"the guests' network {gateway.network} overlaps a network this host already routes "
            f"({', '.join(clash)}): a live run's or a lab's; wait for it to end, or give the stack another "
            "network in 198.18.0.0/15"
        )


def ruleset(table: str, bridge: str, gateway: ipaddress.IPv4Interface, proxy_port: int) -> str:
    """The nftables table (inet family) that keeps the guests on their bridge."""
    return f"""
table inet {table} {{
    chain prerouting {{
        type filter hook prerouting priority filter - 5; policy accept;
        iifname "{bridge}" meta pkttype != unicast accept
        iifname "{bridge}" ip daddr {gateway.ip} tcp dport {proxy_port} accept
        iifname "{bridge}" ct state established,related accept
        iifname "{bridge}" ip daddr {gateway.network} ip daddr != {gateway.ip} accept
        iifname "{bridge}" ip6 daddr fe80::/10 accept
        iifname "{bridge}" reject with icmpx admin-prohibited
    }}
    chain input {{
        type filter hook input priority filter - 5; policy accept;
        iifname "{bridge}" meta pkttype != unicast drop
    }}
    chain forward {{
        type filter hook forward priority filter - 5; policy accept;
        iifname "{bridge}" oifname "{bridge}" accept
        iifname "{bridge}" drop
        oifname "{bridge}" drop
    }}
}}
"""


class PrivateNetwork:
    """The bridge, its nftables table and the guests' veth pairs; every one is journaled before it is made."""

    def __init__(
        self, journal: Journal, bridge: str, gateway: ipaddress.IPv4Interface, proxy_port: int, tag: str
    ) -> None:
        check_gateway(gateway)
        if not 1 <= len(bridge) <= NAME_MAX:
            raise ValueError(f"bridge name {bridge!r} must be 1..{NAME_MAX} characters")
        self.journal = journal
        self.bridge = bridge
        self.gateway = gateway
        self.proxy_port = proxy_port
        self.table = f"hlg_{tag}"
        self.tag = tag
        self._ports = 0

    def up(self) -> None:
        self.journal.add("link", self.bridge)
        _ip("link", "add", self.bridge, "type", "bridge")
        # No IPv6 address on the host side: the host is on the guests' network only as the IPv4 gateway.
        _ip("link", "set", self.bridge, "addrgenmode", "none")
        _ip("addr", "add", str(self.gateway), "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        self.journal.add("nft", f"inet {self.table}")
        subprocess.run(
            ["nft", "-f", "-"],
            input=ruleset(self.table, self.bridge, self.gateway, self.proxy_port),
            capture_output=True,
            text=True,
            check=True,
            timeout=15,
        )

    def plug(self, mac: str) -> tuple[str, str]:
        """A new veth pair for one boot of a guest: the host end on the bridge, the guest end carrying the VM's
        MAC under a name of ours, for systemd-nspawn to move into the guest (`--network-interface`), where
        cloud-init names it eth0 by its MAC, as on a VM. Returns (host end, guest end)."""
        self._ports += 1
        host_end, guest_end = f"hg{self.tag}h{self._ports}", f"hg{self.tag}g{self._ports}"
        if len(host_end) > NAME_MAX:
            raise RuntimeError(f"interface name {host_end} too long")
        self.journal.add("link", host_end)
        self.journal.add("link", guest_end)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", guest_end, "address", mac)
        _ip("link", "set", host_end, "addrgenmode", "none")
        _ip("link", "set", host_end, "master", self.bridge, "up")
        return host_end, guest_end

    def namespace(self, name: str, address: ipaddress.IPv4Interface) -> None:
        """A network namespace `name` on the bridge at `address` (a client of the guests, e.g. a load
        generator: its traffic crosses the bridge as a machine's on the lab network would)."""
        if address.network != self.gateway.network or address.ip == self.gateway.ip:
            raise ValueError(f"{address} is not a free host address of the guests' network {self.gateway.network}")
        host_end, inside = f"hc{self.tag}h", f"hc{self.tag}n"
        self.journal.add("netns", name)
        _ip("netns", "add", name)
        self.journal.add("link", host_end)
        _ip("link", "add", host_end, "type", "veth", "peer", "name", inside, "netns", name)
        _ip("link", "set", host_end, "addrgenmode", "none")
        _ip("link", "set", host_end, "master", self.bridge, "up")
        _ip("-n", name, "addr", "add", str(address), "dev", inside)
        _ip("-n", name, "link", "set", inside, "up")
        _ip("-n", name, "link", "set", "lo", "up")

    @staticmethod
    def unplug(*links: str) -> None:
        """Remove a guest's veth pair if it is still there (it goes with the guest's namespace)."""
        for link in links:
            subprocess.run(["ip", "link", "del", "dev", link], capture_output=True, check=False, timeout=15)
