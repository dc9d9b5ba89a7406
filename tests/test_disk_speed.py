"""The perpetual `disks[0].speed` diff (pulumi-proxmoxve#664), fixed in the program and proven with the real
engine against the fake Proxmox node (docs/day2.md, "The disk's speed").

After an `up`, the bridged provider reads each VM's disk back with a `speed` block nothing set, so every
`pulumi preview --refresh` (and every CI preview of a deployed stack) planned an update of every VM. The VMs
ignore that one path; the disk's size stays managed (diskGb still grows it). The Proxmox resources are
applied with `--target` (the command plugin plans only here), so every preview targets them too.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from components.vm import DISK_SPEED
from e2e.pve_running import RunningPve
from tests.lab_harness import LabFactory, LabRun
from tests.plans import dev_raw
from tests.program_harness import evaluate
from tests.pulumi_harness import VM

pytestmark = pytest.mark.timeout(600)

VM_PY = Path("components") / "vm.py"
FIX = "ignore_changes=[DISK_SPEED],"


def with_ignored(run: LabRun, paths: str | None) -> None:
    """The workspace's program with the VMs ignoring `paths` (a Python list's text) instead of the fix;
    None: ignoring nothing (the program before the fix)."""
    vm_py = run.workspace.project / VM_PY
    text = vm_py.read_text()
    assert FIX in text, f"{VM_PY} no longer declares {FIX} as this test expects"
    vm_py.write_text(text.replace(FIX, "" if paths is None else f"ignore_changes={paths},"))


def refreshed_preview(run: LabRun, targets: list[str]) -> tuple[int, str]:
    """`pulumi preview --refresh --expect-no-changes` of the applied resources: exit code and output."""
    args = [arg for urn in targets for arg in ("--target", urn)]
    result = run.workspace.pulumi(
        "preview", "--refresh", "--expect-no-changes", "--diff", "--stack", run.workspace.stack, *args, check=False
    )
    return result.returncode, result.output


def test_every_vm_ignores_exactly_the_disk_speed() -> None:
    run = evaluate(dev_raw())
    assert DISK_SPEED == "disks[0].speed"
    assert {vm.name: vm.ignore_changes for vm in run.of_type(VM)} == {vm.name: [DISK_SPEED] for vm in run.of_type(VM)}


def test_a_refreshed_preview_after_up_plans_nothing_and_disk_gb_still_grows_the_disk(
    lab: LabFactory, pve: RunningPve
) -> None:
    run, targets = lab.run("speed-fixed", "dev", pve.token)
    try:
        run.up(targets)
        assert refreshed_preview(run, targets)[0] == 0, refreshed_preview(run, targets)[1][-3000:]
        run.workspace.set_config("haproxy-lab:vm", {"cores": 2, "memoryMb": 2048, "diskGb": 24})
        run.up(targets)
        disks = {vmid: pve.state().vms[vmid]["virtio0"] for vmid in run.vm_ids}
        assert all("size=24G" in disk for disk in disks.values()), disks
        code, output = refreshed_preview(run, targets)
        assert code == 0, output[-3000:]
    finally:
        run.destroy(check=False)


@pytest.mark.parametrize(
    "ignored",
    [pytest.param(None, id="nothing ignored"), pytest.param('["disks[*].speed"]', id="disks[*].speed")],
)
def test_without_the_literal_path_every_vm_shows_a_speed_diff(
    lab: LabFactory, pve: RunningPve, ignored: str | None
) -> None:
    """The fault: the program before the fix, or with the wildcard path a spike tried; the diff is back."""
    run, targets = lab.run(f"speed-{'none' if ignored is None else 'star'}", "dev", pve.token)
    try:
        with_ignored(run, ignored)
        run.up(targets)
        code, output = refreshed_preview(run, targets)
        assert code != 0
        assert "speed" in output, output[-3000:]
        assert output.count("proxmoxve:index/vmLegacy:VmLegacy") >= 3, output[-3000:]
    finally:
        run.destroy(check=False)
