"""The config model: the dev plan parses, and every bad input is refused naming its key and the fix."""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plan.model import ConfigError, LabConfig
from plan.parse import parse_lab_config
from plan.stack_file import load_stack_file, raw_project_config, secret_keys
from render.file_names import image_file_name
from tests.plans import dev_raw


def test_dev_stack_is_the_reports_plan() -> None:
    lab = load_stack_file("dev")
    assert lab.network.cidr == ipaddress.IPv4Network("10.0.0.0/16")
    assert lab.network.gateway == ipaddress.IPv4Address("10.0.0.1")
    assert [str(d) for d in lab.network.dns] == ["10.0.200.2", "8.8.8.8"]
    assert lab.network.domain == "mvgroup.local"
    assert lab.network.bridge == "vmbr1"
    assert (lab.load_balancers[0].name, str(lab.load_balancers[0].ip)) == ("HAPROXY-SAM", "10.0.0.30")
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
    ("webServers.0.vmId", 131.5, "haproxy-lab:webServers[0].vmId: 131.5 is a fractional number, not a whole number"),
    ("webServers.1.vmId", 131, "haproxy-lab:webServers[1].vmId: 131 is already used by webServers[0]"),
    ("webServers", [], "haproxy-lab:webServers: is empty; expected a list of at least one {name, ip, message}"),
    ("webServers", {"name": "WEB1-SAM"}, "haproxy-lab:webServers: is an object; expected a list"),
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
    ("vm.diskGb", "big", "haproxy-lab:vm.diskGb: 'big' is a string, not a whole number"),
    # sshd holds 22 on the load balancer, and the firewall would open SSH to the client network
    ("haproxy.frontendPort", 22, "haproxy-lab:haproxy.frontendPort: 22 is SSH's port; expected a port sshd"),
    ("haproxy.statsPort", 22, "haproxy-lab:haproxy.statsPort: 22 is SSH's port"),
    ("haproxy.balanse", "source", "haproxy-lab:haproxy.balanse: is not a known setting (did you mean `balance`?)"),
    ("proxmox.imageUrl", "https://x/?a=.img", "haproxy-lab:proxmox.imageUrl: 'https://x/?a=.img' does not end"),
    ("proxmox.imageUrl", "https://x/.qcow2", "haproxy-lab:proxmox.imageUrl: 'https://x/.qcow2' does not end"),
    ("proxmox.imageUrl", "https:///noble.img", "haproxy-lab:proxmox.imageUrl: 'https:///noble.img' is not an http"),
    # accounts and groups of the Ubuntu cloud image: cloud-init cannot create the admin user over them
    *(
        ("ssh.user", user, f"haproxy-lab:ssh.user: {user!r} is a system account")
        for user in ("www-data", "backup", "sshd", "syslog", "systemd-network", "_apt", "users", "docker", "lxd")
    ),
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


def test_a_signed_image_url_keeps_its_file_name() -> None:
    raw = dev_raw()
    raw["proxmox"]["imageUrl"] = "https://mirror.example/images/noble.img?token=abc"
    assert parse_lab_config(raw).proxmox.image_url.endswith("?token=abc")
    assert image_file_name("dev", "https://mirror.example/images/noble.img?token=abc", None).endswith("-noble.qcow2")


def test_the_template_vm_id_cannot_be_a_vm_of_the_lab() -> None:
    raw = dev_raw()
    raw["webServers"][1]["vmId"] = 9000
    raw["proxmox"]["templateVmId"] = 9000
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert caught.value.problems == (
        "haproxy-lab:proxmox.templateVmId: 9000 is also webServers[1].vmId; expected the id of an existing "
        "template VM, not of a VM this lab creates",
    )


def test_a_misspelt_top_level_key_is_refused_with_the_closest_key() -> None:
    raw = dev_raw()
    raw["hapoxy"] = raw.pop("haproxy")
    raw["statsPasword"] = "x"
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert caught.value.problems[:2] == (
        "haproxy-lab:hapoxy: is not a known setting (did you mean `haproxy`?); expected one of network, proxmox, "
        "vm, ssh, haproxy, loadBalancer, webServers, tls, sshPrivateKey, statsPassword, tlsPrivateKey",
        "haproxy-lab:statsPasword: is not a known setting (did you mean `statsPassword`?); expected one of "
        "network, proxmox, vm, ssh, haproxy, loadBalancer, webServers, tls, sshPrivateKey, statsPassword, "
        "tlsPrivateKey",
    )


PASTED_KEY = (
    "-----BEGIN OPENSSH PRIVATE KEY-----\n" + "b3BlbnNzaC1rZXktdjEAAAAA" * 40 + "\n-----END OPENSSH PRIVATE KEY-----\n"
)


def test_values_of_secret_keys_are_never_repeated() -> None:
    """A private key pasted into a secret `ssh` object: the error names the key, never the value."""
    raw = dev_raw()
    raw["ssh"]["publicKey"] = PASTED_KEY
    raw["ssh"]["user"] = "www-data"
    raw["haproxy"]["statsUser"] = PASTED_KEY
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw, secret_keys={"ssh", "haproxy"})
    text = str(caught.value)
    assert "haproxy-lab:ssh.publicKey: (a secret value, not shown) " in text
    assert "haproxy-lab:ssh.user: (a secret value, not shown) is a system account" in text
    assert "haproxy-lab:haproxy.statsUser: (a secret value, not shown)" in text
    for fragment in ("b3BlbnNzaC1r", "BEGIN OPENSSH", "www-data"):
        assert fragment not in text


def test_long_values_are_cut_in_errors() -> None:
    raw = dev_raw()
    raw["ssh"]["publicKey"] = PASTED_KEY
    raw["webServers"][0]["message"] = "x" * 5000
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert len(caught.value.problems) == 2
    for problem in caught.value.problems:
        assert len(problem) < 300, problem
    assert f"haproxy-lab:webServers[0].message: '{'x' * 76}... is longer than 200 characters" in str(caught.value)


def test_a_shared_nested_value_is_not_expanded_in_errors() -> None:
    """What an alias bomb builds: one list shared at every level (10**6 leaves); the error stays short."""
    bomb: Any = ["lol"]
    for _ in range(6):
        bomb = [bomb] * 10
    raw = dev_raw()
    raw["webServers"][0]["name"] = bomb
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert len(str(caught.value)) < 400


def test_the_stack_file_reader_refuses_yaml_aliases(tmp_path: Path) -> None:
    bomb = tmp_path / "Pulumi.bomb.yaml"
    lines = ["config:", '  haproxy-lab:vm: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  haproxy-lab:x{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]" for i in range(1, 10)]
    bomb.write_text("\n".join(lines) + "\n")
    with pytest.raises(ConfigError) as caught:
        raw_project_config(bomb)
    assert caught.value.problems == (
        "Pulumi.bomb.yaml:2: uses a YAML anchor or alias (&name, *name); expected plain YAML",
    )


def test_the_stack_file_reader_reports_broken_yaml(tmp_path: Path) -> None:
    broken = tmp_path / "Pulumi.broken.yaml"
    broken.write_text("config:\n  haproxy-lab:vm: [1, 2\n")
    with pytest.raises(ConfigError, match=r"Pulumi.broken.yaml:3: is not valid YAML"):
        raw_project_config(broken)


def test_the_stack_file_reader_hides_secure_values(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.s.yaml"
    document = {"config": {f"haproxy-lab:{key}": value for key, value in dev_raw().items()}}
    document["config"]["haproxy-lab:ssh"]["user"] = {"secure": "v1:ciphertext-of-the-user"}
    stack.write_text(yaml.safe_dump(document))
    raw = raw_project_config(stack)
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw, secret_keys=secret_keys(raw))
    assert "haproxy-lab:ssh.user: (a secret value, not shown) is an object" in str(caught.value)
    assert "ciphertext" not in str(caught.value)


def test_a_host_name_too_long_with_the_domain_is_refused_before_rendering() -> None:
    """The renderers write name.domain (cloud-init's fqdn, the health-check Host): DNS allows 253 characters."""
    raw = dev_raw()
    raw["network"]["domain"] = ".".join(["d" * 63] * 3) + ".lab"  # 195 characters, a valid domain
    raw["loadBalancer"]["name"] = "L" * 63
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(raw)
    assert caught.value.problems == (
        "haproxy-lab:loadBalancer.name: with network.domain it makes a 259-character name; expected a host name "
        "and domain of at most 253 characters together",
    )
