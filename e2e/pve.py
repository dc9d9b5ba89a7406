"""LabPve: fakepve's FakePve as bpg's provider needs it, and with Proxmox VE's own permission checks.

A thin subclass (never a fork, never a patch of fakepve's modules): each override closes one gap
between fakepve 0.5.0 and PVE 9 that matters to the provider, or adds a check PVE makes in its code
(e2e/pve_permissions.py); docs/e2e.md lists every one with why. What a VM *is* lives behind a
`Machines` (e2e/machines.py): MachinePve (e2e/pve_power.py), its base, calls it from the power tasks.
The node's storages are real: a dir storage is a directory, and its snippets are the files in it
(the node's sshd writes them, e2e/pve_node.py).
"""

from __future__ import annotations

import contextvars
import re
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from fakepve import PveError, TaskError
from fakepve import schema as pve_schema
from fakepve.lxc import SIZE_UNITS, format_size
from fakepve.qemu import CREATE_ONLY, DRIVE_KEY, is_cdrom, join_drive, split_drive, volume_ref
from fakepve.server import USER, params
from fakepve.storage import _is_file

from e2e import pve_permissions as pve_code
from e2e.machines import Machines
from e2e.pve_power import MachinePve

# Content of a dir storage: PVE's `local` with Import and Snippets enabled, as the README asks.
DIR_CONTENT = "iso,vztmpl,backup,import,snippets"
BLOCK_CONTENT = "images,rootdir"
# The management interface of the node: an address on loopback (bpg's node resolver falls back to it).
MANAGEMENT_BRIDGE = "vmbr0"
# (path, privilege) pairs this request passed in PVE's own checks (e2e/pve_permissions.py): fakepve's
# table for the same request, which differs from PVE's, must then let them pass.
_VETTED: contextvars.ContextVar[frozenset[tuple[str, str]]] = contextvars.ContextVar("vetted", default=frozenset())
_CONFIG_PRIVILEGES = (
    "VM.Config.CDROM",
    "VM.Config.CPU",
    "VM.Config.Cloudinit",
    "VM.Config.Disk",
    "VM.Config.HWType",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Options",
)
_SIZE = re.compile(r"^(\+)?(\d+(?:\.\d+)?)([KMGT])?$")


@contextmanager
def _vetted(pairs: frozenset[tuple[str, str]]) -> Iterator[None]:
    token = _VETTED.set(_VETTED.get() | pairs)
    try:
        yield
    finally:
        _VETTED.reset(token)


def _config_vetted(vmid: int) -> frozenset[tuple[str, str]]:
    return frozenset((f"/vms/{vmid}", priv) for priv in _CONFIG_PRIVILEGES)


class LabPve(MachinePve):
    """A fake PVE 9 node on loopback for the provider (see the module's docstring)."""

    def __init__(
        self,
        *,
        machines: Machines,
        node: str,
        storages: Mapping[str, Path | None],
        bridges: Sequence[str],
        password: str,
        time_scale: float = 0.0,
    ) -> None:
        """`storages`: name -> a directory (a dir storage whose files are that directory's) or None
        (an LVM-thin storage for disks). `password`: root@pam's, never the public default."""
        super().__init__(user="root@pam", password=password, host="127.0.0.1", port=0)
        self.machines = machines
        self.time_scale = time_scale
        self.nodes = {node: {"online": True}}
        self.bridges = tuple(dict.fromkeys([MANAGEMENT_BRIDGE, *bridges]))
        # Permissions checked from the start (fakepve lets everyone do anything until its first grant).
        self.acl: dict[str, list[tuple[str, set[str]]]] = {}
        self.storages: dict[str, dict[str, Any]] = {}
        for name, path in storages.items():
            state: dict[str, Any] = {"active": 1, "files": set(), "volumes": {}}
            if path is None:
                self.storages[name] = {"type": "lvmthin", "vgname": "pve", "thinpool": "data", "content": BLOCK_CONTENT}
            else:
                (path / "snippets").mkdir(parents=True, exist_ok=True)
                self.storages[name] = {"type": "dir", "path": str(path), "content": DIR_CONTENT}
            self.storages[name].update(state)

    # ----------------------------------------------------------------------------- permissions

    def allowed(self, user: str, path: str, priv: str) -> bool:
        if (path, priv) in _VETTED.get():
            return True
        return bool(super().allowed(user, path, priv))

    def volume_type(self, volid: str) -> tuple[str, int | None]:
        storage, name = volume_ref(volid)
        vtype, owner, _fmt = self._parse_volname(self._store(storage), name)
        return str(vtype), owner

    async def _qm_create(self, v: dict[str, Any], user: str) -> Any:
        vmid = int(v["vmid"])
        settings = {k: x for k, x in v.items() if k not in CREATE_ONLY}
        pve_code.create_vm(self, user, vmid, settings, v.get("storage"))
        with _vetted(_config_vetted(vmid)):
            return await super()._qm_create(v, user)

    async def _checked_update(self, request: Any, update: Callable[[Any], Awaitable[Any]]) -> Any:
        values = await params(request)
        vm = self._vm(request)
        settings = {k: x for k, x in values.items() if k not in pve_code.UPDATE_META}
        deletes = [key for key in re.split(r"[\s,;]+", str(values.get("delete") or "")) if key]
        current = {k: str(x) for k, x in vm.config.items()}
        pve_code.update_vm(self, request[USER], vm.vmid, current, settings, deletes)
        with _vetted(_config_vetted(vm.vmid)):
            return await update(request)

    async def _config_put(self, request: Any) -> Any:
        return await self._checked_update(request, super()._config_put)

    async def _config_post(self, request: Any) -> Any:
        return await self._checked_update(request, super()._config_post)

    async def _apply_config(self, vm: Any, user: str, values: Mapping[str, Any]) -> Any:
        """A config update as PVE writes it: values typed by the schema (fakepve keeps the form's strings,
        and bpg cannot read `"cores": "4"` back), and each drive as qemu-server's create_disks (called by
        update_vm_api) prints it: `file=` dropped, the size read from the volume."""
        method = pve_schema.load().paths["/nodes/{node}/qemu/{vmid}/config"]["PUT"]
        typed, _errors = pve_schema.validate(method.get("parameters"), dict(values))  # checked before
        for key in list(typed):
            if DRIVE_KEY.match(key):
                typed[key] = self._qm_new_drive(vm.vmid, key, str(typed[key]), None)[0]
        return await super()._apply_config(vm, user, typed)

    async def _download_url(self, request: Any) -> Any:
        # fakepve asks Sys.Audit + Sys.Modify on / alone; PVE 8.2+ also takes Sys.AccessNetwork on the node.
        node = request.match_info["node"]
        if pve_code.download_url_network_access(self, request[USER], node):
            with _vetted(frozenset({("/", "Sys.Audit"), ("/", "Sys.Modify")})):
                return await super()._download_url(request)
        return await super()._download_url(request)

    # ------------------------------------------------------------------ gaps: routes and answers

    def _register_stateful(self, router: Any, prefixes: Sequence[str]) -> None:
        super()._register_stateful(router, prefixes)
        # PVE's router ignores a trailing slash, and bpg deletes `qemu/{vmid}/?purge=1...`: without a twin
        # route, fakepve's catch-all answers it with a task that deletes nothing.
        seen = set()
        for route in list(router.routes()):
            path = route.resource.canonical if route.resource is not None else ""
            if path.endswith("/") or route.method == "HEAD" or (route.method, path) in seen:
                continue
            seen.add((route.method, path))
            router.add_route(route.method, path + "/", route.handler)

    def _routes_lab(self) -> list[tuple[str, str, Callable[..., Awaitable[Any]]]]:
        """Routes fakepve answers with a no-op that the provider reads back (registered by fakepve's
        own `_routes_*` mechanism, so the schema's parameters and permissions are checked first)."""
        return [
            ("PUT", "/nodes/{node}/qemu/{vmid}/resize", self._qm_resize),
            ("GET", "/nodes/{node}/network", self._node_network),
        ]

    async def _fw_rule_get(self, scope: str, v: dict[str, Any], user: str) -> Any:
        # pve-firewall src/PVE/API2/Firewall/Rules.pm, get_rule: `pos` is the path parameter, a string
        # in the JSON; bpg's RulesLegacy reads it as one (a number fails the create).
        rule = await super()._fw_rule_get(scope, v, user)
        return {**rule, "pos": str(rule["pos"])}

    async def _node_network(self, v: dict[str, Any], user: str) -> list[dict[str, Any]]:
        """The node's interfaces: the management bridge with 127.0.0.1 (so a provider that looks the
        node's address up here stays on loopback) and the stack's bridges."""
        interfaces = []
        for bridge in self.bridges:
            item: dict[str, Any] = {"iface": bridge, "type": "bridge", "active": 1, "autostart": 1}
            item.update(families=["inet"], bridge_ports="", bridge_stp="off", bridge_fd="0", priority=1)
            if bridge == MANAGEMENT_BRIDGE:
                item.update(method="static", address="127.0.0.1", netmask="8", cidr="127.0.0.1/8")
            else:
                item.update(method="manual")
            interfaces.append(item)
        kind = v.get("type")
        return [i for i in interfaces if kind in (None, "bridge", "any_bridge")]

    # ----------------------------------------------------------------------------- gaps: disks

    def _qm_new_drive(self, vmid: int, key: str, value: str, default: str | None) -> tuple[str, list[str]]:
        volume, props = split_drive(value)
        if volume_ref(volume)[1] == "cloudinit":
            return self._cloudinit_drive(vmid, *super()._qm_new_drive(vmid, key, value, default))
        source = props.pop("import-from", None)
        new, made = super()._qm_new_drive(vmid, key, join_drive(volume, props), default)
        if source is None:
            return new, made
        # qemu-server Qemu.pm, create_disks: an import-from disk is the source imported, sized as the
        # source, and `import-from` is dropped from the config.
        storage, name = volume_ref(source)
        found = self._volumes(storage).get(name) if storage in self.storages else None
        if found is None:
            raise PveError(500, f"cannot import from '{source}' - volume does not exist")
        volid, new_props = split_drive(new)
        disk_storage, disk_name = volume_ref(volid)
        self.storages[disk_storage]["volumes"][disk_name]["size"] = int(found.get("size") or 0)
        new_props["size"] = format_size(int(found.get("size") or 0))
        return join_drive(volid, new_props), made

    def _cloudinit_drive(self, vmid: int, value: str, made: list[str]) -> tuple[str, list[str]]:
        """qemu-server Qemu.pm, create_disks: the cloud-init drive is `vm-<vmid>-cloudinit` (`.qcow2` in a
        dir storage), the name bpg and qemu-server (drive_is_cloudinit) recognise it by."""
        volid, props = split_drive(value)
        storage, name = volume_ref(volid)
        store = self.storages[storage]
        volume = store["volumes"].pop(name)
        renamed = f"{vmid}/vm-{vmid}-cloudinit.qcow2" if _is_file(store) else f"vm-{vmid}-cloudinit"
        volume["format"] = "qcow2" if _is_file(store) else volume.get("format", "raw")
        store["volumes"][renamed] = volume
        new = f"{storage}:{renamed}"
        return join_drive(new, props), [new if made_id == volid else made_id for made_id in made]

    async def _qm_resize(self, v: dict[str, Any], user: str) -> Any:
        """qemu-server Qemu.pm, resize_vm: the new size is stored (fakepve answers a no-op task); its
        worker checks Datastore.AllocateSpace on the disk's storage and refuses to shrink."""
        vm = self.find(v["node"], v["vmid"])
        disk, wanted = str(v["disk"]), str(v["size"])

        async def body() -> None:
            if vm.lock:
                raise TaskError(f"VM is locked ({vm.lock})")
            if disk not in vm.config:
                raise TaskError(f"disk '{disk}' does not exist")
            volid, props = split_drive(vm.config[disk])
            if is_cdrom(volid, props):
                raise TaskError("you can't resize a cdrom")
            storage, name = volume_ref(volid)
            if not self.allowed(user, f"/storage/{storage}", "Datastore.AllocateSpace"):
                raise TaskError(f"Permission check failed (/storage/{storage}, Datastore.AllocateSpace)")
            volume = self.storages[storage]["volumes"][name]
            size = int(volume.get("size") or 0)
            found = _SIZE.match(wanted)
            if found is None:
                raise TaskError("internal error")
            new = int(float(found.group(2)) * SIZE_UNITS.get(found.group(3) or "", 1)) + (size if found.group(1) else 0)
            if new < size:
                raise TaskError("shrinking disks is not supported")
            volume["size"] = new
            vm.config[disk] = join_drive(volid, {**props, "size": format_size(new)})

        return await self.task(vm.node, "resize", vm.vmid, user, body, vm=vm)

    # -------------------------------------------------------------------------- gaps: snippets

    def _snippets_dir(self, storage: str) -> Path | None:
        path = self.storages.get(storage, {}).get("path")
        return Path(path) / "snippets" if path else None

    def _volumes(self, name: str) -> dict[str, Any]:
        # A dir storage's snippets are the files its directory holds (the node's sshd writes them).
        volumes: dict[str, Any] = super()._volumes(name)
        directory = self._snippets_dir(name)
        if directory is not None and directory.is_dir():
            for file in sorted(directory.iterdir()):
                if file.is_file():
                    stat = file.stat()
                    volumes[f"snippets/{file.name}"] = {
                        "content": "snippets",
                        "format": "snippet",  # pve-storage Plugin.pm, get_subdir_files
                        "size": stat.st_size,
                        "ctime": int(stat.st_mtime),
                    }
        return volumes

    async def _content_delete(self, v: dict[str, Any], user: str) -> Any:
        storage, volname, volid, _store, vtype, _owner, _fmt = self._volume_target(v)
        directory = self._snippets_dir(storage)
        if vtype != "snippets" or directory is None:
            return await super()._content_delete(v, user)
        # pve-storage src/PVE/API2/Storage/Content.pm, delete: Datastore.Allocate (not a backup).
        self.require(user, f"/storage/{storage}", "Datastore.Allocate")
        file = directory / volname.split("/", 1)[1]

        async def body() -> str:
            file.unlink(missing_ok=True)
            return f"Removed volume '{volid}'"

        return await self.task(v["node"], "imgdel", storage, user, body, lock=False)

    def snippet_text(self, volid: str) -> str | None:
        """The text of a snippet volume (`local:snippets/x.yaml`) on a dir storage, None if absent."""
        storage, name = volume_ref(volid)
        directory = self._snippets_dir(storage) if storage else None
        if directory is None or not name.startswith("snippets/"):
            return None
        file = directory / name.split("/", 1)[1]
        return file.read_text() if file.is_file() else None

    # ------------------------------------------------------------------------- gaps: starting

    def start_problem(self, vm: Any) -> str | None:
        """Why PVE would fail to start this VM, from what the fake models: a NIC on a bridge the node
        lacks (pve-common Network.pm, read_bridge_mtu), a cicustom snippet that is not there
        (qemu-server Cloudinit.pm, read_cloudinit_snippets_file)."""
        for key, value in sorted(vm.config.items()):
            if re.fullmatch(r"net\d+", key):
                bridge = split_drive(str(value))[1].get("bridge")
                if bridge and bridge not in self.bridges:
                    return f"bridge '{bridge}' does not exist"
        for part in str(vm.config.get("cicustom", "")).split(","):
            volid = part.partition("=")[2]
            if volid and self.snippet_text(volid) is None:
                return f"unable to open file '{volid}' - No such file or directory"
        return None
