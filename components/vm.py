"""One lab VM on Proxmox VE: Ubuntu 24.04 with a static address, our cloud-init, and its firewall.

Children: the user-data snippet (`FileLegacy`), the VM (`VmLegacy`, the provider's full-featured VM
resource in 8.x), and its firewall options and rules. Outputs: `vm_id`, `ip`.
"""

from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_proxmoxve as proxmoxve

from plan.model import Host, LabConfig
from render.cloud_init import render_user_data
from render.firewall import rules_for


@dataclass(frozen=True, kw_only=True)
class LabVmArgs:
    """What one VM needs: the plan, which host of it, a role tag, and the disk image (None: clone the template)."""

    lab: LabConfig
    host: Host
    role: str
    image_id: pulumi.Input[str] | None


class LabVm(pulumi.ComponentResource):
    """A VM of the plan, booted from the Ubuntu cloud image (or cloned from a template VM)."""

    vm_id: pulumi.Output[int]
    """The Proxmox VM id (the configured one, or the one Proxmox chose)."""
    ip: pulumi.Output[str]
    """The static IPv4 address cloud-init gave the VM."""

    def __init__(self, name: str, args: LabVmArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("haproxy-lab:proxmox:LabVm", name, None, opts)
        lab, host = args.lab, args.host
        proxmox = lab.proxmox
        child = pulumi.ResourceOptions(parent=self)

        user_data = proxmoxve.FileLegacy(
            f"{name}-user-data",
            node_name=proxmox.node,
            datastore_id=proxmox.snippets_datastore,
            content_type="snippets",
            source_raw=proxmoxve.FileLegacySourceRawArgs(
                data=render_user_data(lab, host),
                file_name=f"haproxy-lab-{host.key}-user-data.yaml",
            ),
            opts=child,
        )

        clone = None
        disks = [
            proxmoxve.VmLegacyDiskArgs(
                interface="virtio0",
                datastore_id=proxmox.vm_datastore,
                import_from=args.image_id,
                size=lab.vm_size.disk_gb,
                discard="on",
                iothread=True,
            )
        ]
        if args.image_id is None:
            if proxmox.template_vm_id is None:
                raise ValueError("LabVm needs an image_id or a configured proxmox.templateVmId")
            clone = proxmoxve.VmLegacyCloneArgs(vm_id=proxmox.template_vm_id, full=True, retries=3)
            disks = [
                proxmoxve.VmLegacyDiskArgs(
                    interface="virtio0", datastore_id=proxmox.vm_datastore, size=lab.vm_size.disk_gb
                )
            ]

        vm = proxmoxve.VmLegacy(
            f"{name}-vm",
            node_name=proxmox.node,
            name=host.name,
            vm_id=host.vm_id,
            description=f"haproxy-lab {args.role} {host.name} ({host.ip}), managed by Pulumi",
            tags=["haproxy-lab", args.role],
            on_boot=True,
            started=True,
            # Shut down through ACPI/the guest agent on destroy (never a hard stop), bounded in time.
            stop_on_destroy=False,
            timeout_shutdown_vm=300,
            clone=clone,
            agent=proxmoxve.VmLegacyAgentArgs(enabled=True, trim=True, timeout="15m"),
            cpu=proxmoxve.VmLegacyCpuArgs(cores=lab.vm_size.cores, type="x86-64-v2-AES"),
            memory=proxmoxve.VmLegacyMemoryArgs(dedicated=lab.vm_size.memory_mb),
            disks=disks,
            network_devices=[
                proxmoxve.VmLegacyNetworkDeviceArgs(bridge=lab.network.bridge, model="virtio", firewall=True)
            ],
            # Ubuntu cloud images can kernel-panic after a disk resize without a serial device.
            serial_devices=[proxmoxve.VmLegacySerialDeviceArgs(device="socket")],
            operating_system=proxmoxve.VmLegacyOperatingSystemArgs(type="l26"),
            initialization=proxmoxve.VmLegacyInitializationArgs(
                datastore_id=proxmox.vm_datastore,
                ip_configs=[
                    proxmoxve.VmLegacyInitializationIpConfigArgs(
                        ipv4=proxmoxve.VmLegacyInitializationIpConfigIpv4Args(
                            address=f"{host.ip}/{lab.network.cidr.prefixlen}",
                            gateway=str(lab.network.gateway),
                        )
                    )
                ],
                dns=proxmoxve.VmLegacyInitializationDnsArgs(
                    domain=lab.network.domain,
                    servers=[str(server) for server in lab.network.dns],
                ),
                user_data_file_id=user_data.id,
            ),
            opts=child,
        )

        proxmoxve.firewall.OptionsLegacy(
            f"{name}-firewall-options",
            node_name=proxmox.node,
            vm_id=vm.vm_id,
            enabled=True,
            input_policy="DROP",
            output_policy="ACCEPT",
            dhcp=False,
            opts=child,
        )
        proxmoxve.firewall.RulesLegacy(
            f"{name}-firewall-rules",
            node_name=proxmox.node,
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
            opts=child,
        )

        self.vm_id = vm.vm_id
        self.ip = pulumi.Output.from_input(str(host.ip))
        self.register_outputs({"vm_id": self.vm_id, "ip": self.ip})
