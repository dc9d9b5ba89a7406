"""The permission checks Proxmox VE makes in its code, for the calls bpg's provider makes.

fakepve checks what PVE's API schema declares. qemu-server and pve-storage check more inside their
handlers, and there fakepve is sometimes laxer (a host CD-ROM, a NIC's bridge) and sometimes stricter
(cloud-init keys, drives at create): both would make the tests prove a wrong role. Each function below
is one such check, after the named function of PVE 9's sources (qemu-server 9.2, pve-storage 9.1,
pve-guest-common 6.0; the same in PVE 8.4 unless docs/e2e.md says otherwise). `LabPve` (e2e/pve.py) runs
them before it hands the request to fakepve, and lets fakepve's own table for the same keys pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from fakepve import PveError
from fakepve.qemu import DRIVE_KEY, NEW_DISK, is_cdrom, split_drive, volume_ref

# qemu-server src/PVE/API2/Qemu.pm: the option tables of $check_vm_modify_config_perm.
CPU_OPTIONS = frozenset({"cores", "cpu", "runningcpu", "cpulimit", "cpuunits", "numa", "smp", "sockets", "vcpus"})
MEMORY_OPTIONS = frozenset({"memory", "balloon", "shares", "allow-ksm"})
HWTYPE_OPTIONS = frozenset(
    {"acpi", "hotplug", "kvm", "machine", "runningmachine", "scsihw", "smbios1", "tablet", "vga", "watchdog"}
    | {"audio0", "rng0"}
)
GENERAL_OPTIONS = frozenset(
    {"agent", "autostart", "bios", "description", "keyboard", "localtime", "migrate_downtime", "migrate_speed"}
    | {"name", "onboot", "ostype", "protection", "reboot", "startdate", "startup", "tdf", "template"}
)
POWER_OPTIONS = frozenset({"freeze"})
DISK_OPTIONS = frozenset({"boot", "bootdisk", "vmstatestorage"})
CLOUDINIT_OPTIONS = frozenset(
    {"cicustom", "cipassword", "citype", "ciuser", "ciupgrade", "nameserver", "searchdomain", "sshkeys"}
)
# Devices checked elsewhere ("as there the permission can be value dependent").
_CHECKED_ELSEWHERE = re.compile(r"^(?:unused|serial|usb|hostpci|virtiofs)\d+$")
# Request parameters of the config update that are not config keys.
UPDATE_META = frozenset({"node", "vmid", "delete", "digest", "skiplock", "revert", "force", "background_delay"})
# pve-guest-common src/PVE/GuestHelpers.pm, check_vnet_access: a plain Linux bridge is in this zone.
LOCAL_ZONE = "localnetwork"


# qemu-server src/PVE/QemuServer/Drive.pm, drive_is_cloudinit.
_CLOUDINIT_VOLUME = re.compile(r"[:/](?:vm-\d+-)?cloudinit(?:\.(?:raw|qcow2|vmdk))?$")


class Acl(Protocol):
    """What the checks ask of the fake: its ACL, and what kind of volume a volume id names."""

    def allowed(self, user: str, path: str, priv: str) -> bool: ...

    def volume_type(self, volid: str) -> tuple[str, int | None]:
        """(content type, owning VM id or None) of a volume on one of its storages, or PVE's error."""
        ...


def _denied(path: str, privs: Iterable[str], any_of: bool = False) -> PveError:
    # PVE::RPCEnvironment::check_full: "Permission check failed (<path>, <privs joined by |>)" with `any`.
    shown = "|".join(privs) if any_of else next(iter(privs))
    return PveError(403, f"Permission check failed ({path}, {shown})")


def require(acl: Acl, user: str, path: str, *privs: str, any_of: bool = False) -> None:
    """PVE::RPCEnvironment::check (all of `privs`) or, with `any_of`, check_any."""
    if any_of:
        if not any(acl.allowed(user, path, priv) for priv in privs):
            raise _denied(path, privs, any_of=True)
        return
    for priv in privs:
        if not acl.allowed(user, path, priv):
            raise _denied(path, [priv])


def _is_root(user: str) -> bool:
    return user == "root@pam"


def check_volume_access(acl: Acl, user: str, vmid: int | None, volid: str) -> None:
    """pve-storage src/PVE/Storage.pm, check_volume_access: Datastore.Allocate on its storage is enough;
    else an ISO, template or import image needs Datastore.AllocateSpace or Datastore.Audit, a disk of the
    VM itself nothing, another VM's disk Datastore.Audit and VM.Config.Disk on that VM."""
    if _is_root(user):
        return
    storage, _name = volume_ref(volid)
    if storage is None:
        raise PveError(500, "Only root can pass arbitrary filesystem paths.")
    path = f"/storage/{storage}"
    if acl.allowed(user, path, "Datastore.Allocate"):
        return
    vtype, owner = acl.volume_type(volid)
    if vtype in ("iso", "vztmpl", "import"):
        require(acl, user, path, "Datastore.AllocateSpace", "Datastore.Audit", any_of=True)
    elif owner is not None and owner == vmid:
        return
    elif vtype == "backup" and owner is not None:
        require(acl, user, path, "Datastore.AllocateSpace")
        require(acl, user, f"/vms/{owner}", "VM.Backup")
    elif vtype in ("images", "rootdir") and owner is not None:
        require(acl, user, path, "Datastore.Audit")
        require(acl, user, f"/vms/{owner}", "VM.Config.Disk")
    else:
        raise PveError(500, f"missing privileges to access {volid}")


def modify_config_perm(acl: Acl, user: str, vmid: int, keys: Iterable[str]) -> None:
    """qemu-server Qemu.pm, $check_vm_modify_config_perm: the privilege each config key needs. Drives,
    `cdrom`, devices and tags are skipped (checked by their own functions)."""
    if _is_root(user):
        return
    vm = f"/vms/{vmid}"
    for key in keys:
        if DRIVE_KEY.match(key) or key == "cdrom" or _CHECKED_ELSEWHERE.match(key) or key == "tags":
            continue
        if key in CPU_OPTIONS or re.fullmatch(r"numa\d+", key):
            require(acl, user, vm, "VM.Config.CPU")
        elif key in MEMORY_OPTIONS:
            require(acl, user, vm, "VM.Config.Memory")
        elif key in HWTYPE_OPTIONS:
            require(acl, user, vm, "VM.Config.HWType")
        elif key in GENERAL_OPTIONS:
            require(acl, user, vm, "VM.Config.Options")
            if key == "startup":
                require(acl, user, "/", "Sys.Modify")
        elif key in POWER_OPTIONS:
            require(acl, user, vm, "VM.PowerMgmt")
        elif key in DISK_OPTIONS:
            require(acl, user, vm, "VM.Config.Disk")
        elif re.fullmatch(r"net\d+", key) or key == "running-nets-host-mtu":
            require(acl, user, vm, "VM.Config.Network")
        elif key in CLOUDINIT_OPTIONS or re.fullmatch(r"ipconfig\d+", key):
            require(acl, user, vm, "VM.Config.Cloudinit", "VM.Config.Network", any_of=True)
        elif key == "vmstate":
            require(acl, user, vm, "VM.Config.Disk", "VM.PowerMgmt")
        else:
            raise PveError(500, f"only root can set '{key}' config")


def serial_perm(acl: Acl, user: str, vmid: int, settings: Mapping[str, Any]) -> None:
    """qemu-server Qemu.pm, $check_vm_create_serial_perm: a socket serial port needs HWType, a real one root."""
    if _is_root(user):
        return
    for key, value in settings.items():
        if re.fullmatch(r"serial\d+", key):
            if str(value) != "socket":
                raise PveError(500, f"only root can set '{key}' config for real devices")
            require(acl, user, f"/vms/{vmid}", "VM.Config.HWType")


def tag_permissions(acl: Acl, user: str, vmid: int) -> None:
    """pve-guest-common GuestHelpers.pm, assert_tag_permissions: VM.Config.Options; with the default
    datacenter.cfg (user-tag-access 'free', no registered tags) any tag is allowed then."""
    require(acl, user, f"/vms/{vmid}", "VM.Config.Options")


def storage_access(
    acl: Acl, user: str, vmid: int, settings: Mapping[str, Any], default_storage: str | None = None
) -> None:
    """qemu-server Qemu.pm, $check_storage_access: for each drive, `none` and cloud-init drives need
    nothing; the host's CD drive (volume `cdrom` on a CD-ROM) needs Sys.Console on /; a new disk
    Datastore.AllocateSpace on its storage; an existing volume PVE::Storage::check_volume_access; the
    source of `import-from` check_volume_access too (an `import` volume: Datastore.AllocateSpace or
    Datastore.Audit, or Datastore.Allocate)."""
    for key in sorted(settings):
        if not DRIVE_KEY.match(key):
            continue
        volid, props = split_drive(str(settings[key]))
        cdrom = is_cdrom(volid, props)
        new_disk = None if cdrom else NEW_DISK.match(volid)
        if not volid or volid in ("none", "cloudinit") or volume_ref(volid)[1] == "cloudinit":
            pass
        elif cdrom and volid == "cdrom":
            require(acl, user, "/", "Sys.Console")
        elif new_disk is not None:
            storage = new_disk.group(1) or default_storage
            if storage:
                require(acl, user, f"/storage/{storage}", "Datastore.AllocateSpace")
        else:
            check_volume_access(acl, user, vmid, volid)
        source = props.get("import-from")
        if source:
            source_type, source_vm = acl.volume_type(source) if volume_ref(source)[0] else ("", None)
            if source_vm is not None and not _is_root(user):
                require(acl, user, f"/vms/{source_vm}", "VM.Clone")  # a disk of another VM: cloned
            else:
                check_volume_access(acl, user, vmid, source)
            if source_type not in ("", "images", "import"):
                raise PveError(400, f"{source} has wrong type '{source_type}' - needs to be 'images' or 'import'")


def bridge_access(acl: Acl, user: str, settings: Mapping[str, Any]) -> None:
    """qemu-server QemuServer.pm, check_bridge_access, through pve-guest-common GuestHelpers.pm,
    check_vnet_access: SDN.Use on /sdn/zones/<zone>/<bridge> (a plain bridge is in zone `localnetwork`),
    or on .../<bridge>/<tag> for a VLAN tag."""
    if _is_root(user):
        return
    for key in sorted(settings):
        if not re.fullmatch(r"net\d+", key):
            continue
        _model, props = split_drive(str(settings[key]))
        bridge = props.get("bridge")
        if bridge is None:
            continue
        tag, trunks = props.get("tag"), props.get("trunks")
        if tag:
            require(acl, user, f"/sdn/zones/{LOCAL_ZONE}/{bridge}/{tag}", "SDN.Use")
        for vlan in sorted(set(re.split(r"[;]", trunks or "")) - {""}):
            require(acl, user, f"/sdn/zones/{LOCAL_ZONE}/{bridge}/{vlan}", "SDN.Use")
        if not (tag or trunks):
            require(acl, user, f"/sdn/zones/{LOCAL_ZONE}/{bridge}", "SDN.Use")


def drive_perms(acl: Acl, user: str, vmid: int, value: str) -> None:
    """qemu-server Qemu.pm, update_vm_api's $check_drive_perms: a cloud-init drive needs
    VM.Config.Cloudinit and VM.Config.CDROM, a CD-ROM VM.Config.CDROM, any other drive VM.Config.Disk."""
    if _is_root(user):
        return
    volid, props = split_drive(value)
    vm = f"/vms/{vmid}"
    if _CLOUDINIT_VOLUME.search(volid):
        require(acl, user, vm, "VM.Config.Cloudinit", "VM.Config.CDROM")
    elif is_cdrom(volid, props):
        require(acl, user, vm, "VM.Config.CDROM")
    else:
        require(acl, user, vm, "VM.Config.Disk")


def create_vm(acl: Acl, user: str, vmid: int, settings: Mapping[str, Any], default_storage: str | None) -> None:
    """qemu-server Qemu.pm, create_vm: the checks of its code on the new VM's settings (VM.Allocate,
    VM.PowerMgmt for `start` and the default storage are fakepve's, as in PVE). At create, drives need
    no VM.Config.* privilege: only the storage checks."""
    storage_access(acl, user, vmid, settings, default_storage)
    modify_config_perm(acl, user, vmid, settings)
    serial_perm(acl, user, vmid, settings)
    bridge_access(acl, user, settings)
    if "tags" in settings and not _is_root(user):
        tag_permissions(acl, user, vmid)  # in the create worker, on the written config


def update_vm(
    acl: Acl, user: str, vmid: int, current: Mapping[str, str], settings: Mapping[str, Any], deletes: list[str]
) -> None:
    """qemu-server Qemu.pm, update_vm_api: the key table for deleted and set keys, the storage and bridge
    checks of the new values, then per drive the privilege of its old and its new value."""
    modify_config_perm(acl, user, vmid, deletes)
    modify_config_perm(acl, user, vmid, settings)
    storage_access(acl, user, vmid, settings)
    bridge_access(acl, user, settings)
    for key in deletes:
        if DRIVE_KEY.match(key) and key in current:
            drive_perms(acl, user, vmid, current[key])
        elif key == "tags" and not _is_root(user):
            tag_permissions(acl, user, vmid)
    for key, value in settings.items():
        if DRIVE_KEY.match(key):
            if key in current:
                drive_perms(acl, user, vmid, current[key])
            drive_perms(acl, user, vmid, str(value))
        elif key == "tags" and not _is_root(user) and str(value) != current.get("tags", ""):
            tag_permissions(acl, user, vmid)
    serial_perm(acl, user, vmid, settings)


def download_url_network_access(acl: Acl, user: str, node: str) -> bool:
    """pve-storage src/PVE/API2/Storage/Status.pm, download_url (and pve-manager PVE/API2/Nodes.pm,
    query_url_metadata): probing the node's network takes Sys.Audit + Sys.Modify on /, or the newer
    Sys.AccessNetwork on /nodes/<node> (pve-access-control 8.1.2 and later: PVE 8.2+)."""
    if acl.allowed(user, "/", "Sys.Audit") and acl.allowed(user, "/", "Sys.Modify"):
        return True
    return acl.allowed(user, f"/nodes/{node}", "Sys.AccessNetwork")
