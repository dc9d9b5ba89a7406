"""Stack config -> the validated plan (plan.model): every problem found at once, each naming its key.

Why a pure module: the whole plan is checked here, before any resource is declared, so a bad stack
config fails `pulumi preview` with every problem named by its key, and the same model feeds the
Pulumi components, the local rehearsal and the tests. Nothing here reads `pulumi.Config`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from plan import values as v
from plan.app_contract import HEALTH_PATH
from plan.cross_checks import check_fqdns, check_ports, check_template_vm_id
from plan.model import (
    ConfigError,
    Haproxy,
    Host,
    LabConfig,
    Network,
    Proxmox,
    Ssh,
    VmSize,
    WebServer,
)
from plan.pair import HA_KEYS, check_virtual_ip, parse_nodes, parse_pair
from plan.tls import TLS_PRIVATE_KEY, parse_tls

# Every top-level key of the `haproxy-lab:` namespace: the plan's objects, then the two secrets.
PLAN_KEYS = ("network", "proxmox", "vm", "ssh", "haproxy", "loadBalancer", "webServers", "tls")
SECRET_SETTINGS = ("sshPrivateKey", "statsPassword", TLS_PRIVATE_KEY)


def _parse_network(
    r: v.Reader, raw_any: Any
) -> tuple[Network | None, ipaddress.IPv4Network | None, ipaddress.IPv4Address | None]:
    """The network, plus its cidr and gateway alone: hosts are checked against them even when,
    say, the domain is wrong, so one run reports every problem."""
    raw = r.mapping(raw_any, "network")
    r.unknown_keys(raw, "network", ("cidr", "gateway", "dns", "domain", "bridge"))
    cidr = r.value(raw, "network", "cidr", v.ipv4_network, "an IPv4 network such as 10.0.0.0/16")
    gateway = r.value(raw, "network", "gateway", v.ipv4, "the IPv4 address of the network's router, e.g. 10.0.0.1")
    dns = r.value(raw, "network", "dns", v.ipv4_list, "a list of IPv4 DNS servers, e.g. [10.0.200.2, 8.8.8.8]")
    domain = r.value(raw, "network", "domain", v.text(v.DOMAIN, 253), "a DNS search domain such as mvgroup.local")
    bridge = r.value(raw, "network", "bridge", v.text(v.BRIDGE, 15), "a Proxmox bridge name such as vmbr1", "vmbr1")
    if cidr is not None and gateway is not None:
        if gateway not in cidr:
            shown_cidr = r.show("network.cidr", cidr)
            r.fail(
                "network.gateway",
                f"{r.show('network.gateway', gateway)} lies outside network.cidr {shown_cidr}",
                f"an address inside {shown_cidr}",
            )
        elif gateway in (cidr.network_address, cidr.broadcast_address):
            r.fail(
                "network.gateway",
                f"{r.show('network.gateway', gateway)} is the network or broadcast address",
                "a host address",
            )
    if cidr is None or gateway is None or dns is None or domain is None or bridge is None:
        return None, cidr, gateway
    return Network(cidr=cidr, gateway=gateway, dns=dns, domain=domain, bridge=bridge), cidr, gateway


def _parse_host(r: v.Reader, raw_any: Any, key: str, *, web: bool, more_keys: Sequence[str] = ()) -> Host | None:
    raw = r.mapping(raw_any, key)
    known = ("name", "ip", "vmId", "key", "message") if web else ("name", "ip", "vmId", "key", *more_keys)
    r.unknown_keys(raw, key, known)
    name = r.value(
        raw, key, "name", v.hostname, "a hostname: 1-63 letters, digits or '-', not starting or ending with '-'"
    )
    ip = r.value(raw, key, "ip", v.ipv4, "the VM's static IPv4 address inside network.cidr")
    vm_id = (
        r.value(raw, key, "vmId", v.vm_id, "a Proxmox VM id from 100 to 999999999, or no vmId", None)
        if raw.get("vmId") is not None
        else None
    )
    resource_key = (
        r.value(
            raw,
            key,
            "key",
            v.text(v.RESOURCE_KEY, 63),
            "the resource key to keep (1-63 lower-case letters, digits or '-'), e.g. the old name in lower case",
        )
        if raw.get("key") is not None
        else None
    )
    if not web:
        return None if name is None or ip is None else Host(name=name, ip=ip, vm_id=vm_id, resource_key=resource_key)
    message = r.value(raw, key, "message", v.message, "the text `GET /` answers, up to 200 printable characters")
    if name is None or ip is None or message is None:
        return None
    return WebServer(name=name, ip=ip, vm_id=vm_id, resource_key=resource_key, message=message)


def _check_hosts(
    r: v.Reader,
    cidr: ipaddress.IPv4Network | None,
    gateway: ipaddress.IPv4Address | None,
    hosts: Sequence[tuple[str, Host]],
) -> None:
    """Cross-checks: addresses inside the network, not reserved, and nothing used twice."""
    seen_ips: dict[ipaddress.IPv4Address, str] = {}
    seen_names: dict[str, str] = {}
    seen_keys: dict[str, str] = {}
    seen_ids: dict[int, str] = {}
    net = r.show("network.cidr", cidr)
    for key, host in hosts:
        ip = r.show(key, host.ip)
        if cidr is not None:
            if host.ip not in cidr:
                r.fail(f"{key}.ip", f"{ip} lies outside network.cidr {net}", f"an address inside {net}")
            elif host.ip == cidr.network_address:
                r.fail(f"{key}.ip", f"{ip} is the network address of {net}", "a host address")
            elif host.ip == cidr.broadcast_address:
                r.fail(f"{key}.ip", f"{ip} is the broadcast address of {net}", "a host address")
            elif host.ip == gateway:
                r.fail(f"{key}.ip", f"{ip} is the gateway's address", "an address of its own")
        if host.ip in seen_ips:
            r.fail(f"{key}.ip", f"{ip} is already used by {seen_ips[host.ip]}", "a different address for each VM")
        seen_ips.setdefault(host.ip, key)
        duplicate_name = host.name.lower() in seen_names
        if duplicate_name:
            r.fail(
                f"{key}.name",
                f"{r.show(key, host.name, quote=True)} is already used by {seen_names[host.name.lower()]}",
                "a different name for each VM (names are case-insensitive)",
            )
        seen_names.setdefault(host.name.lower(), key)
        # One resource key for two hosts would give them the same resource names (a duplicate name is
        # already reported above when both keys are the default).
        if host.key in seen_keys and not (duplicate_name and host.resource_key is None):
            r.fail(
                f"{key}.key",
                f"{r.show(key, host.key, quote=True)} is already the resource key of {seen_keys[host.key]}",
                "a key of its own (a host's key defaults to its name in lower case)",
            )
        seen_keys.setdefault(host.key, key)
        if host.vm_id is not None:
            if host.vm_id in seen_ids:
                r.fail(
                    f"{key}.vmId",
                    f"{r.show(key, host.vm_id)} is already used by {seen_ids[host.vm_id]}",
                    "a different VM id",
                )
            seen_ids.setdefault(host.vm_id, key)


def _parse_proxmox(r: v.Reader, raw_any: Any) -> Proxmox | None:
    raw = r.mapping(raw_any, "proxmox")
    known = (
        "node",
        "vmDatastore",
        "imageDatastore",
        "snippetsDatastore",
        "imageUrl",
        "imageChecksum",
        "templateVmId",
        "bootDisk",
    )
    r.unknown_keys(raw, "proxmox", known)
    ident = v.text(v.PROXMOX_ID, 64)
    nodes = parse_nodes(r, raw.get("node"), ident)
    vm_ds = r.value(raw, "proxmox", "vmDatastore", ident, "a datastore for VM disks", "local-lvm")
    image_ds = r.value(raw, "proxmox", "imageDatastore", ident, "a datastore with the Import content type", "local")
    snip_ds = r.value(raw, "proxmox", "snippetsDatastore", ident, "a datastore with the Snippets content type", "local")
    url = r.value(
        raw,
        "proxmox",
        "imageUrl",
        v.image_url,
        "an http(s) URL of an Ubuntu 24.04 cloud image whose path ends in a file name such as noble.img or noble.qcow2",
        v.DEFAULT_IMAGE_URL,
    )
    checksum = (
        r.value(
            raw,
            "proxmox",
            "imageChecksum",
            v.text(v.SHA256_HEX, 64),
            "the image's SHA-256 as 64 hex digits, from the SHA256SUMS file next to imageUrl",
        )
        if raw.get("imageChecksum") is not None
        else None
    )
    template = (
        r.value(raw, "proxmox", "templateVmId", v.vm_id, "the VM id of a cloud-init-ready template, or none", None)
        if raw.get("templateVmId") is not None
        else None
    )

    def boot_disk(value: Any) -> str:
        disk = v.text(max_len=16)(value)
        if disk not in v.BOOT_DISKS:
            raise ValueError("is not a boot disk interface this lab supports")
        return disk

    boot = r.value(
        raw,
        "proxmox",
        "bootDisk",
        boot_disk,
        f"one of {', '.join(v.BOOT_DISKS)} (a template's boot disk: see its Hardware tab)",
        "virtio0",
    )
    if nodes is None or vm_ds is None or image_ds is None or snip_ds is None or url is None or boot is None:
        return None
    return Proxmox(
        nodes=nodes,
        vm_datastore=vm_ds,
        image_datastore=image_ds,
        snippets_datastore=snip_ds,
        image_url=url,
        image_checksum=None if checksum is None else checksum.lower(),
        template_vm_id=template,
        boot_disk=boot,
    )


def _parse_vm_size(r: v.Reader, raw_any: Any) -> VmSize | None:
    raw = r.mapping(raw_any, "vm", required=False)
    r.unknown_keys(raw, "vm", ("cores", "memoryMb", "diskGb"))
    cores = r.value(raw, "vm", "cores", v.integer(1, 128), "a number of cores from 1 to 128", 2)
    memory = r.value(raw, "vm", "memoryMb", v.integer(512, 1_048_576), "memory in MB, at least 512", 2048)
    disk = r.value(
        raw,
        "vm",
        "diskGb",
        v.integer(4, 65_536),
        "a disk size in GB, at least 4 (the Ubuntu cloud image is 3.5 GB)",
        20,
    )
    if cores is None or memory is None or disk is None:
        return None
    return VmSize(cores=cores, memory_mb=memory, disk_gb=disk)


def _parse_ssh(r: v.Reader, raw_any: Any, cidr: ipaddress.IPv4Network | None) -> Ssh | None:
    raw = r.mapping(raw_any, "ssh")
    r.unknown_keys(raw, "ssh", ("user", "publicKey", "adminCidr"))
    user = r.value(
        raw,
        "ssh",
        "user",
        v.admin_user,
        "a personal Linux user name (lower case letters, digits, '_' or '-'), e.g. samuel",
    )
    key = r.value(
        raw,
        "ssh",
        "publicKey",
        v.text(v.SSH_PUBLIC_KEY, 16_384),
        "one OpenSSH public key line, e.g. `ssh-ed25519 AAAA... you@host`",
    )
    default_admin = str(cidr) if cidr is not None else "0.0.0.0/32"
    admin = r.value(
        raw,
        "ssh",
        "adminCidr",
        v.ipv4_network,
        "the IPv4 network SSH and the stats page are open to, e.g. 10.0.0.0/16",
        default_admin,
    )
    if user is None or key is None or admin is None:
        return None
    return Ssh(user=user, public_key=key, admin_cidr=admin)


def _parse_haproxy(r: v.Reader, raw_any: Any, cidr: ipaddress.IPv4Network | None) -> Haproxy | None:
    raw = r.mapping(raw_any, "haproxy", required=False)
    known = ("balance", "frontendPort", "statsPort", "statsUser", "clientCidr")
    if "healthPath" in raw:
        r.fail(
            "haproxy.healthPath",
            f"is no longer a setting: the health path is part of the web app's contract ({HEALTH_PATH})",
            "no healthPath key: remove it from the stack file",
        )
        raw = {name: value for name, value in raw.items() if name != "healthPath"}
    r.unknown_keys(raw, "haproxy", known)

    def balance(value: Any) -> str:
        text = v.text(max_len=32)(value)
        if text not in v.BALANCE_ALGORITHMS:
            raise ValueError("is not a balance algorithm this lab supports")
        return text

    algorithm = r.value(raw, "haproxy", "balance", balance, f"one of {', '.join(v.BALANCE_ALGORITHMS)}", "roundrobin")
    frontend = r.value(raw, "haproxy", "frontendPort", v.integer(1, 65535), "a TCP port from 1 to 65535", v.HTTP_PORT)
    stats = r.value(raw, "haproxy", "statsPort", v.integer(1, 65535), "a TCP port from 1 to 65535", 8404)
    user = r.value(
        raw,
        "haproxy",
        "statsUser",
        v.text(v.STATS_USER, 32),
        "1-32 letters, digits, '.', '_' or '-', e.g. admin",
        "admin",
    )
    default_clients = str(cidr) if cidr is not None else "0.0.0.0/32"
    clients = r.value(
        raw,
        "haproxy",
        "clientCidr",
        v.ipv4_network,
        "the IPv4 network allowed to reach the site, e.g. 10.0.0.0/16",
        default_clients,
    )
    check_ports(r, frontend, stats)
    if algorithm is None or frontend is None or stats is None or user is None or clients is None:
        return None
    return Haproxy(
        balance=algorithm,
        frontend_port=frontend,
        stats_port=stats,
        stats_user=user,
        client_cidr=clients,
    )


def parse_lab_config(raw: Mapping[str, Any], *, secret_keys: Collection[str] = ()) -> LabConfig:
    """Build the validated model from the stack's raw values (keys without the `haproxy-lab:` prefix).

    `secret_keys` names the keys stored as secrets: their values never appear in a message. The two
    secret settings may be in `raw` (they are checked by plan.config); any other unknown key is refused.
    Raises ConfigError listing every problem; never returns a partial model.
    """
    r = v.Reader(secret_keys)
    r.unknown_keys(raw, "", (*PLAN_KEYS, *SECRET_SETTINGS))
    network, cidr, gateway = _parse_network(r, raw.get("network"))
    proxmox = _parse_proxmox(r, raw.get("proxmox"))
    vm_size = _parse_vm_size(r, raw.get("vm"))
    ssh = _parse_ssh(r, raw.get("ssh"), cidr)
    haproxy = _parse_haproxy(r, raw.get("haproxy"), cidr)
    load_balancer = _parse_host(r, raw.get("loadBalancer"), "loadBalancer", web=False, more_keys=HA_KEYS)
    standby, virtual_ip, pair_ok = parse_pair(
        r, raw.get("loadBalancer"), lambda r, raw, key: _parse_host(r, raw, key, web=False)
    )

    raw_web = raw.get("webServers")
    web_servers: list[WebServer] = []
    web_ok = True
    if raw_web is None:
        r.fail("webServers", "is not set", "a list of at least one {name, ip, message}")
        web_ok = False
    elif not isinstance(raw_web, list):
        r.fail("webServers", f"is {v.kind(raw_web)}", "a list of at least one {name, ip, message}")
        web_ok = False
    elif not raw_web:
        r.fail("webServers", "is empty", "a list of at least one {name, ip, message}")
        web_ok = False
    else:
        for index, item in enumerate(raw_web):
            server = _parse_host(r, item, f"webServers[{index}]", web=True)
            if isinstance(server, WebServer):
                web_servers.append(server)
            else:
                web_ok = False

    hosts: list[tuple[str, Host]] = []
    if load_balancer is not None:
        hosts.append(("loadBalancer", load_balancer))
    if standby is not None:
        hosts.append(("loadBalancer.standby", standby))
    hosts.extend((f"webServers[{i}]", s) for i, s in enumerate(web_servers))
    _check_hosts(r, cidr, gateway, hosts)
    check_fqdns(r, network, hosts)
    check_template_vm_id(r, proxmox, hosts)
    if virtual_ip is not None:
        check_virtual_ip(r, cidr, gateway, virtual_ip, hosts)
    tls, tls_ok = parse_tls(r, raw.get("tls"), haproxy, hosts, virtual_ip)

    if (
        r.problems
        or not web_ok
        or network is None
        or proxmox is None
        or vm_size is None
        or ssh is None
        or haproxy is None
        or load_balancer is None
        or not pair_ok
        or not tls_ok
    ):
        # Every None above comes with a recorded problem; the fallback message is a safety net.
        raise ConfigError(r.problems or ["the configuration is incomplete"])
    return LabConfig(
        network=network,
        proxmox=proxmox,
        vm_size=vm_size,
        ssh=ssh,
        haproxy=haproxy,
        load_balancers=(load_balancer,) if standby is None else (load_balancer, standby),
        web_servers=tuple(web_servers),
        virtual_ip=virtual_ip,
        tls=tls,
    )
