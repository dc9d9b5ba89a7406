"""The fake Proxmox node itself (e2e/pve.py, docs/e2e.md): each gap it closes in fakepve and each of
Proxmox VE's in-code permission checks it adds, through its HTTP API on loopback, as bpg's provider
calls it. Tokens hold exactly the privileges a test names."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakepve import shapes

from e2e.config_machines import ConfigMachines
from e2e.pve import LabPve
from e2e.pve_running import RunningPve
from tests.pve_client import PveClient

ALL = frozenset(shapes.PRIVILEGES)
NET = "virtio,bridge=vmbr1,firewall=1"


@pytest.fixture(scope="module")
def api(pve: RunningPve) -> PveClient:
    """A token with every PVE privilege (but not root@pam: every check still runs)."""
    return PveClient(pve, pve.add_token(ALL))


def client(pve: RunningPve, privileges: set[str] | frozenset[str]) -> PveClient:
    return PveClient(pve, pve.add_token(privileges))


def config(api: PveClient, vmid: int) -> dict[str, object]:
    answer = api.call("GET", f"nodes/pve/qemu/{vmid}/config")
    assert answer.status == 200, answer.message
    return dict(answer.data)


def machines(pve: RunningPve) -> ConfigMachines:
    def get(fake: LabPve) -> ConfigMachines:
        assert isinstance(fake.machines, ConfigMachines)
        return fake.machines

    return pve.call(get)


# ---------------------------------------------------------------------------------- the gaps closed


def test_a_trailing_slash_reaches_the_same_route(api: PveClient) -> None:
    """bpg deletes `qemu/{vmid}/?purge=1`: without the twin route, fakepve's catch-all answered with a
    task that deleted nothing."""
    assert api.create_vm(900, name="slash").status == 200
    assert api.task("DELETE", "nodes/pve/qemu/900/", purge=1) == "OK"
    assert api.call("GET", "nodes/pve/qemu/900/status/current").status == 500, "the VM is still there"


def test_a_single_firewall_rule_has_its_position_as_a_string(api: PveClient) -> None:
    assert api.create_vm(901, name="rules").status == 200
    rules = "nodes/pve/qemu/901/firewall/rules"
    assert api.call("POST", rules, type="in", action="ACCEPT", proto="tcp", dport="22", enable=1).status == 200
    assert api.call("GET", rules).data[0]["pos"] == 0
    assert api.call("GET", f"{rules}/0").data["pos"] == "0"


def test_import_from_is_dropped_and_the_disk_sized_from_the_source(api: PveClient, pve: RunningPve) -> None:
    pve.call(lambda fake: fake.store_file("local", "image.qcow2", 3 * 1024**3, content="import"))
    answer = api.create_vm(902, virtio0="local-lvm:0,import-from=local:import/image.qcow2,discard=on")
    assert answer.status == 200, answer.message
    disk = str(config(api, 902)["virtio0"])
    assert disk == "local-lvm:vm-902-disk-0,discard=on,size=3G"
    volumes = api.call("GET", "nodes/pve/storage/local-lvm/content", vmid=902).data
    assert [(v["volid"], v["size"]) for v in volumes] == [("local-lvm:vm-902-disk-0", 3 * 1024**3)]


def test_the_cloud_init_drive_is_named_as_pve_names_it(api: PveClient) -> None:
    assert api.create_vm(903, ide2="local-lvm:cloudinit", ide0="local:cloudinit").status == 200
    created = config(api, 903)
    assert created["ide2"] == "local-lvm:vm-903-cloudinit,media=cdrom"
    assert created["ide0"] == "local:903/vm-903-cloudinit.qcow2,media=cdrom"


def test_a_resize_is_stored_and_a_shrink_refused(api: PveClient) -> None:
    assert api.create_vm(904, virtio0="local-lvm:2").status == 200
    assert api.task("PUT", "nodes/pve/qemu/904/resize", disk="virtio0", size="+1G") == "OK"
    assert "size=3G" in str(config(api, 904)["virtio0"])
    assert api.task("PUT", "nodes/pve/qemu/904/resize", disk="virtio0", size="5G") == "OK"
    assert "size=5G" in str(config(api, 904)["virtio0"])
    assert api.task("PUT", "nodes/pve/qemu/904/resize", disk="virtio0", size="4G") == "shrinking disks is not supported"


def test_a_config_update_is_read_back_typed_and_drives_as_pve_prints_them(api: PveClient) -> None:
    """bpg cannot read `"cores": "4"`; it sends a disk's options as `file=<volume>,...` without a size."""
    assert api.create_vm(905, cores=2, virtio0="local-lvm:2").status == 200
    update = api.call("PUT", "nodes/pve/qemu/905/config", cores="4", virtio0="file=local-lvm:vm-905-disk-0,cache=none")
    assert update.status == 200, update.message
    updated = config(api, 905)
    assert updated["cores"] == 4
    assert updated["virtio0"] == "local-lvm:vm-905-disk-0,cache=none,size=2G"


def test_snippets_are_the_files_on_disk(api: PveClient, pve: RunningPve) -> None:
    directory = Path(pve.call(lambda fake: fake.storages["local"]["path"])) / "snippets"
    (directory / "user-data.yaml").write_text("#cloud-config\n")
    listed = api.call("GET", "nodes/pve/storage/local/content", content="snippets").data
    assert {"volid": "local:snippets/user-data.yaml", "size": 14} in [
        {"volid": v["volid"], "size": v["size"]} for v in listed
    ]
    # A snippet is listed only to holders of Datastore.Allocate (pve-storage check_volume_access).
    auditor = client(pve, {"Datastore.Audit"})
    assert auditor.call("GET", "nodes/pve/storage/local/content", content="snippets").data == []
    assert api.task("DELETE", "nodes/pve/storage/local/content/local:snippets/user-data.yaml") == "OK"
    assert not (directory / "user-data.yaml").exists()


def test_the_node_lists_its_bridges_and_an_address_on_loopback(api: PveClient) -> None:
    interfaces = {i["iface"]: i for i in api.call("GET", "nodes/pve/network").data}
    assert interfaces["vmbr0"]["address"] == "127.0.0.1"
    assert "vmbr1" in interfaces


def test_power_tasks_drive_the_machines_and_the_agent_answers_from_them(api: PveClient, pve: RunningPve) -> None:
    created = api.create_vm(906, net0=f"{NET},macaddr=BC:24:11:00:09:06", ipconfig0="ip=198.18.40.96/24", agent="1")
    assert created.status == 200, created.message
    agent = "nodes/pve/qemu/906/agent/network-get-interfaces"
    assert api.call("GET", agent).status == 500, "an agent answered before the VM ran"
    assert api.task("POST", "nodes/pve/qemu/906/status/start") == "OK"
    eth0 = api.call("GET", agent).data["result"][1]
    assert eth0["hardware-address"] == "bc:24:11:00:09:06"
    assert eth0["ip-addresses"][0]["ip-address"] == "198.18.40.96"
    assert api.task("POST", "nodes/pve/qemu/906/status/reboot") == "OK"
    assert api.task("POST", "nodes/pve/qemu/906/status/shutdown", timeout=10) == "OK"
    assert api.call("GET", agent).status == 500, "the agent answers for a halted VM"
    assert api.task("DELETE", "nodes/pve/qemu/906") == "OK"
    assert [action for action, vmid in machines(pve).history if vmid == 906] == [
        "start",
        "reboot",
        "shutdown",
        "destroy",
    ]


def test_a_vm_does_not_start_on_a_missing_bridge_or_without_its_snippet(api: PveClient) -> None:
    assert api.create_vm(907, net0="virtio,bridge=vmbr9").status == 200
    assert api.task("POST", "nodes/pve/qemu/907/status/start") == "bridge 'vmbr9' does not exist"
    assert api.create_vm(908, net0=NET, cicustom="user=local:snippets/gone.yaml").status == 200
    assert "gone.yaml" in api.task("POST", "nodes/pve/qemu/908/status/start")


# --------------------------------------------------------------- PVE's checks made in its code


def test_the_node_s_own_cd_drive_needs_sys_console_and_an_empty_one_nothing(pve: RunningPve) -> None:
    """qemu-server create_vm, $check_storage_access (issue 20: bpg's default CD drive is `cdrom`)."""
    creator = client(pve, {"VM.Allocate"})
    refused = creator.create_vm(910, ide3="cdrom,media=cdrom")
    assert (refused.status, refused.message) == (403, "Permission check failed (/, Sys.Console)")
    assert creator.create_vm(911, ide3="none,media=cdrom").status == 200, "drives need no VM.Config.* at create"


def test_a_nic_needs_sdn_use_on_its_bridge(pve: RunningPve) -> None:
    """qemu-server check_bridge_access, pve-guest-common check_vnet_access."""
    creator = client(pve, {"VM.Allocate", "VM.Config.Network"})
    refused = creator.create_vm(912, net0=NET)
    assert refused.message == "Permission check failed (/sdn/zones/localnetwork/vmbr1, SDN.Use)"
    tagged = creator.create_vm(913, net0=f"{NET},tag=40")
    assert tagged.message == "Permission check failed (/sdn/zones/localnetwork/vmbr1/40, SDN.Use)"
    assert client(pve, {"VM.Allocate", "VM.Config.Network", "SDN.Use"}).create_vm(914, net0=NET).status == 200


def test_cloud_init_keys_take_cloudinit_or_network(pve: RunningPve) -> None:
    """qemu-server $check_vm_modify_config_perm: either privilege (fakepve alone asks VM.Config.HWType)."""
    keys = {"cicustom": "user=local:snippets/x.yaml", "ipconfig0": "ip=198.18.40.9/24", "nameserver": "198.18.40.2"}
    refused = client(pve, {"VM.Allocate", "VM.Config.HWType"}).create_vm(915, **keys)
    assert refused.message == "Permission check failed (/vms/915, VM.Config.Cloudinit|VM.Config.Network)"
    assert client(pve, {"VM.Allocate", "VM.Config.Network"}).create_vm(916, **keys).status == 200
    assert client(pve, {"VM.Allocate", "VM.Config.Cloudinit"}).create_vm(917, **keys).status == 200


def test_a_drive_update_needs_the_privilege_of_its_kind(api: PveClient, pve: RunningPve) -> None:
    """qemu-server update_vm_api, $check_drive_perms: a CD-ROM VM.Config.CDROM, the cloud-init drive
    VM.Config.Cloudinit and VM.Config.CDROM, a disk VM.Config.Disk; the old value's kind counts too."""
    assert api.create_vm(918, ide3="cdrom,media=cdrom", ide2="local-lvm:cloudinit", virtio0="local-lvm:1").status == 200
    updater = client(pve, {"VM.Config.Disk"})
    refused = updater.call("PUT", "nodes/pve/qemu/918/config", ide3="none,media=cdrom")
    assert refused.message == "Permission check failed (/vms/918, VM.Config.CDROM)"
    assert updater.call("PUT", "nodes/pve/qemu/918/config", virtio0="local-lvm:vm-918-disk-0,cache=none").status == 200
    added = updater.call("PUT", "nodes/pve/qemu/918/config", ide1="none,media=cdrom")
    assert added.message == "Permission check failed (/vms/918, VM.Config.CDROM)", "a new drive's own kind"
    cdrom = client(pve, {"VM.Config.CDROM"})
    assert cdrom.call("PUT", "nodes/pve/qemu/918/config", ide3="none,media=cdrom").status == 200
    refused = cdrom.call("PUT", "nodes/pve/qemu/918/config", delete="ide2")
    assert refused.message == "Permission check failed (/vms/918, VM.Config.Cloudinit)"


def test_the_download_takes_sys_accessnetwork_on_the_node(pve: RunningPve) -> None:
    """pve-storage download_url: Sys.Audit + Sys.Modify on /, or Sys.AccessNetwork on /nodes/<node>."""
    values = {"url": "https://images.invalid/a.qcow2", "content": "import"}
    for privileges, name in (({"Sys.AccessNetwork"}, "a.qcow2"), ({"Sys.Audit", "Sys.Modify"}, "b.qcow2")):
        downloader = client(pve, {"Datastore.AllocateTemplate", *privileges})
        assert downloader.task("POST", "nodes/pve/storage/local/download-url", filename=name, **values) == "OK"
    refused = client(pve, {"Datastore.AllocateTemplate", "Sys.Audit"}).call(
        "POST", "nodes/pve/storage/local/download-url", filename="c.qcow2", **values
    )
    assert refused.status == 403


def test_a_resize_needs_allocate_space_on_the_disk_s_storage(api: PveClient, pve: RunningPve) -> None:
    """qemu-server resize_vm checks Datastore.AllocateSpace in its worker: the task fails."""
    assert api.create_vm(919, virtio0="local-lvm:1").status == 200
    resizer = client(pve, {"VM.Config.Disk"})
    status = resizer.task("PUT", "nodes/pve/qemu/919/resize", disk="virtio0", size="2G")
    assert status == "Permission check failed (/storage/local-lvm, Datastore.AllocateSpace)"
