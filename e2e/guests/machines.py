"""`NspawnMachines`: the fake Proxmox's VMs as booted Linux guests on a private bridge (e2e.machines protocol).

A context manager: entering makes the run directory (journal of everything made), the bridge with the
stack's gateway address and its nftables table, and the allow-list proxy; leaving halts every guest and
removes all of it (record.cleanup, which a guard process can also run after a SIGKILL). Guests are made on
a VM's first start and kept (disk and all) until the VM is destroyed.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

from e2e.guests import cgroups, proxy
from e2e.guests.guest import Guest
from e2e.guests.image import golden_image
from e2e.guests.network import PrivateNetwork, check_gateway, refuse_routed_gateway
from e2e.guests.record import Journal, claim, cleanup, leftovers, sweep
from e2e.guests.stand_ins import guest_files
from e2e.machines import VmSpec

RUN_PARENT = Path("/var/tmp")  # noqa: S108 (disk-backed, root only; each run in its own mkdtemp)
RUN_PREFIX = "haproxy-lab-guests-"  # the run directories' and the cgroup roots' names
HALT_TIMEOUT_S = 20.0  # teardown: a clean halt first, then a power cut


def sweep_killed_runs(run_parent: Path = RUN_PARENT) -> None:
    """Remove what runs killed with their guard left (their bridges would still route their networks)."""
    for run_dir in sweep(run_parent, RUN_PREFIX):
        print(f"guests: removed what a killed run left ({run_dir})", file=sys.stderr)


class NspawnMachines:
    """Booted systemd-nspawn guests behind the fake's VMs. Root only."""

    def __init__(
        self,
        gateway: ipaddress.IPv4Interface | str,
        *,
        bridge: str | None = None,
        image: Path | None = None,
        proxy_port: int = proxy.PORT,
        allowed_hosts: Sequence[str] = proxy.ALLOWED_HOSTS,
        run_parent: Path = RUN_PARENT,
        keep_run_dir: bool = False,
    ) -> None:
        """`gateway`: the stack's gateway with its prefix (e.g. `198.18.7.1/24`); it becomes the bridge's host
        address and the proxy's. Refused outside 198.18.0.0/15. `bridge`: our own name (<= 15 characters;
        default `hlg<random>`). `image`: a golden image directory (default: built or found by
        tools/build-guest-image.sh)."""
        self.gateway = ipaddress.IPv4Interface(gateway)
        check_gateway(self.gateway)
        self.tag = secrets.token_hex(3)
        self.bridge = bridge or f"hlg{self.tag}"
        self.image = image
        self.proxy_port = proxy_port
        self.allowed_hosts = tuple(allowed_hosts)
        self.run_parent = run_parent
        self.keep_run_dir = keep_run_dir
        self.run_dir = Path()
        self.guests: dict[int, Guest] = {}
        self.figures: dict[str, float] = {}
        self._created = 0
        self._network: PrivateNetwork | None = None
        self._journal: Journal | None = None
        self._proxy: subprocess.Popen[bytes] | None = None
        self._owner: int | None = None

    # --- lifecycle ---------------------------------------------------------------------------------------------

    def __enter__(self) -> NspawnMachines:
        if os.geteuid() != 0:
            raise RuntimeError("NspawnMachines boots containers and builds a bridge: run it as root")
        sweep_killed_runs(self.run_parent)
        refuse_routed_gateway(self.gateway)
        image = self.image or golden_image()
        self.rootfs = image / "rootfs"
        self.run_dir = Path(tempfile.mkdtemp(prefix=f"{RUN_PREFIX}{self.tag}-", dir=self.run_parent))
        self._owner = claim(self.run_dir)
        self._journal = Journal(self.run_dir)
        try:
            self._journal.add("dir", str(self.run_dir / "guests"))
            self.cgroup_root = f"{RUN_PREFIX}{self.tag}"
            cgroups.make(self._journal, self.cgroup_root)
            self._network = PrivateNetwork(self._journal, self.bridge, self.gateway, self.proxy_port, self.tag)
            self._network.up()
            self._start_proxy()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    def _start_proxy(self) -> None:
        procs = cgroups.make(self._require_journal(), f"{self.cgroup_root}/proxy")
        self._proxy = proxy.start(
            self.run_dir / "proxy", self.gateway, self.proxy_port, procs, hosts=self.allowed_hosts
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((str(self.gateway.ip), self.proxy_port), timeout=1).close()
                return
            except OSError:
                if self._proxy.poll() is not None or time.monotonic() > deadline:
                    log = (self.run_dir / "proxy" / "tinyproxy.stderr").read_text(errors="replace")
                    raise RuntimeError(f"the allow-list proxy did not start: {log.strip()}") from None
                time.sleep(0.05)

    def close(self) -> None:
        """Halt every guest (cleanly, up to HALT_TIMEOUT_S, in parallel), then remove everything made."""
        if self._journal is None:
            return
        started = time.monotonic()
        running = [guest for guest in self.guests.values() if guest.running]
        for guest in running:
            guest.shutdown(0)
        for guest in running:
            if not guest.shutdown(max(0.0, started + HALT_TIMEOUT_S - time.monotonic())):
                guest.stop()
        left = cleanup(self.run_dir, keep_run_dir=self.keep_run_dir)
        if self._proxy is not None:
            self._proxy.wait(timeout=10)
        self.figures["teardown_s"] = time.monotonic() - started
        self._journal = None
        if self._owner is not None:
            os.close(self._owner)
            self._owner = None
        if left:
            raise RuntimeError(f"left behind after cleanup of {self.run_dir}: {left}")

    def client_namespace(self, address: ipaddress.IPv4Interface | str) -> tuple[str, list[Path]]:
        """A network namespace on the guests' bridge at `address`, for clients of the lab (journaled, removed
        with the rest). Returns its name and the cgroup.procs files its processes must join (so cleanup ends
        them too)."""
        if self._network is None:
            raise RuntimeError("NspawnMachines is not entered (use it as a context manager)")
        name = f"hl{self.tag}"
        self._network.namespace(name, ipaddress.IPv4Interface(address))
        return name, cgroups.make(self._require_journal(), f"{self.cgroup_root}/clients")

    def made(self) -> list[str]:
        """What is still there of what this run made (tests assert it is empty after close)."""
        return leftovers(self.run_dir)

    def _require_journal(self) -> Journal:
        if self._journal is None:
            raise RuntimeError("NspawnMachines is not entered (use it as a context manager)")
        return self._journal

    # --- the Machines protocol -------------------------------------------------------------------------------

    def _guest_for(self, vm: VmSpec) -> Guest:
        guest = self.guests.get(vm.vmid)
        if guest is None:
            if self._network is None:
                raise RuntimeError("NspawnMachines is not entered (use it as a context manager)")
            self._created += 1
            guest = Guest(
                journal=self._require_journal(),
                network=self._network,
                rootfs=self.rootfs,
                directory=self.run_dir / "guests" / f"vm{vm.vmid}-{self._created}",
                vmid=vm.vmid,
                machine=f"hlg{self.tag}-vm{vm.vmid}",
                cgroup=f"{self.cgroup_root}/vm{vm.vmid}-{self._created}",
                files=guest_files(self.gateway, self.proxy_port, self.rootfs),
            )
            self.guests[vm.vmid] = guest
        return guest

    def start_sync(self, vm: VmSpec) -> Guest:
        guest = self._guest_for(vm)
        guest.power_on(vm)
        return guest

    def reboot_sync(self, vm: VmSpec) -> Guest:
        """PVE's reboot: a clean shutdown, then a start with the cloud-init drive regenerated from the config."""
        guest = self.guests.get(vm.vmid)
        if guest is None:
            raise KeyError(f"VM {vm.vmid} has no guest to reboot")
        if not guest.shutdown(HALT_TIMEOUT_S * 3):
            guest.stop()
        guest.power_on(vm)
        return guest

    def destroy_sync(self, vmid: int) -> None:
        guest = self.guests.pop(vmid, None)
        if guest is not None:
            guest.remove()

    async def start(self, vm: VmSpec) -> None:
        await asyncio.to_thread(self.start_sync, vm)

    async def shutdown(self, vmid: int, timeout_s: float) -> bool:
        guest = self.guests.get(vmid)
        return True if guest is None else await asyncio.to_thread(guest.shutdown, timeout_s)

    async def stop(self, vmid: int) -> None:
        guest = self.guests.get(vmid)
        if guest is not None:
            await asyncio.to_thread(guest.stop)

    async def reboot(self, vm: VmSpec) -> None:
        await asyncio.to_thread(self.reboot_sync, vm)

    async def destroy(self, vmid: int) -> None:
        await asyncio.to_thread(self.destroy_sync, vmid)

    def interfaces(self, vmid: int) -> list[dict[str, Any]] | None:
        guest = self.guests.get(vmid)
        return None if guest is None else guest.interfaces()
