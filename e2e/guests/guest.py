"""One guest: a booted systemd-nspawn container standing in for one Proxmox VM, its disk kept across power.

Its disk is an overlay on the golden rootfs (upper dir per guest) plus a real directory for /var/lib/docker
(Docker's overlay2 cannot stack on overlayfs). Each power-on mounts the overlay, writes the NoCloud seed
PVE would put on the cloud-init drive, plugs a fresh veth carrying the VM's MAC into the bridge, and boots
`systemd-nspawn -b` in the guest's own cgroup. Recipe and flags (no host systemd: `--register=no
--keep-unit`; Docker inside: SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 and the @keyring/bpf syscalls) are those
measured in shared/notes/e2e.md. A guest that reboots itself (nspawn exits 133) is booted again in place.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

from e2e.guests import agent, cgroups
from e2e.guests.network import PrivateNetwork
from e2e.guests.record import Journal, cgroup_pids, kill_cgroup, remove_cgroup, remove_path, unmount
from e2e.guests.seed import SEED_DIR, Seed, nic_mac, seed_for
from e2e.machines import VmSpec

NSPAWN_RUN = Path("/run/systemd/nspawn")
REBOOT_EXIT = 133  # systemd-nspawn's exit status when the container asked to reboot
# What the guest's systemd-shutdown prints last when it reboots (it prints "Powering off." or "Halting." otherwise).
# nspawn 252 cannot report the reboot itself here: moving the NIC back fails once cloud-init renamed it eth0 (the
# host has an eth0), so it exits 1 whatever the guest asked.
REBOOT_LINE = b"\nRebooting."


def _write(root: Path, relative: str, text: str, mode: int = 0o644) -> None:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


class Guest:
    """A VM's machine. Thread-safe: the fake calls power actions from worker threads."""

    def __init__(
        self,
        *,
        journal: Journal,
        network: PrivateNetwork,
        rootfs: Path,
        directory: Path,
        vmid: int,
        machine: str,
        cgroup: str,
        files: dict[str, str],
    ) -> None:
        self.journal = journal
        self.network = network
        self.rootfs = rootfs
        self.directory = directory
        self.vmid = vmid
        self.machine = machine
        self.cgroup = cgroup
        self.files = files
        self.root = directory / "root"
        self.seed: Seed | None = None
        self.mac = ""
        self.boots = 0
        self.booted_at = 0.0
        self._console_start = 0
        self._nspawn_files: list[Path] = []
        self._proc: subprocess.Popen[bytes] | None = None
        self.host_end = ""
        self.guest_end = ""
        self._stopping = False
        self._halted = threading.Event()
        self._halted.set()
        self._lock = threading.RLock()
        journal.add("dir", str(directory))
        for sub in ("upper", "work", "root", "docker"):
            (directory / sub).mkdir(parents=True, exist_ok=True)

    # --- power ---------------------------------------------------------------------------------------------

    @property
    def running(self) -> bool:
        return not self._halted.is_set()

    def power_on(self, vm: VmSpec) -> None:
        """Boot (first boot of a fresh guest, or the same disk again) with the seed from `vm` as it is now."""
        seed = seed_for(vm)
        mac = nic_mac(vm.config["net0"])
        with self._lock:
            if self.running:
                return
            self.seed, self.mac = seed, mac
            self._stopping = False
            self._boot()

    def _boot(self) -> None:
        self.journal.add("mount", str(self.root))
        options = f"lowerdir={self.rootfs},upperdir={self.directory / 'upper'},workdir={self.directory / 'work'}"
        subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)], check=True, timeout=30)
        # What nspawn leaves in /run for this boot (its lock on the root directory; the propagation directory
        # of the machine, left when it is killed): journaled so that they go too.
        root = self.root.stat()
        self._nspawn_files = [
            NSPAWN_RUN / "locks" / f"inode-{root.st_dev}:{root.st_ino}",
            NSPAWN_RUN / "propagate" / self.machine,
        ]
        for path in self._nspawn_files:
            self.journal.add("dir", str(path))
        if self.seed is None:
            raise RuntimeError(f"guest {self.machine} has no seed to boot with")
        for name, text in self.seed.files().items():
            _write(self.root, f"{SEED_DIR}/{name}", text, 0o600)
        for relative, text in self.files.items():
            _write(self.root, relative, text)
        self.host_end, self.guest_end = self.network.plug(self.mac)
        procs = cgroups.make(self.journal, self.cgroup)
        moves = " && ".join(f"echo $$ >{shlex.quote(str(p))}" for p in procs)
        argv = [
            "systemd-nspawn",
            "--boot",
            f"--directory={self.root}",
            f"--machine={self.machine}",
            "--register=no",
            "--keep-unit",
            "--resolv-conf=off",
            "--link-journal=no",
            "--console=read-only",
            f"--network-interface={self.guest_end}",
            f"--bind={self.directory / 'docker'}:/var/lib/docker",
            "--system-call-filter=@keyring bpf",
        ]
        env = {**os.environ, "SYSTEMD_NSPAWN_UNIFIED_HIERARCHY": "1"}
        with (self.directory / "console.log").open("ab") as console:
            self._console_start = console.tell()
            self._proc = subprocess.Popen(
                # nspawn refuses to move an interface udev has not seen when it finds /sys writable (its test for
                # "udev runs"); this host runs no udev: nspawn runs in a mount namespace of its own where /sys
                # is read-only, so it moves the veth as it would in a container host without udev.
                [
                    "unshare",
                    "--mount",
                    "--propagation=private",
                    "sh",
                    "-c",
                    f'{moves} && mount -o remount,bind,ro /sys && exec "$@"',
                    "nspawn",
                    *argv,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=console,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.boots += 1
        self.booted_at = time.monotonic()
        self._halted.clear()
        threading.Thread(target=self._watch, args=(self._proc,), name=f"guest-{self.vmid}", daemon=True).start()

    def _watch(self, proc: subprocess.Popen[bytes]) -> None:
        """Wait for this boot's nspawn to end; tidy what the boot made; boot again if the guest rebooted."""
        code = proc.wait()
        with self._lock:
            self._after_halt()
            if (code == REBOOT_EXIT or self._guest_rebooted()) and not self._stopping:
                self._boot()
                return
            self._halted.set()

    def _guest_rebooted(self) -> bool:
        """Whether this boot ended with the guest's own reboot (its last console words)."""
        with (self.directory / "console.log").open("rb") as console:
            console.seek(self._console_start)
            return REBOOT_LINE in console.read()

    def _after_halt(self) -> None:
        for path in cgroups.paths(self.cgroup):
            with contextlib.suppress(RuntimeError, OSError):
                remove_cgroup(path)
        PrivateNetwork.unplug(self.host_end, self.guest_end)
        unmount(str(self.root))
        for path in self._nspawn_files:
            remove_path(path)

    def shutdown(self, timeout_s: float) -> bool:
        """A clean poweroff (SIGTERM to nspawn: the guest's systemd halts); True once halted."""
        with self._lock:
            proc = self._proc
            if not self.running or proc is None:
                return True
            self._stopping = True
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        return self._halted.wait(timeout_s)

    def stop(self) -> None:
        """Power cut: every process of the guest killed at once; the disk stays as it was."""
        with self._lock:
            if not self.running:
                return
            self._stopping = True
        for path in cgroups.paths(self.cgroup):
            with contextlib.suppress(FileNotFoundError):
                kill_cgroup(path)
        if not self._halted.wait(30):
            raise RuntimeError(f"guest {self.machine} did not halt after its processes were killed")

    def remove(self) -> None:
        """The VM is deleted: stop it and delete its disk."""
        self.stop()
        unmount(str(self.root))
        subprocess.run(["rm", "-rf", "--one-file-system", str(self.directory)], check=True, timeout=120)

    # --- looking inside ------------------------------------------------------------------------------------

    def pid1(self) -> int | None:
        """The host pid of the guest's init (nspawn's child, pid 1 in the guest's pid namespace)."""
        proc = self._proc
        if proc is None or not self.running:
            return None
        for task in Path(f"/proc/{proc.pid}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                for child in task.read_text().split():
                    status = Path(f"/proc/{child}/status").read_text()
                    nspid = next((line.split()[1:] for line in status.splitlines() if line.startswith("NSpid:")), [])
                    if nspid and nspid[-1] == "1":
                        return int(child)
        return None

    def interfaces(self) -> list[dict[str, Any]] | None:
        pid = self.pid1()
        return None if pid is None else agent.network_interfaces(pid)

    def run(
        self, argv: list[str], timeout_s: float = 120, stdin: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command inside the guest as root (its namespaces, via nsenter): for the harness's checks."""
        pid = self.pid1()
        if pid is None:
            raise RuntimeError(f"guest {self.machine} is not running")
        return subprocess.run(
            ["nsenter", "-t", str(pid), "-a", *argv],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=timeout_s,
        )

    def memory_pss_bytes(self) -> int:
        """Proportional set size of every process of the guest (nspawn included): its share of memory."""
        total = 0
        for pid in cgroup_pids(cgroups.paths(self.cgroup)[0]):
            with contextlib.suppress(OSError):
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
        return total

    def disk_bytes(self) -> int:
        """What the guest wrote on its disk (overlay upper dir + its Docker directory)."""
        total = 0
        for sub in ("upper", "docker"):
            for path in (self.directory / sub).rglob("*"):
                with contextlib.suppress(OSError):
                    if path.is_file() and not path.is_symlink():
                        total += path.lstat().st_size
        return total
