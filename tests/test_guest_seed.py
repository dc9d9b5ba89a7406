"""The NoCloud seed the guests boot with is the one qemu-server writes (PVE/QemuServer/Cloudinit.pm), and
the allow-list and Docker ranges the machines write are what they claim. Pure functions: no root needed."""

from __future__ import annotations

import hashlib
import ipaddress
import re

import pytest

from e2e.guests.proxy import ALLOWED_HOSTS, filter_text
from e2e.guests.seed import meta_data, network_config, nic_mac, seed_for
from e2e.guests.stand_ins import docker_networks
from e2e.machines import VmSpec

CONFIG = {
    "net0": "virtio=BC:24:11:0A:1B:2C,bridge=vmbr1,firewall=1",
    "ipconfig0": "ip=198.18.7.31/24,gw=198.18.7.1",
    "nameserver": "198.18.7.1 198.18.7.2",
    "searchdomain": "mvgroup.local",
    "cicustom": "user=local:snippets/web1.yaml",
}

# What nocloud_network prints for CONFIG: version 1, eth0 matched by the MAC in lower case, dotted netmask.
EXPECTED_NETWORK = """version: 1
config:
    - type: physical
      name: eth0
      mac_address: 'bc:24:11:0a:1b:2c'
      subnets:
      - type: static
        address: '198.18.7.31'
        netmask: '255.255.255.0'
        gateway: '198.18.7.1'
    - type: nameserver
      address:
      - '198.18.7.1'
      - '198.18.7.2'
      search:
      - 'mvgroup.local'
"""


USER_DATA = "#cloud-config\n{}\n"


def spec(config: dict[str, str], user_data: str | None = USER_DATA) -> VmSpec:
    return VmSpec(vmid=131, name="WEB1-SAM", node="pve", config=config, user_data=user_data)


def test_network_config_is_qemu_servers_nocloud_v1() -> None:
    assert network_config(CONFIG) == EXPECTED_NETWORK


def test_the_nameserver_entry_is_written_even_without_dns_settings() -> None:
    bare = {key: value for key, value in CONFIG.items() if key not in ("nameserver", "searchdomain")}
    assert network_config(bare).endswith("      gateway: '198.18.7.1'\n    - type: nameserver\n")


def test_nics_without_ipconfig_are_skipped_and_order_is_perls_string_sort() -> None:
    config = {**CONFIG, "net1": "virtio=BC:24:11:00:00:01", "net2": "virtio=BC:24:11:00:00:02"}
    config |= {"net10": "virtio=BC:24:11:00:00:10", "ipconfig10": "ip=dhcp", "ipconfig2": "ip=dhcp"}
    text = network_config(config)
    assert "name: eth1\n" not in text
    assert text.index("name: eth0") < text.index("name: eth10") < text.index("name: eth2")
    assert "      - type: dhcp4\n" in text


def test_instance_id_is_the_sha1_of_user_data_then_network_config() -> None:
    seed = seed_for(spec(CONFIG))
    digest = hashlib.sha1(USER_DATA.encode() + EXPECTED_NETWORK.encode(), usedforsecurity=False).hexdigest()
    assert seed.meta_data == f"instance-id: {digest}\n"
    assert seed.instance_id == seed.meta_data.split(": ")[1].strip()
    assert seed.user_data == "#cloud-config\n{}\n"
    assert seed.vendor_data == ""


def test_a_changed_network_or_user_data_is_a_new_instance_and_nothing_else_is() -> None:
    first = seed_for(spec(CONFIG)).instance_id
    assert seed_for(spec(dict(CONFIG))).instance_id == first
    assert seed_for(spec({**CONFIG, "ipconfig0": "ip=198.18.7.32/24,gw=198.18.7.1"})).instance_id != first
    assert seed_for(spec({**CONFIG, "nameserver": "198.18.7.9"})).instance_id != first
    assert seed_for(spec(CONFIG, user_data="#cloud-config\nhostname: x\n")).instance_id != first
    # Not part of the seed: a change elsewhere in the VM config (memory, tags) is the same instance.
    assert seed_for(spec({**CONFIG, "memory": "4096", "tags": "x"})).instance_id == first


def test_meta_data_has_nothing_but_the_instance_id() -> None:
    assert re.fullmatch(r"instance-id: [0-9a-f]{40}\n", meta_data("a", "b"))


@pytest.mark.parametrize(
    ("net", "mac"),
    [("virtio=BC:24:11:0A:1B:2C,bridge=vmbr1", "BC:24:11:0A:1B:2C"), ("e1000=02:00:00:00:00:01", "02:00:00:00:00:01")],
)
def test_the_mac_comes_from_the_model_key(net: str, mac: str) -> None:
    assert nic_mac(net) == mac


def test_a_vm_without_user_data_snippet_or_mac_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match="no cicustom user= snippet"):
        seed_for(spec(CONFIG, user_data=None))
    with pytest.raises(ValueError, match="no MAC address"):
        seed_for(spec({**CONFIG, "net0": "virtio,bridge=vmbr1"}))
    with pytest.raises(ValueError, match="network= snippets are not supported"):
        seed_for(spec({**CONFIG, "cicustom": "user=local:snippets/a.yaml,network=local:snippets/n.yaml"}))


def test_the_allow_list_is_anchored_and_escaped() -> None:
    patterns = [re.compile(line, re.IGNORECASE) for line in filter_text(ALLOWED_HOSTS).splitlines()]

    def allowed(host: str) -> bool:
        return any(p.search(host) for p in patterns)

    assert all(allowed(host) for host in ALLOWED_HOSTS)
    for host in ("deb.debian.org.evil.test", "evilpypi.org", "pypiXorg", "example.org", "files.pythonhosted.org.x"):
        assert not allowed(host), host


@pytest.mark.parametrize("gateway", ["198.18.7.1/24", "198.19.255.1/24", "198.18.0.1/16", "198.19.0.1/16"])
def test_dockers_networks_in_a_guest_stay_off_the_guests_subnet(gateway: str) -> None:
    subnet = ipaddress.IPv4Interface(gateway).network
    bip, pool = docker_networks(ipaddress.IPv4Interface(gateway))
    for network in (ipaddress.IPv4Interface(bip).network, ipaddress.IPv4Network(pool)):
        assert network.subnet_of(ipaddress.IPv4Network("198.18.0.0/15"))
        assert not network.overlaps(subnet)
    assert not ipaddress.IPv4Interface(bip).network.overlaps(ipaddress.IPv4Network(pool))
