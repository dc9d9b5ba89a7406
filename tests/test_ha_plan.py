"""The HA plan: loadBalancer.standby + virtualIp (both or neither), proxmox.node as a list, and placement."""

from __future__ import annotations

import copy
import ipaddress
from typing import Any

import pytest

from plan.model import ConfigError
from plan.parse import parse_lab_config
from plan.stack_file import load_stack_file, raw_project_config, stack_file


def ha_raw() -> dict[str, Any]:
    return copy.deepcopy(raw_project_config(stack_file("ha")))


def test_ha_stack_is_a_pair_behind_the_virtual_ip_with_the_dev_web_servers() -> None:
    lab, dev = load_stack_file("ha"), load_stack_file("dev")
    assert lab.virtual_ip == ipaddress.IPv4Address("10.0.0.30")
    assert [(h.name, str(h.ip), h.vm_id) for h in lab.load_balancers] == [
        ("HAPROXY1-SAM", "10.0.0.33", 133),
        ("HAPROXY2-SAM", "10.0.0.34", 134),
    ]
    assert lab.web_servers == dev.web_servers
    assert lab.site_ip == lab.virtual_ip
    assert [h.name for h in lab.hosts] == ["HAPROXY1-SAM", "HAPROXY2-SAM", "WEB1-SAM", "WEB2-SAM"]


def test_a_single_load_balancer_keeps_its_meaning() -> None:
    lab = load_stack_file("dev")
    assert not lab.is_pair
    assert lab.virtual_ip is None
    assert [lb.name for lb in lab.load_balancers] == ["HAPROXY-SAM"]
    assert lab.site_ip == lab.load_balancers[0].ip


def _problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert all("; expected " in problem for problem in caught.value.problems)
    return list(caught.value.problems)


def _without(key: str) -> dict[str, Any]:
    raw = ha_raw()
    del raw["loadBalancer"][key]
    return raw


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        pytest.param(
            _without("virtualIp"),
            "haproxy-lab:loadBalancer.virtualIp: is not set but loadBalancer.standby is",
            id="standby-without-vip",
        ),
        pytest.param(
            _without("standby"),
            "haproxy-lab:loadBalancer.standby: is not set but loadBalancer.virtualIp is",
            id="vip-without-standby",
        ),
    ],
)
def test_both_or_neither(raw: dict[str, Any], message: str) -> None:
    assert any(message in problem for problem in _problems(raw))


def _vip(value: str) -> dict[str, Any]:
    raw = ha_raw()
    raw["loadBalancer"]["virtualIp"] = value
    return raw


def _standby_ip(value: str) -> dict[str, Any]:
    raw = ha_raw()
    raw["loadBalancer"]["standby"]["ip"] = value
    return raw


BAD = [
    (_vip("10.1.0.30"), "haproxy-lab:loadBalancer.virtualIp: 10.1.0.30 lies outside network.cidr 10.0.0.0/16"),
    (_vip("10.0.0.33"), "haproxy-lab:loadBalancer.virtualIp: 10.0.0.33 is already used by loadBalancer"),
    (_vip("10.0.0.34"), "haproxy-lab:loadBalancer.virtualIp: 10.0.0.34 is already used by loadBalancer.standby"),
    (_vip("10.0.0.32"), "haproxy-lab:loadBalancer.virtualIp: 10.0.0.32 is already used by webServers[1]"),
    (_vip("10.0.0.1"), "haproxy-lab:loadBalancer.virtualIp: 10.0.0.1 is the gateway's address"),
    (_vip("10.0.0.0"), "haproxy-lab:loadBalancer.virtualIp: 10.0.0.0 is the network address of 10.0.0.0/16"),
    (_vip("10.0.255.255"), "haproxy-lab:loadBalancer.virtualIp: 10.0.255.255 is the broadcast address"),
    (_vip("ten"), "haproxy-lab:loadBalancer.virtualIp: 'ten' is not an IPv4 address"),
    (_standby_ip("10.0.0.33"), "haproxy-lab:loadBalancer.standby.ip: 10.0.0.33 is already used by loadBalancer"),
    (_standby_ip("10.0.0.31"), "haproxy-lab:webServers[0].ip: 10.0.0.31 is already used by loadBalancer.standby"),
    (_standby_ip("10.2.0.1"), "haproxy-lab:loadBalancer.standby.ip: 10.2.0.1 lies outside network.cidr"),
]


@pytest.mark.parametrize(("raw", "message"), BAD, ids=[message.split(": ", 1)[1][:50] for _, message in BAD])
def test_bad_pairs_are_refused_naming_the_key(raw: dict[str, Any], message: str) -> None:
    problems = _problems(raw)
    assert any(message in problem for problem in problems), problems


def test_standby_names_and_vm_ids_are_unique_too() -> None:
    raw = ha_raw()
    raw["loadBalancer"]["standby"].update(name="haproxy1-sam", vmId=131)
    problems = _problems(raw)
    assert any("loadBalancer.standby.name: 'haproxy1-sam' is already used by loadBalancer" in p for p in problems)
    assert any("webServers[0].vmId: 131 is already used by loadBalancer.standby" in p for p in problems)


def test_unknown_standby_keys_are_refused() -> None:
    raw = ha_raw()
    raw["loadBalancer"]["standby"]["message"] = "no"
    assert any("loadBalancer.standby.message: is not a known setting" in p for p in _problems(raw))


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ("pve", ["pve", "pve", "pve", "pve"]),
        (["pve"], ["pve", "pve", "pve", "pve"]),
        (["pve1", "pve2"], ["pve1", "pve2", "pve1", "pve2"]),
        (["pve1", "pve2", "pve3"], ["pve1", "pve2", "pve3", "pve1"]),
    ],
)
def test_vms_are_spread_over_the_nodes_and_the_pair_never_shares_one(nodes: Any, expected: list[str]) -> None:
    raw = ha_raw()
    raw["proxmox"]["node"] = nodes
    lab = parse_lab_config(raw)
    placed = [lab.node_for(host) for host in lab.hosts]
    assert placed == expected
    if len(lab.proxmox.nodes) > 1:
        assert lab.node_for(lab.load_balancers[0]) != lab.node_for(lab.load_balancers[1])


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([], "haproxy-lab:proxmox.node: is an empty list"),
        (["pve1", "pve1"], "haproxy-lab:proxmox.node[1]: 'pve1' is listed twice"),
        (["pve1", "bad node"], "haproxy-lab:proxmox.node[1]: 'bad node' has a character or form"),
        ({"a": 1}, "haproxy-lab:proxmox.node: {'a': 1} is an object, not a string"),
    ],
)
def test_bad_node_lists_are_refused(nodes: Any, message: str) -> None:
    raw = ha_raw()
    raw["proxmox"]["node"] = nodes
    problems = _problems(raw)
    assert any(message in problem for problem in problems), problems
