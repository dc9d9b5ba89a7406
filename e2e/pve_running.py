"""Start the fake Proxmox node for a synchronous harness: LabPve on https://127.0.0.1:<port>/ in a
thread of its own, its node sshd, and an API token holding exactly a given role.

    with running_pve(workdir) as pve:          # the README's PVE 9 role, ConfigMachines, bridge vmbr1
        stack config: proxmoxve:endpoint = pve.endpoint, proxmoxve:apiToken = pve.token,
                      proxmoxve:ssh = pve.ssh_config (its privateKey as a secret)
        pve.state()                            # what the fake holds, read in its own thread

Everything it starts (the event loop's thread, the HTTPS listener, sshd) stops when the block ends,
on every exit path; sshd also dies with the thread that entered the block (enter it from a thread
that outlives the block, e.g. the main thread).
"""

from __future__ import annotations

import asyncio
import itertools
import secrets
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from e2e.config_machines import ConfigMachines
from e2e.machines import Machines
from e2e.pve import LabPve
from e2e.pve_node import NodeSsh, node_sshd
from e2e.role import readme_role

T = TypeVar("T")
DEFAULT_DATASTORES: Mapping[str, str] = {"local": "dir", "local-lvm": "lvmthin"}
START_TIMEOUT_S = 30


@dataclass(frozen=True)
class PveState:
    """A snapshot of what the fake holds, for assertions on the fake's own state."""

    vms: Mapping[int, Mapping[str, str]]
    """vmid -> the VM's config."""
    volumes: Mapping[str, Sequence[str]]
    """storage -> every volume on it, as the API lists them to root (snippets: the files on disk)."""
    snippet_files: Sequence[str]
    """The files in the dir storages' snippets directories."""
    firewalls: Mapping[int, Mapping[str, Any]]
    """vmid -> its firewall config, for every VM id with options or rules set."""

    def of_stack(self, vm_ids: Iterable[int], file_prefix: str) -> dict[str, Any]:
        """What is left of one stack: its VMs and firewalls by id, its files by name prefix."""
        ids = set(vm_ids)
        return {
            "vms": sorted(ids & set(self.vms)),
            "firewalls": sorted(ids & set(self.firewalls)),
            "volumes": sorted(
                f"{storage}:{name}"
                for storage, names in self.volumes.items()
                for name in names
                if file_prefix in name or any(f"-{vmid}-" in name or name.startswith(f"{vmid}/") for vmid in ids)
            ),
            "snippet_files": sorted(name for name in self.snippet_files if name.startswith(file_prefix)),
        }


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fake-pve.crt", directory / "fake-pve.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class RunningPve:
    """A running LabPve: its endpoint, a token, the node's SSH, and safe access to its state."""

    def __init__(self, fake: LabPve, loop: asyncio.AbstractEventLoop, node: str, ssh: NodeSsh, cafile: Path) -> None:
        self.fake = fake
        self.node = node
        self.ssh = ssh
        self.cafile = cafile  # the fake's self-signed certificate: a client can verify the endpoint with it
        self._loop = loop
        self._users = itertools.count(1)
        self.token = ""

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self.fake.port}/"

    @property
    def ssh_config(self) -> dict[str, Any]:
        """The stack's `proxmoxve:ssh` (set its privateKey as a secret)."""
        return self.ssh.provider_config(self.node)

    def call(self, function: Callable[[LabPve], T]) -> T:
        """Run `function(fake)` in the fake's own thread (its state is only touched there)."""

        async def run() -> T:
            return function(self.fake)

        return asyncio.run_coroutine_threadsafe(run(), self._loop).result(timeout=START_TIMEOUT_S)

    def add_token(self, privileges: Iterable[str]) -> str:
        """A new user with exactly these privileges on /, and its API token without privilege separation
        (`pveum user token add ... --privsep 0`: the token has its user's privileges). Returns the
        `proxmoxve:apiToken` value."""
        privs = sorted(set(privileges))
        user = f"lab{next(self._users)}@pve"
        secret = str(uuid.uuid4())

        def grant(fake: LabPve) -> None:
            fake.apitokens[f"{user}!lab"] = secret
            fake.acl.setdefault(user, [])
            if privs:
                fake.grant(user, "/", *privs)

        self.call(grant)
        return f"{user}!lab={secret}"

    def requests(self) -> list[tuple[str, str]]:
        """(method, path) of every request the fake got, oldest first (fakepve's own log)."""
        return self.call(lambda fake: [(method, path) for method, path, _body in fake.requests])

    def state(self) -> PveState:
        def read(fake: LabPve) -> PveState:
            volumes = {name: sorted(fake._volumes(name)) for name in sorted(fake.storages)}
            files = []
            for name in fake.storages:
                directory = fake._snippets_dir(name)
                if directory is not None and directory.is_dir():
                    files += [file.name for file in directory.iterdir()]
            guests = fake._fw()["guests"]
            return PveState(
                vms={vm.vmid: {k: str(v) for k, v in vm.config.items()} for vm in fake.vms},
                volumes=volumes,
                snippet_files=sorted(files),
                firewalls={
                    vmid: dict(conf) for vmid, conf in guests.items() if conf.get("rules") or conf.get("options")
                },
            )

        return self.call(read)


@contextmanager
def running_pve(
    workdir: Path,
    *,
    machines: Machines | None = None,
    role: Iterable[str] | None = None,
    bridges: Sequence[str] = ("vmbr1",),
    datastores: Mapping[str, str] = DEFAULT_DATASTORES,
    node: str = "pve",
    time_scale: float = 0.0,
) -> Iterator[RunningPve]:
    """The fake node, until the block ends. `role`: the privileges of `.token` (default: the README's
    PVE 9 role); `datastores`: name -> "dir" (a real directory under `workdir`) or "lvmthin"."""
    workdir.mkdir(parents=True, exist_ok=True)
    storages = {
        name: (workdir / "storage" / name if kind == "dir" else None) for name, kind in sorted(datastores.items())
    }
    unknown = sorted(kind for kind in datastores.values() if kind not in ("dir", "lvmthin"))
    if unknown:
        raise ValueError(f"datastores: unknown storage kind(s) {unknown}; expected 'dir' or 'lvmthin'")
    fake = LabPve(
        machines=machines or ConfigMachines(),
        node=node,
        storages=storages,
        bridges=bridges,
        password=secrets.token_urlsafe(24),
        time_scale=time_scale,
    )
    cert, key = _self_signed(workdir)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="fake-pve", daemon=True)
    with ExitStack() as cleanup:
        thread.start()

        def stop_loop() -> None:
            asyncio.run_coroutine_threadsafe(fake.stop(), loop).result(timeout=START_TIMEOUT_S)
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=START_TIMEOUT_S)
            loop.close()

        cleanup.callback(stop_loop)
        asyncio.run_coroutine_threadsafe(fake.start(str(cert), str(key)), loop).result(timeout=START_TIMEOUT_S)
        ssh = cleanup.enter_context(node_sshd(workdir / "node-ssh"))
        running = RunningPve(fake, loop, node, ssh, cert)
        running.token = running.add_token(readme_role(9) if role is None else role)
        yield running
