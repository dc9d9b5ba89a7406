"""A private test network in Linux network namespaces: one namespace per host, all on one bridge.

Why namespaces: the HA pair needs what loopback cannot give: two hosts that can both hold one address,
gratuitous ARP moving it, a link going down, VRRP cut between two hosts. Each host gets a namespace
with one interface named eth0 (as on the lab VMs), plugged into a bridge of its own that has no address
and no route out: nothing here can reach another network. Names carry a random suffix so parallel runs
never collide, and close() removes every process, namespace, veth and the bridge (callers run it on
every exit path; the namespaces' processes are found with `ip netns pids`, strays included).
Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN).
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import secrets
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

TEST_NETWORKS = ipaddress.IPv4Network("198.18.0.0/15")  # RFC 2544 benchmarking space, never routed
INTERFACE = "eth0"
_CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)


def require_root() -> None:
    """Namespaces, veths and bridges need root: say so plainly instead of failing halfway."""
    if os.geteuid() != 0:
        raise RuntimeError("the HA rehearsal builds network namespaces: run it as root")


def random_subnet() -> ipaddress.IPv4Network:
    """A /24 inside 198.18.0.0/15, picked at random (bridges are private, this only helps reading logs)."""
    index = secrets.randbelow(TEST_NETWORKS.num_addresses // 256)
    return ipaddress.IPv4Network((int(TEST_NETWORKS.network_address) + 256 * index, 24))


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check, timeout=15)


def run_in_namespace(namespace: str, function: Callable[[], T]) -> T:
    """Call `function` in a new thread that first enters the namespace: its sockets (and any thread it
    starts) live there. The calling thread, and the process's main thread, never change namespace."""
    box: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            fd = os.open(f"/run/netns/{namespace}", os.O_RDONLY)
            try:
                if _LIBC.setns(fd, _CLONE_NEWNET) != 0:
                    error = ctypes.get_errno()
                    raise OSError(error, f"setns({namespace}): {os.strerror(error)}")
            finally:
                os.close(fd)
            box.append(function())
        except BaseException as error:  # re-raised in the caller's thread
            errors.append(error)

    thread = threading.Thread(target=target, name=f"in-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if errors:
        raise errors[0]
    return box[0]


@dataclass(frozen=True)
class NetHost:
    """One host of the test network: its namespace, address and the bridge-side end of its veth."""

    name: str
    namespace: str
    address: ipaddress.IPv4Address
    veth: str


# The guard's undo for a namespace: its process groups are dead by then, but a stray outside them (a track
# script keepalived started in a group of its own) would outlive the namespace's name: kill what is inside.
_KILL_AND_DELETE_NAMESPACE = """for scan in 1 2 3; do
    pids=$(ip netns pids "$1") || break
    [ -z "$pids" ] && break
    kill -9 $pids 2>/dev/null
done
ip netns del "$1"
"""


class TestNetwork:
    """Namespaces on a private bridge. Use as a context manager; close() undoes everything it made."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        subnet: ipaddress.IPv4Network | None = None,
        suffix: str | None = None,
        undo_on_death: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        """`undo_on_death`: told, before each bridge or namespace is made, the command that removes it, for a
        guard process to run if the caller dies without close() (kill -9)."""
        require_root()
        self._undo_on_death = undo_on_death
        self.suffix = suffix or secrets.token_hex(3)
        self.subnet = subnet or random_subnet()
        if not self.subnet.subnet_of(TEST_NETWORKS):
            raise ValueError(f"{self.subnet} is outside {TEST_NETWORKS}: the test network stays in benchmarking space")
        self.bridge = f"hlb{self.suffix}"
        self.hosts: dict[str, NetHost] = {}
        self._made_bridge = False
        self._closed = False

    def __enter__(self) -> TestNetwork:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # --- building ---------------------------------------------------------------------------------------------

    def create_bridge(self) -> None:
        """The bridge: up, no address (the root namespace never joins the test network)."""
        if self._undo_on_death is not None:
            self._undo_on_death(["ip", "link", "del", self.bridge])
        _ip("link", "add", self.bridge, "type", "bridge")
        self._made_bridge = True
        # Bridged frames must not meet the host's own iptables (br_netfilter, e.g. Docker's FORWARD DROP).
        _ip("link", "set", self.bridge, "type", "bridge", "nf_call_iptables", "0", check=False)
        # No IPv6 link-local address either: the root namespace has no address at all on the test network.
        _ip("link", "set", self.bridge, "addrgenmode", "none")
        _ip("link", "set", self.bridge, "up")

    def add_host(self, name: str, host_number: int) -> NetHost:
        """A namespace with lo and eth0 up, eth0 = subnet's address number `host_number`, plugged into the bridge."""
        if not self._made_bridge:
            self.create_bridge()
        address = self.subnet.network_address + host_number
        if address not in self.subnet or address in (self.subnet.network_address, self.subnet.broadcast_address):
            raise ValueError(f"host number {host_number} is not a host address of {self.subnet}")
        index = len(self.hosts)
        host = NetHost(name, f"hl{self.suffix}-{name}", address, f"hv{self.suffix}{index}")
        self.hosts[name] = host
        if self._undo_on_death is not None:
            self._undo_on_death(["sh", "-c", _KILL_AND_DELETE_NAMESPACE, "sh", host.namespace])
            # Itself: a veth pair goes at once, a namespace's (with its veth) at the kernel's pace.
            self._undo_on_death(["ip", "link", "del", host.veth])
        _ip("netns", "add", host.namespace)
        _ip("link", "add", host.veth, "type", "veth", "peer", "name", INTERFACE, "netns", host.namespace)
        _ip("link", "set", host.veth, "addrgenmode", "none")
        _ip("link", "set", host.veth, "master", self.bridge, "up")
        _ip("-n", host.namespace, "addr", "add", f"{address}/{self.subnet.prefixlen}", "dev", INTERFACE)
        _ip("-n", host.namespace, "link", "set", "lo", "up")
        _ip("-n", host.namespace, "link", "set", INTERFACE, "up")
        return host

    # --- processes --------------------------------------------------------------------------------------------

    def exec_argv(self, host: str, argv: Sequence[str]) -> list[str]:
        """argv run inside the host's namespace (`ip netns exec` enters it, then execs argv: same pid)."""
        return ["ip", "netns", "exec", self.hosts[host].namespace, *argv]

    def pids(self, host: str) -> list[int]:
        """Every process inside the host's namespace (ours and any they started), found in /proc like
        `ip netns pids` does, but skipping processes that exit during the scan instead of giving up."""
        try:
            target = os.stat(f"/run/netns/{self.hosts[host].namespace}")
        except OSError:
            return []
        found: list[int] = []
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                ns = os.stat(f"/proc/{entry.name}/ns/net")
            except OSError:  # gone meanwhile, or a kernel thread
                continue
            if (ns.st_dev, ns.st_ino) == (target.st_dev, target.st_ino):
                found.append(int(entry.name))
        return found

    def kill_all(self, host: str) -> int:
        """SIGKILL every process in the host's namespace (a power cut); the number killed. Scans until two
        scans in a row find nothing, so a process started meanwhile (a track script) goes too."""
        killed = 0
        empty = 0
        for _ in range(50):
            pids = self.pids(host)
            if not pids:
                empty += 1
                if empty == 2:
                    break
                continue
            empty = 0
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                    os.kill(pid, signal.SIGCONT)  # a stopped process dies only once continued
                    killed += 1
            time.sleep(0.01)
        else:
            raise RuntimeError(f"processes survive in {self.hosts[host].namespace}: {self.pids(host)}")
        return killed

    def link(self, host: str, up: bool) -> None:
        """Set the host's eth0 up or down (a down link is a pulled cable or a powered-off VM's NIC)."""
        _ip("-n", self.hosts[host].namespace, "link", "set", INTERFACE, "up" if up else "down")

    def nft(self, host: str, *args: str, ruleset: str | None = None, check: bool = True) -> None:
        """Run `nft` in the host's namespace (its own netfilter tables; `ruleset` goes on stdin to `nft -f -`)."""
        argv = ["ip", "netns", "exec", self.hosts[host].namespace, "nft", *(("-f", "-") if ruleset else args)]
        subprocess.run(argv, input=ruleset, capture_output=True, text=True, check=check, timeout=15)

    # --- teardown ---------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Kill every process in every namespace, delete the namespaces (their veths go with them) and the bridge."""
        if self._closed:
            return
        self._closed = True
        for name in list(self.hosts):
            with contextlib.suppress(Exception):
                self.kill_all(name)
        for host in self.hosts.values():
            _ip("netns", "del", host.namespace, check=False)
            _ip("link", "del", host.veth, check=False)  # gone with its peer already; a leftover is removed here
        if self._made_bridge:
            _ip("link", "del", self.bridge, check=False)

    def leftovers(self) -> list[str]:
        """Namespaces and links of this network that still exist (empty after close(); for tests)."""
        names = {host.namespace for host in self.hosts.values()}
        found = [line.split()[0] for line in _ip("netns", "list", check=False).stdout.splitlines() if line.strip()]
        links = _ip("-o", "link", "show", check=False).stdout
        left = [name for name in found if name in names]
        left += [
            veth
            for veth in [self.bridge, *(h.veth for h in self.hosts.values())]
            if f" {veth}:" in links or f" {veth}@" in links
        ]
        return left
