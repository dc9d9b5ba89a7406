"""The plan's HA keys, read apart from plan.parse: `loadBalancer.standby` + `loadBalancer.virtualIp` (an
active/standby pair: both or neither) and `proxmox.node` as a list of nodes.

Why apart: parse.py reads the single-load-balancer plan; these are the only places where the pair
changes what is read, and each problem still names its key like every other one.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from plan import values as v
from plan.model import Host

HA_KEYS = ("standby", "virtualIp")
ParseHost = Callable[[v.Reader, Any, str], Host | None]


def parse_nodes(r: v.Reader, raw: Any, ident: Callable[[Any], str]) -> tuple[str, ...] | None:
    """`proxmox.node`: one node name, or a list of them (VMs are then spread over the nodes)."""
    expected = "the Proxmox node name, e.g. pve, or a list of node names, e.g. [pve1, pve2]"
    if not isinstance(raw, list):
        node = r.value({"node": raw}, "proxmox", "node", ident, expected)
        return None if node is None else (node,)
    if not raw:
        r.fail("proxmox.node", "is an empty list", expected)
        return None
    nodes: list[str] = []
    for index, item in enumerate(raw):
        key = f"node[{index}]"
        node = r.value({key: item}, "proxmox", key, ident, "a Proxmox node name, e.g. pve2")
        if node is None:
            return None
        if node in nodes:
            r.fail(f"proxmox.{key}", f"{r.show('proxmox', node, quote=True)} is listed twice", "each node once")
            return None
        nodes.append(node)
    return tuple(nodes)


def parse_pair(
    r: v.Reader, raw_lb: Any, parse_host: ParseHost
) -> tuple[Host | None, ipaddress.IPv4Address | None, bool]:
    """`loadBalancer.standby` and `loadBalancer.virtualIp`: both (an active/standby pair) or neither.

    Returns the standby, the virtual IP, and whether that part of the plan is usable."""
    if not isinstance(raw_lb, Mapping):
        return None, None, True  # a missing or malformed loadBalancer is reported where it is read
    raw_standby, raw_vip = raw_lb.get("standby"), raw_lb.get("virtualIp")
    if raw_standby is None and raw_vip is None:
        return None, None, True
    standby = parse_host(r, raw_standby, "loadBalancer.standby") if raw_standby is not None else None
    virtual_ip = (
        r.value(raw_lb, "loadBalancer", "virtualIp", v.ipv4, "the address clients use, moved by VRRP")
        if raw_vip is not None
        else None
    )
    if raw_standby is None:
        r.fail(
            "loadBalancer.standby",
            "is not set but loadBalancer.virtualIp is",
            "both a standby {name, ip, vmId?} and a virtualIp (an active/standby pair), or neither",
        )
    if raw_vip is None:
        r.fail(
            "loadBalancer.virtualIp",
            "is not set but loadBalancer.standby is",
            "both a standby and a virtualIp the pair shares, e.g. 10.0.0.30, or neither",
        )
    return standby, virtual_ip, standby is not None and virtual_ip is not None


def check_virtual_ip(
    r: v.Reader,
    cidr: ipaddress.IPv4Network | None,
    gateway: ipaddress.IPv4Address | None,
    virtual_ip: ipaddress.IPv4Address,
    hosts: Sequence[tuple[str, Host]],
) -> None:
    """The virtual IP is a free host address of the network: no VM's, not the gateway, network or broadcast."""
    key = "loadBalancer.virtualIp"
    vip = r.show(key, virtual_ip)
    if cidr is not None:
        net = r.show("network.cidr", cidr)
        if virtual_ip not in cidr:
            r.fail(key, f"{vip} lies outside network.cidr {net}", f"an address inside {net}")
        elif virtual_ip == cidr.network_address:
            r.fail(key, f"{vip} is the network address of {net}", "a host address")
        elif virtual_ip == cidr.broadcast_address:
            r.fail(key, f"{vip} is the broadcast address of {net}", "a host address")
    if virtual_ip == gateway:
        r.fail(key, f"{vip} is the gateway's address", "an address of its own")
    for host_key, host in hosts:
        if host.ip == virtual_ip:
            r.fail(key, f"{vip} is already used by {host_key}", "an address no VM uses: VRRP moves it")
