"""Who answers ARP for an address? Two different MAC addresses for the virtual IP means two masters.

Why raw ARP: in a VRRP split brain both load balancers hold the virtual IP and each announces it; what a
client on the segment sees is two hosts answering "who has <VIP>". Asking from a client's namespace is
how the rehearsal detects it (on the lab: `arping -I eth0 -c 3 <VIP>` from any host of the network).
Call these from a thread inside the client's namespace (netns.run_in_namespace).
"""

from __future__ import annotations

import fcntl
import ipaddress
import select
import socket
import struct
import time

_ETH_P_ARP = 0x0806
_BROADCAST = b"\xff" * 6


_SIOCGIFHWADDR = 0x8927


def mac_of(interface: str) -> bytes:
    """The interface's MAC address in the calling thread's network namespace. (Not from /sys/class/net:
    sysfs shows the namespace that mounted it, not the thread's.)"""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = struct.pack("256s", interface.encode("ascii")[:15])
        return fcntl.ioctl(sock.fileno(), _SIOCGIFHWADDR, request)[18:24]


def _mac_text(raw: bytes) -> str:
    return ":".join(f"{byte:02x}" for byte in raw)


def who_has(
    target: ipaddress.IPv4Address, interface: str, source: ipaddress.IPv4Address, wait: float = 0.3
) -> set[str]:
    """Broadcast one ARP request for `target` from `source` and return every MAC that answers within `wait`."""
    own = mac_of(interface)
    request = (
        _BROADCAST
        + own
        + struct.pack("!H", _ETH_P_ARP)
        + struct.pack("!HHBBH", 1, 0x0800, 6, 4, 1)  # Ethernet, IPv4, who-has
        + own
        + source.packed
        + b"\x00" * 6
        + target.packed
    )
    answers: set[str] = set()
    with socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(_ETH_P_ARP)) as sock:
        sock.bind((interface, 0))
        sock.send(request)
        deadline = time.monotonic() + wait
        while (left := deadline - time.monotonic()) > 0:
            ready, _, _ = select.select([sock], [], [], left)
            if not ready:
                break
            frame = sock.recv(128)
            if len(frame) < 42 or frame[12:14] != struct.pack("!H", _ETH_P_ARP):
                continue
            operation = struct.unpack("!H", frame[20:22])[0]
            if operation == 2 and frame[28:32] == target.packed:  # is-at, for our target
                answers.add(_mac_text(frame[22:28]))
    return answers
