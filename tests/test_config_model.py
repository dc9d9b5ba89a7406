"""The config model: the dev plan parses, and every bad input is refused naming its key and the fix."""

from __future__ import annotations

import ipaddress
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plan.model import ConfigError, LabConfig
from plan.parse import parse_lab_config
from plan.stack_file import load_stack_file
from tests.plans import dev_raw


def test_dev_stack_is_the_reports_plan() -> None:
    lab = load_stack_file("dev")
    assert lab.network.cidr == ipaddress.IPv4Network("10.0.0.0/16")
    assert lab.network.gateway == ipaddress.IPv4Address("10.0.0.1")
    assert [str(d) for d in lab.network.dns] == ["10.0.200.2", "8.8.8.8"]
    assert lab.network.domain == "mvgroup.local"
    assert lab.network.bridge == "vmbr1"
    assert (lab.load_balancer.name, str(lab.load_balancer.ip)) == ("HAPROXY-SAM", "10.0.0.30")
    assert [(s.name, str(s.ip), s.message) for s in lab.web_servers] == [
        ("WEB1-SAM", "10.0.0.31", "Serveur 1"),
        ("WEB2-SAM", "10.0.0.32", "Serveur 2"),
    ]
    assert (lab.vm_size.cores, lab.vm_size.memory_mb, lab.vm_size.disk_gb) == (2, 2048, 20)
    assert (lab.haproxy.balance, lab.haproxy.stats_port) == ("roundrobin", 8404)


def test_defaults_fill_the_optional_sections() -> None:
    raw = dev_raw()
    for optional in ("vm", "haproxy"):
        del raw[optional]
    del raw["ssh"]["adminCidr"]
    lab = parse_lab_config(raw)
    assert (lab.vm_size.cores, lab.vm_size.memory_mb, lab.vm_size.disk_gb) == (2, 2048, 20)
    assert lab.haproxy.balance == "roundrobin"
    assert lab.haproxy.frontend_port == 80
    assert lab.haproxy.client_cidr == lab.network.cidr
    assert lab.ssh.admin_cidr == lab.network.cidr


def _set(path: str, value: Any) -> Any:
    def mutate(raw: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = raw
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        if value is _DELETE:
            del node[last]
        elif last.isdigit():
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


_DELETE = object()

BAD = [
    ("webServers.0.ip", "10.1.0.31", "haproxy-lab:webServers[0].ip: 10.1.0.31 lies outside network.cidr 10.0.0.0/16"),
    ("webServers.0.ip", "10.0.0.999", "haproxy-lab:webServers[0].ip: '10.0.0.999' is not an IPv4 address"),
    ("webServers.0.ip", "fe80::1", "haproxy-lab:webServers[0].ip: 'fe80::1' is not an IPv4 address"),
    ("webServers.1.ip", "10.0.0.30", "haproxy-lab:webServers[1].ip: 10.0.0.30 is already used by loadBalancer"),
    ("loadBalancer.ip", "10.0.0.0", "haproxy-lab:loadBalancer.ip: 10.0.0.0 is the network address of 10.0.0.0/16"),
    ("loadBalancer.ip", "10.0.255.255", "is the broadcast address of 10.0.0.0/16"),
    ("loadBalancer.ip", "10.0.0.1", "haproxy-lab:loadBalancer.ip: 10.0.0.1 is the gateway's address"),
    ("network.gateway", "10.9.0.1", "haproxy-lab:network.gateway: 10.9.0.1 lies outside network.cidr 10.0.0.0/16"),
    ("network.cidr", "10.0.0.1/16", "haproxy-lab:network.cidr: '10.0.0.1/16' is not an IPv4 network"),
    ("network.dns", [], "haproxy-lab:network.dns: [] is not a non-empty list"),
    ("network.dns", ["10.0.200.2", "dns.google"], "haproxy-lab:network.dns: "),
    ("webServers.0.name", "", "haproxy-lab:webServers[0].name: '' is empty"),
    ("webServers.0.name", "web_1", "haproxy-lab:webServers[0].name: 'web_1' has a character or form"),
    ("webServers.0.name", "-web1", "haproxy-lab:webServers[0].name: '-web1' has a character or form"),
    ("webServers.0.name", "a" * 64, "is longer than 63 characters"),
    ("webServers.1.name", "Web1-Sam", "haproxy-lab:webServers[1].name: 'Web1-Sam' is already used by webServers[0]"),
    ("loadBalancer.name", "WEB2-SAM", "haproxy-lab:webServers[1].name: 'WEB2-SAM' is already used by loadBalancer"),
    ("webServers.0.message", "line1\nline2", "haproxy-lab:webServers[0].message: 'line1\\nline2' contains a control"),
    ("webServers.0.message", _DELETE, "haproxy-lab:webServers[0].message: is not set"),
    ("webServers.0.vmId", 131.5, "haproxy-lab:webServers[0].vmId: 131.5 is a float, not a whole number"),
    ("webServers.1.vmId", 131, "haproxy-lab:webServers[1].vmId: 131 is already used by webServers[0]"),
    ("webServers", [], "haproxy-lab:webServers: is empty; expected a list of at least one {name, ip, message}"),
    ("webServers", {"name": "WEB1-SAM"}, "haproxy-lab:webServers: is a dict; expected a list"),
    ("haproxy.healthPath", "/healthz", "haproxy-lab:haproxy.healthPath: is no longer a setting"),
    ("haproxy.balance", "weighted", "haproxy-lab:haproxy.balance: 'weighted' is not a balance algorithm"),
    ("webServers.0.name", "WEB1;reboot", "haproxy-lab:webServers[0].name: 'WEB1;reboot' has a character"),
    ("haproxy.statsPort", 80, "haproxy-lab:haproxy.statsPort: 80 is also haproxy.frontendPort"),
    ("haproxy.statsPort", 70000, "haproxy-lab:haproxy.statsPort: 70000 is outside 1..65535"),
    ("haproxy.statsPort", True, "haproxy-lab:haproxy.statsPort: True is a boolean"),
    ("haproxy.statsUser", "ad min", "haproxy-lab:haproxy.statsUser: 'ad min' has a character or form"),
    ("haproxy.unknown", 1, "haproxy-lab:haproxy.unknown: is not a known setting"),
    ("ssh.user", "root", "haproxy-lab:ssh.user: 'root' is a system account"),
    ("ssh.publicKey", "not a key", "haproxy-lab:ssh.publicKey: 'not a key' has a character or form"),
    ("ssh.adminCidr", "0.0.0.0/33", "haproxy-lab:ssh.adminCidr: '0.0.0.0/33' is not an IPv4 network"),
    ("proxmox.node", _DELETE, "haproxy-lab:proxmox.node: is not set; expected the Proxmox node name"),
    ("proxmox.imageUrl", "ftp://x/y.img", "haproxy-lab:proxmox.imageUrl"),
    ("vm.memoryMb", 128, "haproxy-lab:vm.memoryMb: 128 is outside 512..1048576"),
    ("vm.diskGb", "big", "haproxy-lab:vm.diskGb: 'big' is a str, not a whole number"),
]


@pytest.mark.parametrize(("path", "value", "message"), BAD, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD])
def test_bad_input_is_refused_naming_the_key(path: str, value: Any, message: str) -> None:
    raw = dev_raw()
    _set(path, value)(raw)
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert any(message in problem for problem in caught.value.problems), caught.value.problems
    assert all("; expected " in problem for problem in caught.value.problems)


def test_every_problem_is_reported_at_once() -> None:
    raw = dev_raw()
    raw["webServers"][0]["ip"] = "10.1.0.1"
    raw["haproxy"]["balance"] = "nope"
    raw["network"]["domain"] = "bad domain"
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert len(caught.value.problems) == 3
    assert str(caught.value).startswith("invalid stack configuration (3 problem(s)):")


def test_missing_sections_name_their_key() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_lab_config({})
    text = str(caught.value)
    for key in ("network", "proxmox", "ssh", "loadBalancer", "webServers"):
        assert f"haproxy-lab:{key}: is not set" in text


def test_ten_web_servers_parse() -> None:
    raw = dev_raw()
    raw["webServers"] = [{"name": f"WEB{i}", "ip": f"10.0.1.{i}", "message": f"Serveur {i}"} for i in range(1, 11)]
    assert len(parse_lab_config(raw).web_servers) == 10


# --- Property: any input either parses or is refused with the documented error, never anything else.

_json_leaf = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=True),
    st.text(max_size=30),
    st.sampled_from(["10.0.0.77", "10.0.0.1", "10.0.0.0/16", "/healthz", "roundrobin", "0.0.0.0/0", "256.1.1.1"]),
)
_json = st.recursive(
    _json_leaf,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(st.text(max_size=12), children, max_size=4)
    ),
    max_leaves=12,
)


def _leaf_paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(node, dict):
        return [p for k, v in node.items() for p in _leaf_paths(v, (*prefix, k))] or [prefix]
    if isinstance(node, list):
        return [p for i, v in enumerate(node) for p in _leaf_paths(v, (*prefix, i))] or [prefix]
    return [prefix]


def _check_outcome(raw: Any) -> None:
    problems: tuple[str, ...] = ()
    lab: LabConfig | None = None
    try:
        lab = parse_lab_config(raw)
    except ConfigError as error:
        problems = error.problems
    if lab is None:
        assert problems, "a ConfigError always lists its problems"
        for problem in problems:
            assert problem.startswith("haproxy-lab:"), problem
            assert "; expected " in problem, problem
        return
    assert lab.web_servers, "a parsed lab always has a web server"
    for host in lab.hosts:
        assert host.ip in lab.network.cidr
        assert host.ip != lab.network.gateway
    assert len({h.ip for h in lab.hosts}) == len(lab.hosts)
    assert len({h.key for h in lab.hosts}) == len(lab.hosts)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.dictionaries(
        st.sampled_from(["network", "proxmox", "vm", "ssh", "haproxy", "loadBalancer", "webServers", "other"]),
        _json,
        max_size=8,
    )
)
def test_any_mapping_parses_or_is_refused_cleanly(raw: dict[str, Any]) -> None:
    _check_outcome(raw)


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_any_corruption_of_the_dev_plan_parses_or_is_refused_cleanly(data: st.DataObject) -> None:
    raw = dev_raw()
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        path = data.draw(st.sampled_from(_leaf_paths(raw)))
        if not path:
            continue
        node: Any = raw
        for part in path[:-1]:
            node = node[part]
        node[path[-1]] = data.draw(_json)
    _check_outcome(raw)
