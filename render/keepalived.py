"""Render keepalived.conf from files/keepalived.conf.j2 for the two load balancers, and what ships with it.

Why here: both load balancers of the pair, the local HA rehearsal (network namespaces) and the tests render
from the same template through the same checks; they differ only in addresses, the interface and where the
track script lives. Every value that lands in the file is checked first, because the rehearsal and the tests
call this directly, bypassing the plan's own validation.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from plan.model import Host, LabConfig
from render.shipping import render_config, script_text

TEMPLATE = "keepalived.conf.j2"
CONF_FILE = "keepalived.conf"
CHECK_SCRIPT_FILE = "check-haproxy.sh"
# Where the VM's track script lives: root-owned all the way up, as keepalived's script security requires.
VM_CHECK_SCRIPT = f"/etc/keepalived/{CHECK_SCRIPT_FILE}"
# Proxmox's cloud-init network config names the VM's only NIC eth0 (matched by MAC); the rehearsal's
# namespaces name theirs eth0 too, so the rendered files differ only in addresses.
INTERFACE = "eth0"
# Centiseconds are VRRPv3's unit: 20 cs adverts put master-down at about 0.7 s (3 x 0.2 s + skew).
ADVERT_INT = 0.2
PRIMARY_PRIORITY = 150  # loadBalancer: wins the first election only (nopreempt)
STANDBY_PRIORITY = 100  # loadBalancer.standby
# HAProxy's liveness listener (loopback only, monitor-uri): the first of these ports the plan does not use.
LIVENESS_PORTS = (8405, 8406, 8407)
LIVENESS_PATH = "/haproxy-alive"

_ROUTER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
_INTERFACE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,14}$")
_PATH = re.compile(r"^/[A-Za-z0-9._/-]{1,200}$")
_URL = re.compile(r"^http://127\.0\.0\.1:[0-9]{1,5}/[A-Za-z0-9._/-]{0,100}$")


@dataclass(frozen=True, kw_only=True)
class KeepalivedSettings:
    """Everything one load balancer's keepalived.conf needs, in VRRP's terms."""

    router_id: str
    own_ip: ipaddress.IPv4Address
    peer_ip: ipaddress.IPv4Address
    virtual_ip: ipaddress.IPv4Address
    prefix_length: int
    priority: int
    virtual_router_id: int
    check_url: str
    check_script: str = VM_CHECK_SCRIPT
    interface: str = INTERFACE
    advert_int: float = ADVERT_INT

    @property
    def master_down_seconds(self) -> float:
        """How long the peer waits without adverts before it takes over: 3 x advert_int + skew (RFC 5798)."""
        return 3 * self.advert_int + (256 - self.priority) * self.advert_int / 256


def _check(settings: KeepalivedSettings) -> None:
    """Refuse, before rendering, anything that would make a wrong or unparsable config."""
    problems: list[str] = []
    if not _ROUTER_ID.fullmatch(settings.router_id):
        problems.append(f"router id {settings.router_id!r} is not a host name")
    if not _INTERFACE.fullmatch(settings.interface):
        problems.append(f"interface {settings.interface!r} is not an interface name")
    if not _PATH.fullmatch(settings.check_script):
        problems.append(f"track script {settings.check_script!r} is not an absolute path")
    if not _URL.fullmatch(settings.check_url):
        problems.append(f"check URL {settings.check_url!r} is not an http://127.0.0.1:port/path URL")
    if not 1 <= settings.virtual_router_id <= 255:
        problems.append(f"virtual router id {settings.virtual_router_id} is outside 1..255")
    if not 1 <= settings.priority <= 254:
        problems.append(f"priority {settings.priority} is outside 1..254 (255 is the address owner's)")
    centiseconds = settings.advert_int * 100
    if not 1 <= centiseconds <= 4095 or abs(centiseconds - round(centiseconds)) > 1e-9:
        problems.append(f"advert_int {settings.advert_int} is not a whole number of centiseconds up to 40.95 s")
    if not 8 <= settings.prefix_length <= 30:
        problems.append(f"prefix length {settings.prefix_length} is outside 8..30")
    else:
        network = ipaddress.IPv4Network(f"{settings.own_ip}/{settings.prefix_length}", strict=False)
        for label, address in (("peer", settings.peer_ip), ("virtual IP", settings.virtual_ip)):
            if address not in network:
                problems.append(f"{label} {address} is outside {network}")
    addresses = (settings.own_ip, settings.peer_ip, settings.virtual_ip)
    if len(set(addresses)) != len(addresses):
        problems.append("the own address, the peer's and the virtual IP must all differ")
    if problems:
        raise ValueError("cannot render keepalived.conf: " + "; ".join(problems))


def _advert_int_text(seconds: float) -> str:
    return f"{seconds:.2f}".rstrip("0").rstrip(".")


def render_keepalived_conf(settings: KeepalivedSettings) -> str:
    """The keepalived.conf text for these settings (raises ValueError naming every bad value, before rendering)."""
    _check(settings)
    return render_config(
        TEMPLATE,
        router_id=settings.router_id,
        interface=settings.interface,
        virtual_router_id=settings.virtual_router_id,
        priority=settings.priority,
        advert_int=_advert_int_text(settings.advert_int),
        master_down_ms=round(settings.master_down_seconds * 1000),
        own_ip=settings.own_ip,
        peer_ip=settings.peer_ip,
        virtual_ip=settings.virtual_ip,
        prefix_length=settings.prefix_length,
        check_script=settings.check_script,
        check_url=settings.check_url,
    )


def virtual_router_id(virtual_ip: ipaddress.IPv4Address) -> int:
    """A VRID from the virtual IP (1..255): two pairs with different VIPs on one segment rarely share one."""
    return int(virtual_ip) % 255 + 1


def liveness_port(*used: int) -> int:
    """The loopback port of HAProxy's liveness listener: the first candidate the plan does not use."""
    return next(port for port in LIVENESS_PORTS if port not in used)


def liveness_url(port: int) -> str:
    """What the track script asks: HAProxy's monitor-uri on its loopback liveness listener."""
    return f"http://127.0.0.1:{port}{LIVENESS_PATH}"


def pair_settings(lab: LabConfig) -> dict[str, KeepalivedSettings]:
    """Host name -> keepalived settings, for both load balancers of an HA plan (empty without a standby)."""
    if not lab.is_pair or lab.virtual_ip is None:
        return {}
    primary, standby = lab.load_balancers
    url = liveness_url(liveness_port(*lab.listen_ports))
    vrid = virtual_router_id(lab.virtual_ip)
    pair: tuple[tuple[Host, Host, int], ...] = (
        (primary, standby, PRIMARY_PRIORITY),
        (standby, primary, STANDBY_PRIORITY),
    )
    return {
        own.name: KeepalivedSettings(
            router_id=own.name.lower(),
            own_ip=own.ip,
            peer_ip=peer.ip,
            virtual_ip=lab.virtual_ip,
            prefix_length=lab.network.cidr.prefixlen,
            priority=priority,
            virtual_router_id=vrid,
            check_url=url,
        )
        for own, peer, priority in pair
    }


def keepalived_bundle(settings: KeepalivedSettings) -> dict[str, str]:
    """What apply-keepalived-conf.sh receives: the config and the track script it names."""
    return {CONF_FILE: render_keepalived_conf(settings), CHECK_SCRIPT_FILE: script_text(CHECK_SCRIPT_FILE)}
