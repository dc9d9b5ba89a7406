"""One lab VM on Proxmox VE: Ubuntu 24.04 with a static address, our cloud-init, and its firewall.

Children: the user-data snippet (`FileLegacy`), the VM (`VmLegacy`, the provider's full-featured VM
resource in 8.x), and its firewall options and rules. Outputs: `vm_id`, `ip`, `instance`.

Day 2 (see the README's "Updates"): the snippet's name carries a hash of its text, so a changed
user-data is a new file and, `user_data_file_id` being ForceNew in the provider, a new VM. Every
replacement here deletes before it creates: a fixed vmId, the static address and the VM's firewall
file (Proxmox removes it with the VM) cannot be held by two instances at once.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_proxmoxve as proxmoxve

from plan.model import Host, LabConfig
from render.cloud_init import render_user_data
from render.file_names import snippet_file_name
from render.firewall import rules_for
from render.shipping import sha256_hex

# Destroy gives the guest this long to shut down (guest agent, else ACPI), then Proxmox stops it
# hard; the provider bounds shutdown, stop and delete by the larger of the two, so shutdown < stop.
SHUTDOWN_TIMEOUT_S = 120
STOP_TIMEOUT_S = 300
CPU_TYPE = "x86-64-v2-AES"


def reboot_inputs(lab: LabConfig, host: Host) -> dict[str, Any]:
    """The VM's inputs whose change makes bpg's provider reboot it (v0.111.1, `vmUpdate` in
    proxmoxtf/resource/vm/vm.go sets rebootRequired for cpu, memory, initialization, boot order, agent,
    serial devices, OS type, SCSI hardware): the VM is built from these values. The program's constants
    (agent, serial device, OS type, SCSI hardware) change only with a new version of it. Not here: the disk
    size (grown online, disk hotplug), the NIC (hotplugged); user-data and vmId re-create the VM."""
    proxmox = lab.proxmox
    return {
        "cores": lab.vm_size.cores,
        "cpu_type": CPU_TYPE,
        "memory_mb": lab.vm_size.memory_mb,
        "address": f"{host.ip}/{lab.network.cidr.prefixlen}",
        "gateway": str(lab.network.gateway),
        "dns_servers": [str(server) for server in lab.network.dns],
        "domain": lab.network.domain,
        "cloud_init_datastore": proxmox.vm_datastore,
        "boot_disk": proxmox.boot_disk,
    }


def disruption_fingerprint(lab: LabConfig, host: Host) -> str:
    """A hash of what takes the VM out of service when it changes: reboot_inputs (the provider reboots it) and
    what re-creates it (its user-data, whose snippet is ForceNew; its vmId, node or template). The steps that
    take the VM out of service before (`pause`) and bring it back after (`ready`, `back`) hold it in their
    triggers (components/rolling.py)."""
    replaced_by = {
        "user_data": render_user_data(lab, host),
        "vm_id": host.vm_id,
        "node": lab.node_for(host),
        "template_vm_id": lab.proxmox.template_vm_id,
    }
    return sha256_hex(json.dumps({**reboot_inputs(lab, host), **replaced_by}, sort_keys=True))


# The one disk's speed limits, which the program never sets (see LabVm: the perpetual diff it hides).
DISK_SPEED = "disks[0].speed"


@dataclass(frozen=True, kw_only=True)
class LabVmArgs:
    """What one VM needs: the plan, which host of it, a role tag, and the disk image (None: clone the template)."""

    lab: LabConfig
    host: Host
    role: str
    image_id: pulumi.Input[str] | None
    after: pulumi.Input[Sequence[pulumi.Input[pulumi.Resource]]] = ()
    """What the VM (and its snippet, whose replacement deletes the VM first) waits for: the rolling order."""


class LabVm(pulumi.ComponentResource):
    """A VM of the plan, booted from the Ubuntu cloud image (or cloned from a template VM)."""

    vm_id: pulumi.Output[int]
    """The Proxmox VM id (the configured one, or the one Proxmox chose)."""
    ip: pulumi.Output[str]
    """The static IPv4 address cloud-init gave the VM."""
    instance: pulumi.Output[str]
    """The MAC address Proxmox generated for this VM instance: it changes whenever the VM is re-created,
    so the first remote command re-runs on a new instance."""

    def __init__(self, name: str, args: LabVmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:proxmox:LabVm", name, None, opts)
        lab, host = args.lab, args.host
        proxmox = lab.proxmox
        node = lab.node_for(host)
        settings = reboot_inputs(lab, host)
        # Deleted before its replacement is uploaded: a replacement that keeps its path must not end with a delete.
        replaced_first = pulumi.ResourceOptions(parent=self, delete_before_replace=True, depends_on=args.after)
        # The provider would add a disk on a new interface next to the old one: a new boot disk is a new VM.
        # After a refresh the bridged provider reads a speed block back that nothing set and plans an update
        # of every VM (pulumi-proxmoxve#664); the literal path is needed, `disks[*].speed` does not match
        # (docs/day2.md, "The disk's speed"). The disk's size stays managed: diskGb still grows it.
        vm_options = pulumi.ResourceOptions(
            parent=self,
            delete_before_replace=True,
            replace_on_changes=["disks[*].interface"],
            ignore_changes=[DISK_SPEED],
            depends_on=args.after,
        )

        text = render_user_data(lab, host)
        user_data = proxmoxve.FileLegacy(
            f"{name}-user-data",
            node_name=node,
            datastore_id=proxmox.snippets_datastore,
            content_type="snippets",
            source_raw=proxmoxve.FileLegacySourceRawArgs(
                data=text,
                file_name=snippet_file_name(pulumi.get_stack(), host.key, text),
            ),
            opts=replaced_first,
        )

        if args.image_id is None and proxmox.template_vm_id is None:
            raise ValueError("LabVm needs an image_id or a configured proxmox.templateVmId")
        clone = (
            None
            if args.image_id is not None or proxmox.template_vm_id is None
            # The template lives on the first node; a VM placed on another node is cloned across
            # (Proxmox needs the target datastore there: see docs/ha.md, "Several nodes").
            else proxmoxve.VmLegacyCloneArgs(
                vm_id=proxmox.template_vm_id,
                full=True,
                retries=3,
                node_name=None if node == proxmox.node else proxmox.node,
            )
        )
        # The disk block must name the disk the VM boots from: a clone's other interface would be a
        # second, blank disk and the template's own disk would keep its size.
        paravirtual = proxmox.boot_disk.startswith(("virtio", "scsi"))
        disks = [
            proxmoxve.VmLegacyDiskArgs(
                interface=proxmox.boot_disk,
                datastore_id=proxmox.vm_datastore,
                import_from=args.image_id,
                size=lab.vm_size.disk_gb,
                discard="on",
                iothread=True if paravirtual else None,
            )
        ]

        vm = proxmoxve.VmLegacy(
            f"{name}-vm",
            node_name=node,
            name=host.name,
            vm_id=host.vm_id,
            description=f"haproxy-lab {args.role} {host.name} ({host.ip}), managed by Pulumi",
            tags=["haproxy-lab", args.role],
            on_boot=True,
            started=True,
            # Destroy: a clean shutdown first (guest agent or ACPI), then a hard stop after SHUTDOWN_TIMEOUT_S.
            stop_on_destroy=False,
            timeout_shutdown_vm=SHUTDOWN_TIMEOUT_S,
            timeout_stop_vm=STOP_TIMEOUT_S,
            clone=clone,
            boot_orders=[settings["boot_disk"]],
            # An empty CD drive. Left out, the provider's default (ide3, file "") asks for the node's own CD
            # drive, which Proxmox grants only with Sys.Console on / (docs/e2e.md, "The CD-ROM").
            cdrom=proxmoxve.VmLegacyCdromArgs(file_id="none"),
            # virtio-scsi-single gives each SCSI disk its own controller, which iothread needs.
            scsi_hardware="virtio-scsi-single",
            agent=proxmoxve.VmLegacyAgentArgs(enabled=True, trim=True, timeout="15m"),
            cpu=proxmoxve.VmLegacyCpuArgs(cores=settings["cores"], type=settings["cpu_type"]),
            memory=proxmoxve.VmLegacyMemoryArgs(dedicated=settings["memory_mb"]),
            disks=disks,
            network_devices=[
                proxmoxve.VmLegacyNetworkDeviceArgs(bridge=lab.network.bridge, model="virtio", firewall=True)
            ],
            # Ubuntu cloud images can kernel-panic after a disk resize without a serial device.
            serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            initialization=proxmoxve.VmLegacyInitializationArgs(
                datastore_id=settings["cloud_init_datastore"],
                ip_configs=[
                    proxmoxve.VmLegacyInitializationIpConfigArgs(
                        ipv4=proxmoxve.VmLegacyInitializationIpConfigIpv4Args(
                            address=settings["address"], gateway=settings["gateway"]
                        )
                    )
                ],
                dns=proxmoxve.VmLegacyInitializationDnsArgs(domain=settings["domain"], servers=settings["dns_servers"]),
                user_data_file_id=user_data.id,
            ),
            opts=vm_options,
        )
        # Proxmox deletes a VM's firewall file with the VM: a re-created VM (same vmId, same inputs)
        # must get its options and rules again, so they are replaced with it.
        firewall = pulumi.ResourceOptions(parent=self, delete_before_replace=True, replace_with=[vm])

        proxmoxve.firewall.OptionsLegacy(
            f"{name}-firewall-options",
            node_name=node,
            vm_id=vm.vm_id,
            enabled=True,
            input_policy="DROP",
            output_policy="ACCEPT",
            dhcp=False,
            opts=firewall,
        )
        proxmoxve.firewall.RulesLegacy(
            f"{name}-firewall-rules",
            node_name=node,
            vm_id=vm.vm_id,
            rules=[
                proxmoxve.firewall.RulesLegacyRuleArgs(
                    type="in",
                    action="ACCEPT",
                    proto=rule.proto,
                    dport=None if rule.dport is None else str(rule.dport),
                    source=rule.source,
                    comment=rule.comment,
                    enabled=True,
                )
                for rule in rules_for(lab, host)
            ],
            opts=firewall,
        )

        self.vm_id = vm.vm_id
        self.ip = pulumi.Output.from_input(str(host.ip))
        self.instance = vm.network_devices.apply(lambda devices: (devices[0].mac_address or "") if devices else "")
        self.register_outputs({"vm_id": self.vm_id, "ip": self.ip, "instance": self.instance})
