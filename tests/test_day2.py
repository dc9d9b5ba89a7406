"""Day 2 under Pulumi's mocks: what a change, a replacement or a destroy would do to the lab.

The mocks cannot replace resources, so each test checks what decides the engine's and the providers'
behaviour, read from their sources: the resource options (delete-before-replace, replace-with,
timeouts), the triggers of the remote commands, and the inputs the provider marks ForceNew (bpg
terraform-provider-proxmox: `initialization.user_data_file_id` and every field of a file resource).
Two evaluations (before and after a change) are compared. Each test names a row of the README's
"Updates" table.
"""

from __future__ import annotations

import copy
import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest

from plan.model import ConfigError
from plan.parse import parse_lab_config
from render.shipping import sha256_hex
from tests.change_diff import all_steps, changed, snippet_of, triggers
from tests.plans import dev_raw, ha_raw
from tests.program_harness import commands_of, evaluate, vm_named
from tests.pulumi_harness import COMMAND, IMAGE, OPTIONS, RULES, SNIPPET, VM, Run, run_program, stack_config, unwrap

pytestmark = pytest.mark.timeout(180)

HOSTS = ("haproxy-sam", "web1-sam", "web2-sam")


@pytest.fixture(scope="module")
def dev_run() -> Run:
    return evaluate(dev_raw())


# --- 1. the cloud-init snippet ------------------------------------------------------------------


def test_snippet_file_name_carries_a_hash_of_its_text(dev_run: Run) -> None:
    for host in HOSTS:
        raw = snippet_of(dev_run, host).inputs["sourceRaw"]
        assert raw["fileName"] == f"haproxy-lab-dev-{host}-{sha256_hex(raw['data'])[:12]}.yaml"


def test_snippet_is_deleted_before_its_replacement_is_created(dev_run: Run) -> None:
    assert all(s.delete_before_replace for s in dev_run.of_type(SNIPPET))


CLOUD_INIT_CHANGES = [
    pytest.param(lambda p: p["ssh"].update(user="alice"), HOSTS, id="ssh.user"),
    pytest.param(
        lambda p: p["ssh"].update(
            publicKey="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBbWFub3RoZXJrZXlmb3J0ZXN0cw new@host"
        ),
        HOSTS,
        id="ssh.publicKey",
    ),
    pytest.param(lambda p: p["network"].update(domain="lab.example"), HOSTS, id="network.domain"),
    pytest.param(lambda p: p["webServers"][0].update(name="WEB1-NEW", key="web1-sam"), ("web1-sam",), id="hostname"),
]


@pytest.mark.parametrize(("mutate", "re_created"), CLOUD_INIT_CHANGES)
def test_a_cloud_init_change_re_creates_exactly_the_vms_it_concerns(
    dev_run: Run, mutate: Callable[[dict[str, Any]], None], re_created: tuple[str, ...]
) -> None:
    """A new user-data text is a new snippet file; its id is ForceNew on the VM: the VM is re-created
    (delete first), and no file a VM points at is ever deleted."""
    after = changed(mutate)
    for host in HOSTS:
        old = snippet_of(dev_run, host).inputs["sourceRaw"]
        new = snippet_of(after, host).inputs["sourceRaw"]
        vm_before = next(r for r in dev_run.of_type(VM) if r.name == f"haproxy-lab-{host}-machine-vm")
        vm_after = after.named(f"haproxy-lab-{host}-machine-vm")
        user_data_before = vm_before.inputs["initialization"]["userDataFileId"]
        user_data_after = vm_after.inputs["initialization"]["userDataFileId"]
        if host in re_created:
            assert new["data"] != old["data"]
            assert new["fileName"] != old["fileName"], "same path: the old snippet's delete would remove the new one"
            assert user_data_after != user_data_before, "user_data_file_id is ForceNew: the VM is re-created"
            assert vm_after.delete_before_replace
        else:
            assert new == old
            assert user_data_after == user_data_before


# --- 2. re-creating a VM --------------------------------------------------------------------------


def test_every_vm_is_deleted_before_its_replacement_is_created(dev_run: Run) -> None:
    """A fixed vmId and the static address cannot be held by two VMs at once."""
    vms = dev_run.of_type(VM)
    assert len(vms) == 3
    assert all(vm.delete_before_replace for vm in vms)


def test_the_firewall_is_replaced_with_its_vm(dev_run: Run) -> None:
    """Proxmox deletes a VM's firewall file with the VM: a re-created VM must get it back."""
    for host in HOSTS:
        vm = dev_run.named(f"haproxy-lab-{host}-machine-vm")
        for kind in (OPTIONS, RULES):
            resource = next(r for r in dev_run.of_type(kind) if r.name.startswith(f"haproxy-lab-{host}-"))
            assert resource.replace_with == [vm.urn]
            assert resource.delete_before_replace, "the new rules live at the same path as the old ones"


def test_renaming_a_host_with_its_key_keeps_every_resource_name(dev_run: Run) -> None:
    after = changed(lambda p: p["webServers"][0].update(name="WEB1-NEW", key="web1-sam"))
    assert sorted(r.name for r in after.resources) == sorted(r.name for r in dev_run.resources)
    assert vm_named(after, "WEB1-NEW").name == "haproxy-lab-web1-sam-machine-vm"
    cfg = unwrap(commands_of(after, "haproxy-lab-haproxy-sam")["apply-haproxy-cfg"].inputs["stdin"])
    assert any(line.split()[:2] == ["server", "WEB1-NEW"] for line in cfg.splitlines())


def test_renaming_a_host_without_its_key_is_a_new_host(dev_run: Run) -> None:
    """Documented: without `key`, the new name is a new resource (created before the old one goes)."""
    after = changed(lambda p: p["webServers"][0].update(name="WEB1-NEW"))
    names = {r.name for r in after.resources}
    assert "haproxy-lab-web1-new-machine-vm" in names
    assert "haproxy-lab-web1-sam-machine-vm" not in names


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        pytest.param(
            lambda p: p["webServers"][1].update(key="web1-sam"),
            "haproxy-lab:webServers[1].key: 'web1-sam' is already the resource key of webServers[0]",
            id="duplicate-key",
        ),
        pytest.param(
            lambda p: p["webServers"][0].update(key="Web 1"),
            "haproxy-lab:webServers[0].key: 'Web 1' has a character or form that is not allowed",
            id="bad-key",
        ),
    ],
)
def test_bad_resource_keys_are_refused(mutate: Callable[[dict[str, Any]], None], message: str) -> None:
    plan = dev_raw()
    mutate(plan)
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(plan)
    assert message in str(caught.value)


# --- 3. a new VM instance is always provisioned -----------------------------------------------------


def test_a_re_created_vm_is_provisioned_again_and_only_it(dev_run: Run) -> None:
    """Same inputs, new instance (Proxmox gives it a new MAC address): every step on it re-runs, in order."""
    config, secret_keys = stack_config(dev_raw())
    after = run_program(config, secret_keys, recreated=frozenset({"haproxy-lab-web1-sam-machine-vm"}))
    before_steps, after_steps = all_steps(dev_run), all_steps(after)
    assert set(before_steps) == set(after_steps)
    for name, step in after_steps.items():
        # Not the step before a reboot: its triggers are the VM's reboot fingerprint, and no input changed.
        re_runs = name.startswith("haproxy-lab-web1-sam-") and not name.endswith("-pause")
        same = triggers(step) == triggers(before_steps[name])
        assert same != re_runs, f"{name}: {'must' if re_runs else 'must not'} re-run"
    vm = after.named("haproxy-lab-web1-sam-machine-vm")
    assert vm.urn in after_steps["haproxy-lab-web1-sam-cloud-init"].dependencies, "the MAC exists once the VM does"


def test_each_step_re_runs_when_the_step_before_it_re_ran(dev_run: Run) -> None:
    """pulumi-command gives every new run a new id; each step's triggers hold the previous step's."""
    chains = {
        "haproxy-sam": ["cloud-init", "install-haproxy", "apply-tls-cert", "apply-haproxy-cfg"],
        "web1-sam": ["cloud-init", "install-docker", "deploy-webapp", "ready"],
        "web2-sam": ["cloud-init", "install-docker", "deploy-webapp", "ready"],
    }
    for host, chain in chains.items():
        steps = commands_of(dev_run, f"haproxy-lab-{host}")
        for previous, current in itertools.pairwise(chain):
            assert any(
                isinstance(t, str) and t.startswith(f"haproxy-lab-{host}-{previous}-") for t in triggers(steps[current])
            ), f"{host}: {current} must re-run when {previous} re-ran"


# --- 4. no command hangs --------------------------------------------------------------------------


# The VM-side bound every command line carries (components/remote.py as_root_within): an outer timeout
# as the login user around sudo, an inner one as root around the script, both with a kill grace.
VM_BOUND = re.compile(
    r"^haproxy_lab_start=\$\(date \+%s\); timeout -k (?P<grace>\d+)s (?P<outer>\d+)s sudo -n "
    r"timeout -k (?P=grace)s (?P<inner>\d+)s sh -c .* reap sh -c .*"
    r"echo 'haproxy-lab: (?P<label>[^']+) ran past its (?P<budget>\d+ min) budget on the VM and was stopped' >&2",
    re.DOTALL,
)


def seconds_of(duration: str) -> int:
    """A custom timeout as the program writes them ("20m" or "90s")."""
    return int(duration[:-1]) * (60 if duration.endswith("m") else 1)


def assert_bounded_on_the_vm(name: str, command_line: str, timeout: str) -> str:
    """The command line stops itself on the VM by the step's custom timeout; returns the step it names."""
    match = VM_BOUND.match(command_line)
    assert match, f"{name}: no VM-side bound on its command line"
    budget, grace = seconds_of(timeout), int(match["grace"])
    assert grace > 0, name
    assert int(match["outer"]) + grace == budget, f"{name}: sudo and all stopped by the budget"
    assert int(match["inner"]) + 2 * grace == budget, f"{name}: the script gets SIGKILL a grace before"
    assert match["budget"] == f"{budget // 60} min", f"{name}: the message must name the budget"
    return match["label"]


@pytest.mark.parametrize("stack", ["dev", "ha"])
def test_every_remote_command_is_bounded_in_time(dev_run: Run, stack: str) -> None:
    run = dev_run if stack == "dev" else evaluate(ha_raw())
    for step in run.of_type(COMMAND):
        assert set(step.custom_timeouts) == {"create", "update", "delete"}, f"{step.name} could hang"
        connection = unwrap(step.inputs["connection"])
        assert connection["perDialTimeout"] > 0
        if step.name.endswith("-cloud-init"):
            assert connection["dialErrorLimit"] == -1, "the first command waits for the VM to boot"
            # An update (a new key for a VM that booted long ago) must not wait as long as a boot.
            assert step.custom_timeouts["update"] == "5m"
            assert_bounded_on_the_vm(step.name, step.inputs["update"], step.custom_timeouts["update"])
        elif step.name.endswith("-pause"):
            # Rolling (components/rolling.py): nothing on create; a web server's pause drains on update, a load
            # balancer's hands the virtual IP off on delete, within the step's budget.
            assert "create" not in step.inputs, f"{step.name}: runs nothing on create"
            assert 0 < connection["dialErrorLimit"] <= 10, f"{step.name}: blocked SSH must fail within minutes"
            line = "update" if "update" in step.inputs else "delete"
            label = assert_bounded_on_the_vm(step.name, step.inputs[line], step.custom_timeouts[line])
            assert f" {label} || {{" in step.inputs[line], f"{step.name}: the message names the script it runs"
        else:
            assert 0 < connection["dialErrorLimit"] <= 10, f"{step.name}: blocked SSH must fail within minutes"
            assert "update" not in step.inputs, f"{step.name}: an update runs create, within the same budget"
            assert step.custom_timeouts["update"] == step.custom_timeouts["create"]
        if not step.name.endswith("-pause"):
            label = assert_bounded_on_the_vm(step.name, step.inputs["create"], step.custom_timeouts["create"])
            assert f" {label} || {{" in step.inputs["create"], f"{step.name}: the message names the script it runs"
        # Previous output would go by SSH Setenv, which a stock sshd refuses: a warning on every run.
        assert step.inputs["addPreviousOutputInEnv"] is False, step.name


# --- 6. rolling web updates drained through HAProxy -------------------------------------------------


def test_each_redeploy_is_wrapped_by_drain_and_ready_on_the_load_balancer(dev_run: Run) -> None:
    lb_ip = "10.0.0.30"
    lb_config = "haproxy-lab-haproxy-sam-apply-haproxy-cfg"
    previous_ready = None
    for host, server in (("web1-sam", "WEB1-SAM"), ("web2-sam", "WEB2-SAM")):
        steps = commands_of(dev_run, f"haproxy-lab-{host}")
        drain, deploy, ready = steps["drain"], steps["deploy-webapp"], steps["ready"]
        for step, action in ((drain, "drain"), (ready, "ready")):
            assert unwrap(step.inputs["connection"])["host"] == lb_ip
            assert f" haproxy-server-state.sh {action} {server} || " in step.inputs["create"]
        names = {dev_run.by_urn(urn).name for urn in drain.dependencies}
        assert lb_config in names, "HAProxy must know the server before it is drained"
        if previous_ready is not None:
            assert previous_ready in names, "one server at a time"
        assert drain.urn in deploy.dependencies
        assert deploy.urn in ready.dependencies
        # Drain runs exactly when the deploy does; ready after each new deploy run.
        assert set(triggers(deploy)) <= set(triggers(drain))
        previous_ready = ready.name


def test_a_message_change_rolls_out_to_its_server_only(dev_run: Run) -> None:
    after = changed(lambda p: p["webServers"][0].update(message="Serveur 1 bis"))
    before_steps, after_steps = all_steps(dev_run), all_steps(after)
    re_run = {name for name, step in after_steps.items() if triggers(step) != triggers(before_steps[name])}
    assert re_run == {"haproxy-lab-web1-sam-drain", "haproxy-lab-web1-sam-deploy-webapp", "haproxy-lab-web1-sam-ready"}


# --- 8. the image ------------------------------------------------------------------------------------

DATED_URL = "https://cloud-images.ubuntu.com/noble/20250805/noble-server-cloudimg-amd64.img"


def test_a_new_image_url_with_the_same_file_name_is_a_new_file(dev_run: Run) -> None:
    image = dev_run.of_type(IMAGE)[0]
    after = changed(lambda p: p["proxmox"].update(imageUrl=DATED_URL)).of_type(IMAGE)[0]
    assert image.inputs["fileName"] != after.inputs["fileName"]
    assert after.inputs["fileName"].endswith("-noble-server-cloudimg-amd64.qcow2")
    assert image.delete_before_replace, "a replacement that keeps the name must delete first"
    assert image.inputs["overwriteUnmanaged"] is True, "a leftover file with this stack's name is taken over"


def test_two_stacks_on_one_node_never_share_a_file(dev_run: Run) -> None:
    config, secret_keys = stack_config(dev_raw())
    other = run_program(config, secret_keys, stack="staging")
    for kind in (IMAGE, SNIPPET):
        ours = {str(r.inputs.get("fileName") or r.inputs["sourceRaw"]["fileName"]) for r in dev_run.of_type(kind)}
        theirs = {str(r.inputs.get("fileName") or r.inputs["sourceRaw"]["fileName"]) for r in other.of_type(kind)}
        assert not ours & theirs


def test_the_image_checksum_is_verified_when_set(dev_run: Run) -> None:
    assert "checksum" not in dev_run.of_type(IMAGE)[0].inputs
    digest = "A" * 64
    after = changed(lambda p: p["proxmox"].update(imageUrl=DATED_URL, imageChecksum=digest)).of_type(IMAGE)[0]
    assert after.inputs["checksum"] == digest.lower()
    assert after.inputs["checksumAlgorithm"] == "sha256"


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("imageChecksum", "abc123", "haproxy-lab:proxmox.imageChecksum: 'abc123' has a character or form"),
        ("bootDisk", "nvme0", "haproxy-lab:proxmox.bootDisk: 'nvme0' is not a boot disk interface"),
    ],
)
def test_bad_image_settings_are_refused(key: str, value: str, message: str) -> None:
    plan = dev_raw()
    plan["proxmox"][key] = value
    with pytest.raises(ConfigError) as caught:
        parse_lab_config(plan)
    assert message in str(caught.value)


# --- 9. template clones boot from their own disk -------------------------------------------------------


@pytest.mark.parametrize("boot_disk", ["scsi0", "sata0"])
def test_a_template_clone_resizes_its_own_boot_disk(boot_disk: str) -> None:
    plan = copy.deepcopy(dev_raw())
    plan["proxmox"].update(templateVmId=9000, bootDisk=boot_disk)
    run = evaluate(plan)
    for vm in run.of_type(VM):
        assert [disk["interface"] for disk in vm.inputs["disks"]] == [boot_disk], "one disk: the template's"
        assert vm.inputs["bootOrders"] == [boot_disk]
        assert vm.inputs["disks"][0]["size"] == 20


# --- 10. destroy finishes ------------------------------------------------------------------------------


def test_destroy_shuts_down_then_stops_within_one_deadline(dev_run: Run) -> None:
    """The provider gives shutdown, forced stop and delete together max(shutdown, stop) seconds."""
    for vm in dev_run.of_type(VM):
        assert vm.inputs["stopOnDestroy"] is False
        assert vm.inputs["timeoutShutdownVm"] < vm.inputs["timeoutStopVm"]
