"""The cloud-init user-data each VM boots with, built as Python data and dumped as YAML.

Why a custom user-data (a Proxmox snippet) rather than the provider's `user_account`: it is the only
way to lock SSH down (keys only, no root), install and start the qemu guest agent the provider waits
for, and turn on unattended security upgrades, all before the first login. It holds no secret and
changes only when the host, user or key changes: things that change often (haproxy.cfg, the web
app) are pushed by remote commands instead, so editing them never re-creates a VM.
"""

from __future__ import annotations

from typing import Any

import yaml

from plan.model import Host, LabConfig

SSHD_HARDENING = "\n".join(
    [
        "# haproxy-lab: SSH by key only, never as root (set by cloud-init).",
        "PermitRootLogin no",
        "PasswordAuthentication no",
        "KbdInteractiveAuthentication no",
        "PubkeyAuthentication yes",
        "",
    ]
)

UNATTENDED_UPGRADES = "\n".join(
    [
        "// haproxy-lab: daily package lists and unattended security upgrades (set by cloud-init).",
        'APT::Periodic::Update-Package-Lists "1";',
        'APT::Periodic::Unattended-Upgrade "1";',
        'APT::Periodic::AutocleanInterval "7";',
        "",
    ]
)


def hostname(host: Host) -> str:
    """The guest's hostname: the plan's name in lower case (DNS names are case-insensitive)."""
    return host.name.lower()


def user_data(lab: LabConfig, host: Host) -> dict[str, Any]:
    """The cloud-config document for one VM, as data (tests read it; render_user_data dumps it)."""
    return {
        "hostname": hostname(host),
        "fqdn": f"{hostname(host)}.{lab.network.domain}",
        "prefer_fqdn_over_hostname": False,
        "manage_etc_hosts": True,
        "users": [
            {
                "name": lab.ssh.user,
                "gecos": "haproxy-lab admin",
                "groups": ["sudo"],
                "shell": "/bin/bash",
                "sudo": "ALL=(ALL) NOPASSWD:ALL",
                "lock_passwd": True,
                "ssh_authorized_keys": [lab.ssh.public_key],
            }
        ],
        "disable_root": True,
        "ssh_pwauth": False,
        "package_update": True,
        # rsyslog: HAProxy logs to /dev/log (its package wires rsyslog to /var/log/haproxy.log).
        "packages": ["qemu-guest-agent", "unattended-upgrades", "rsyslog", "curl", "ca-certificates"],
        "write_files": [
            {"path": "/etc/ssh/sshd_config.d/60-haproxy-lab.conf", "permissions": "0644", "content": SSHD_HARDENING},
            {"path": "/etc/apt/apt.conf.d/20auto-upgrades", "permissions": "0644", "content": UNATTENDED_UPGRADES},
        ],
        "runcmd": [
            ["systemctl", "enable", "--now", "qemu-guest-agent"],
            ["systemctl", "enable", "--now", "unattended-upgrades"],
            ["systemctl", "try-reload-or-restart", "ssh"],
        ],
    }


def render_user_data(lab: LabConfig, host: Host) -> str:
    """`#cloud-config` YAML for one VM; yaml.safe_dump quotes every value, so no input can inject keys."""
    body = yaml.safe_dump(user_data(lab, host), sort_keys=False, default_flow_style=False, width=4096)
    return f"#cloud-config\n{body}"
