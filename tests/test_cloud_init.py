"""What each VM boots with: cloud-init user-data valid for cloud-init itself, locked down, injection-proof."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from plan.model import WebServer
from plan.stack_file import load_stack_file
from render.cloud_init import render_user_data


def cloud_init_schema(document: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    executable = shutil.which("cloud-init")
    if executable is None:
        pytest.fail("cloud-init is not installed: run tools/setup.sh (apt-get install cloud-init)")
    path = tmp_path / "user-data.yaml"
    path.write_text(document, encoding="utf-8")
    return subprocess.run(
        [executable, "schema", "--config-file", str(path)], capture_output=True, text=True, check=False, timeout=60
    )


def test_every_vm_gets_valid_cloud_config(tmp_path: Path) -> None:
    lab = load_stack_file("dev")
    for host in lab.hosts:
        result = cloud_init_schema(render_user_data(lab, host), tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "Valid cloud-config" in result.stdout


def test_the_schema_check_does_catch_a_bad_document(tmp_path: Path) -> None:
    lab = load_stack_file("dev")
    broken = render_user_data(lab, lab.load_balancers[0]).replace("ssh_pwauth: false", "ssh_pwauth: [oops]")
    result = cloud_init_schema(broken, tmp_path)
    assert result.returncode != 0


def test_ssh_is_key_only_and_root_cannot_log_in() -> None:
    lab = load_stack_file("dev")
    document = yaml.safe_load(render_user_data(lab, lab.web_servers[0]))
    assert document["ssh_pwauth"] is False
    assert document["disable_root"] is True
    user = document["users"][0]
    assert user["name"] == "samuel"
    assert user["lock_passwd"] is True
    assert user["ssh_authorized_keys"] == [lab.ssh.public_key]
    sshd = next(f for f in document["write_files"] if f["path"].startswith("/etc/ssh/sshd_config.d/"))
    assert "PermitRootLogin no" in sshd["content"].splitlines()
    assert "PasswordAuthentication no" in sshd["content"].splitlines()


def test_unattended_upgrades_and_the_guest_agent_are_on() -> None:
    lab = load_stack_file("dev")
    document = yaml.safe_load(render_user_data(lab, lab.load_balancers[0]))
    assert {"qemu-guest-agent", "unattended-upgrades"} <= set(document["packages"])
    auto = next(f for f in document["write_files"] if f["path"] == "/etc/apt/apt.conf.d/20auto-upgrades")
    assert 'APT::Periodic::Unattended-Upgrade "1";' in auto["content"]
    assert ["systemctl", "enable", "--now", "qemu-guest-agent"] in document["runcmd"]


def test_hostname_and_domain_come_from_the_plan() -> None:
    lab = load_stack_file("dev")
    document = yaml.safe_load(render_user_data(lab, lab.web_servers[1]))
    assert document["hostname"] == "web2-sam"
    assert document["fqdn"] == "web2-sam.mvgroup.local"


def test_hostile_values_cannot_add_cloud_config_keys(tmp_path: Path) -> None:
    lab = load_stack_file("dev")
    # The public key's comment is free text; a message is not in user-data at all, but try both.
    hostile_comment = "x\nruncmd: [[rm, -rf, /]] # $(id) ; 'quoted' \"dq\""
    hostile_ssh = dataclasses.replace(lab.ssh, public_key="ssh-ed25519 AAAAC3Nza " + hostile_comment)
    server = dataclasses.replace(lab.web_servers[0], message="a: b\nruncmd: [reboot]")
    assert isinstance(server, WebServer)
    hostile_lab = dataclasses.replace(lab, ssh=hostile_ssh, web_servers=(server,))
    text = render_user_data(hostile_lab, server)
    document = yaml.safe_load(text)
    assert document["users"][0]["ssh_authorized_keys"] == [hostile_ssh.public_key]
    assert ["rm", "-rf", "/"] not in document["runcmd"]
    assert cloud_init_schema(text, tmp_path).returncode == 0
