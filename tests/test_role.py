"""The README's Proxmox role, proven both ways with the real engine against the fake Proxmox node.

The fake (e2e/pve.py: fakepve with Proxmox VE's own permission checks, docs/e2e.md) gives each stack
a token holding exactly a set of privileges. With exactly the README's role (PVE 9 line), the Proxmox
resources of the dev and ha stacks are created, changed on day 2 and destroyed, and the fake holds
nothing of them afterwards; a stack built before the CD-ROM fix is brought up to date in place. Without
any one privilege of the role, that run fails on a permission check. Remote commands are not applied
(`pulumi up --target` the Proxmox resources: the command plugin is plan-only). All stacks share one
fake, several run at once.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from fakepve import shapes

from e2e.pve import LabPve
from e2e.pve_running import RunningPve
from e2e.role import readme_not_needed, readme_role, readme_roles
from tests.lab_harness import (
    DAY2_CORES,
    DAY2_DISK_GB,
    DAY2_DNS,
    LabFactory,
    Outcome,
    as_before_the_cdrom_fix,
    fresh_run,
    migration_run,
)

pytestmark = pytest.mark.timeout(900)

ROLE = readme_role(9)
PRIVILEGES = frozenset(shapes.PRIVILEGES)  # PVE 9's, as fakepve lists them
# A VM's CD drive: empty (what the program declares) or the node's own drive (the provider's default).
EMPTY_CD, HOST_CD = "none,media=cdrom", "cdrom,media=cdrom"
NOTHING: dict[str, list[object]] = {"vms": [], "firewalls": [], "volumes": [], "snippet_files": []}
# Runs at once: each is a chain of pulumi processes; the fake answers all of them from one thread.
WORKERS = 3


@pytest.fixture(scope="module")
def role_token(pve: RunningPve) -> str:
    """A token holding exactly the README's role (PVE 9 line)."""
    return pve.add_token(ROLE)


@pytest.fixture(scope="module")
def setup_token(pve: RunningPve) -> str:
    """What a stack built before the fix needed (the role and Sys.Console); also cleans failed runs up."""
    return pve.add_token(ROLE | {"Sys.Console"})


def in_parallel(jobs: dict[str, Callable[[], Outcome]]) -> dict[str, Outcome]:
    with ThreadPoolExecutor(WORKERS) as pool:
        futures = {name: pool.submit(job) for name, job in jobs.items()}
        return {name: future.result() for name, future in futures.items()}


@pytest.fixture(scope="module")
def full(lab: LabFactory, pve: RunningPve, role_token: str, setup_token: str) -> dict[str, Outcome]:
    """With a token holding exactly the README's role: the dev stack (up, day 2, destroy), the ha stack
    (up, destroy), a dev stack built before the fix (upgraded, destroyed), and the program before the
    fix (its up)."""
    token = role_token

    def before_the_fix() -> Outcome:
        run, targets = lab.run("before-fix", "dev", token)
        as_before_the_cdrom_fix(run.workspace)
        return fresh_run(run, targets, pve, setup_token, day2=False)

    return in_parallel(
        {
            "dev": lambda: fresh_run(*lab.run("full-dev", "dev", token), pve, setup_token, day2=True),
            "ha": lambda: fresh_run(*lab.run("full-ha", "ha", token), pve, setup_token, day2=False),
            "upgrade": lambda: migration_run(*lab.run("full-upgrade", "dev", token), pve, token, setup_token),
            "before the fix": before_the_fix,
        }
    )


@pytest.fixture(scope="module")
def without_each(lab: LabFactory, pve: RunningPve, setup_token: str) -> dict[str, Outcome]:
    """For each privilege of the role, the same run with the role but that privilege: the dev stack up,
    day 2, destroy, then (if all that passed) a stack built before the fix upgraded and destroyed."""

    def run_without(privilege: str) -> Outcome:
        token = pve.add_token(ROLE - {privilege})
        stack = "no-" + privilege.lower().replace(".", "-")
        outcome = fresh_run(*lab.run(stack, "dev", token), pve, setup_token, day2=True)
        if outcome.failed is None:
            outcome = migration_run(*lab.run(f"{stack}-upgrade", "dev", token), pve, token, setup_token)
        return outcome

    return in_parallel({privilege: functools.partial(run_without, privilege) for privilege in sorted(ROLE)})


def passed(outcome: Outcome) -> None:
    errors = "\n".join(outcome.errors()[:20])
    assert outcome.failed is None, f"{outcome.stack}: {outcome.failed} failed:\n{errors}"


# ------------------------------------------------------------------------------------ the README


def test_the_readme_role_names_pve_privileges_and_keeps_out_the_ones_it_calls_not_needed() -> None:
    roles = readme_roles()
    assert roles[8] == roles[9], "the README gives one role for PVE 8.4 and 9"
    assert ROLE <= PRIVILEGES, f"not PVE 9 privileges: {sorted(ROLE - PRIVILEGES)}"
    not_needed = readme_not_needed()
    assert {"Sys.Console", "Datastore.Audit", "VM.GuestAgent.Audit"} <= not_needed
    assert not ROLE & not_needed, f"in the role and called not needed: {sorted(ROLE & not_needed)}"


# ------------------------------------------------------------------------- with exactly the role


def test_the_dev_stack_is_created_changed_and_destroyed_with_exactly_the_role(full: dict[str, Outcome]) -> None:
    dev = full["dev"]
    passed(dev)
    created = dev.vms("up")
    assert sorted(created) == dev.vm_ids
    held = dev.held("up")
    assert len(held["snippet_files"]) == 3, held
    assert sum(volume.startswith("local:snippets/") for volume in held["volumes"]) == 3, "listed as on disk"
    assert sum(volume.startswith("local:import/") for volume in held["volumes"]) == 1, "the image"
    assert held["firewalls"] == dev.vm_ids
    for vmid, config in created.items():
        assert config["ide3"] == EMPTY_CD, f"VM {vmid}'s CD drive: {config['ide3']}"
        assert config["ide2"] == f"local-lvm:vm-{vmid}-cloudinit,media=cdrom"
        assert "import-from" not in config["virtio0"]
    for vmid, config in dev.vms("day 2").items():
        assert config["nameserver"] == " ".join(DAY2_DNS), vmid
        assert config["cores"] == str(DAY2_CORES), vmid
        assert f"size={DAY2_DISK_GB}G" in config["virtio0"], vmid
    assert dev.left == NOTHING, "the fake still holds part of the stack after pulumi destroy"


def test_the_ha_stack_is_created_and_destroyed_with_exactly_the_role(full: dict[str, Outcome]) -> None:
    ha = full["ha"]
    passed(ha)
    assert len(ha.vm_ids) == 4
    assert sorted(ha.vms("up")) == ha.vm_ids
    assert all(config["ide3"] == EMPTY_CD for config in ha.vms("up").values())
    assert len(ha.held("up")["snippet_files"]) == 4
    assert ha.left == NOTHING, "the fake still holds part of the stack after pulumi destroy"


def test_a_stack_built_before_the_fix_keeps_its_vms_and_loses_the_host_cd_drive(full: dict[str, Outcome]) -> None:
    """An existing stack's next `pulumi up` updates each VM in place (same VM, same MAC address) to an
    empty CD drive, with exactly the role: no Sys.Console needed any more."""
    upgrade = full["upgrade"]
    passed(upgrade)
    before, after = upgrade.vms("up before the fix"), upgrade.vms("up after the fix")
    assert sorted(before) == sorted(after) == upgrade.vm_ids
    for vmid in upgrade.vm_ids:
        assert before[vmid]["ide3"] == HOST_CD
        assert after[vmid]["ide3"] == EMPTY_CD
        assert after[vmid]["net0"] == before[vmid]["net0"], "the VM was re-created (a new MAC address)"
        assert after[vmid]["smbios1"] == before[vmid]["smbios1"], "the VM was re-created (a new uuid)"
    assert upgrade.left == NOTHING


def test_the_program_before_the_fix_needs_sys_console(full: dict[str, Outcome]) -> None:
    """The check the fix is for, alive in the fake: without the program's CD drive, each VM asks for the
    node's own, which Proxmox grants only with Sys.Console on /."""
    old = full["before the fix"]
    assert old.failed == "up"
    assert "Permission check failed (/, Sys.Console)" in old.output
    assert old.left["vms"] == [], "the failed creates left VMs behind"


def _holds(user: str, privilege: str, fake: LabPve) -> bool:
    return fake.allowed(user, "/", privilege)


def test_the_privileges_the_readme_calls_not_needed_are_not_needed(
    full: dict[str, Outcome], pve: RunningPve, role_token: str
) -> None:
    """The runs above passed with a token that held the role and nothing else: none of these."""
    for name in ("dev", "ha", "upgrade"):
        passed(full[name])
    token_id = role_token.split("=", 1)[0]
    held = {privilege for privilege in PRIVILEGES if pve.call(functools.partial(_holds, token_id, privilege))}
    assert held == ROLE
    assert not held & readme_not_needed()


# ------------------------------------------------------------------------ without one privilege


@pytest.mark.parametrize("privilege", sorted(ROLE))
def test_every_privilege_of_the_role_is_needed(without_each: dict[str, Outcome], privilege: str) -> None:
    outcome = without_each[privilege]
    assert outcome.failed is not None, f"the whole run passed without {privilege}"
    assert "Permission check failed" in outcome.output, "\n".join(outcome.errors()[:20])
