"""The end-to-end run's stack: the repository's stack files moved onto test addresses, and the check that
refuses any stack with an address outside 198.18.0.0/15 before anything starts.

Why moved, not rewritten: the e2e stack must have the shape users deploy (Pulumi.dev.yaml, Pulumi.ha.yaml)
and differ only where the lab's network must (198.18.0.0/15: reserved for benchmarking, never routed here).
The stack file's `proxmoxve:` settings are replaced by the fake node's (endpoint and SSH on loopback).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml

from e2e.engine import REPO
from e2e.guests.network import overlapping_routes, routed_networks

TEST_RANGE = ipaddress.IPv4Network("198.18.0.0/15")
E2E_CIDR = "198.18.50.0/24"  # the default e2e stack's network (the role and engine tests use 198.18.40.0/24)
_REPORT_ADDRESS = re.compile(r"^10\.0\.(\d+)\.(\d+)$")
_PUBLIC_DNS = "8.8.8.8"


def moved(value: Any, cidr: str) -> Any:
    """A stack value with the plan's 10.0.0.0/16 addresses mapped into the /24 `cidr` (host part kept;
    the public resolver becomes host .3)."""
    net = ipaddress.IPv4Network(cidr)
    if isinstance(value, dict):
        return {key: moved(item, cidr) for key, item in value.items()}
    if isinstance(value, list):
        return [moved(item, cidr) for item in value]
    if value == "10.0.0.0/16":
        return cidr
    if isinstance(value, str) and (match := _REPORT_ADDRESS.match(value)):
        return str(net.network_address + int(match.group(2)))
    if value == _PUBLIC_DNS:
        return str(net.network_address + 3)
    return value


def addresses(value: Any, where: str = "") -> Iterable[tuple[str, str]]:
    """(key path, value) of every address or network in a stack value."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from addresses(item, f"{where}.{key}" if where else str(key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from addresses(item, f"{where}[{index}]")
    elif isinstance(value, str):
        try:
            ipaddress.ip_network(value, strict=False)
        except ValueError:
            return
        yield where, value


def in_test_range(address: str) -> bool:
    network = ipaddress.ip_network(address, strict=False)
    return isinstance(network, ipaddress.IPv4Network) and network.subnet_of(TEST_RANGE)


def hosts(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every host of a plan (its `haproxy-lab:` keys): the load balancer(s), then the web servers."""
    balancer: dict[str, Any] = plan["haproxy-lab:loadBalancer"]
    return [balancer, *([balancer["standby"]] if "standby" in balancer else []), *plan["haproxy-lab:webServers"]]


def refuse_outside(plan: dict[str, Any], source: str) -> None:
    """Raise naming every key whose address is outside 198.18.0.0/15 (nothing has started yet)."""
    outside = [f"{key}: {value}" for key, value in addresses(plan) if not in_test_range(value)]
    if outside:
        raise ValueError(
            f"{source}: the end-to-end run uses only addresses in {TEST_RANGE}; outside it: {', '.join(outside)}. "
            f"Move every address of the stack (network, hosts, dns, adminCidr, clientCidr, virtualIp) into {TEST_RANGE}"
        )


def repository_plan(shape: str, cidr: str) -> dict[str, Any]:
    """The `haproxy-lab:` config of Pulumi.<shape>.yaml moved onto `cidr` (a /24 in 198.18.0.0/15)."""
    config = yaml.safe_load((REPO / f"Pulumi.{shape}.yaml").read_text())["config"]
    plan = {key: moved(value, cidr) for key, value in config.items() if key.startswith("haproxy-lab:")}
    refuse_outside(plan, f"Pulumi.{shape}.yaml moved onto {cidr}")
    return plan


def load_plan(path: Path) -> dict[str, Any]:
    """A stack file's `haproxy-lab:` config, refused if any address is outside 198.18.0.0/15."""
    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ValueError(f"--stack {path}: cannot read it as a stack file: {error}") from None
    config = doc.get("config") if isinstance(doc, dict) else None
    if not isinstance(config, dict) or "haproxy-lab:webServers" not in config:
        raise ValueError(
            f"--stack {path}: no `config:` with haproxy-lab:webServers (a Pulumi.<stack>.yaml is expected)"
        )
    plan = {key: value for key, value in config.items() if key.startswith("haproxy-lab:")}
    refuse_outside(plan, f"--stack {path}")
    return plan


def free_cidr() -> str:
    """The default stack's /24: 198.18.50.0/24, or the next one no route of this host overlaps (two runs at
    once must not share a subnet: the host would have two routes to it)."""
    taken = routed_networks()
    for third in range(50, 100):
        candidate = ipaddress.IPv4Network(f"198.18.{third}.0/24")
        if not any(candidate.overlaps(network) for network in taken):
            return str(candidate)
    raise ValueError("no free /24 in 198.18.50.0-198.18.99.0 for the e2e stack (other runs hold them)")


def refuse_routed(plan: dict[str, Any], source: str) -> None:
    """Refuse a stack whose network this host already routes (another run's, or a lab's): nothing starts."""
    network = ipaddress.IPv4Network(plan["haproxy-lab:network"]["cidr"])
    clash = overlapping_routes(network)
    if clash:
        raise ValueError(
            f"{source}: haproxy-lab:network.cidr {network} overlaps a network this host already routes "
            f"({', '.join(clash)}); another run may be using it: wait for it, or give the stack another network "
            "in 198.18.0.0/15"
        )


def client_address(plan: dict[str, Any]) -> ipaddress.IPv4Interface:
    """A free host address of the lab's network for the load client (the highest one no key uses)."""
    network = ipaddress.IPv4Network(plan["haproxy-lab:network"]["cidr"])
    used = {ipaddress.ip_address(value) for _, value in addresses(plan) if "/" not in value}
    for candidate in reversed(list(network.hosts())[-64:]):
        if candidate not in used:
            return ipaddress.IPv4Interface(f"{candidate}/{network.prefixlen}")
    raise ValueError(f"no free address left for the load client in {network}")


def gateway(plan: dict[str, Any]) -> ipaddress.IPv4Interface:
    network = ipaddress.IPv4Network(plan["haproxy-lab:network"]["cidr"])
    return ipaddress.IPv4Interface(f"{plan['haproxy-lab:network']['gateway']}/{network.prefixlen}")
