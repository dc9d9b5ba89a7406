"""An install step stopped by its budget mid-install is finished by the next run, before apt runs again.

The real dpkg works on a private root (DPKG_ROOT, with maintainer scripts run without chroot:
DPKG_FORCE=script-chrootless; its log goes to the test's directory) holding one package whose
configuration waits for a file, so the first run of install-keepalived.sh hangs inside dpkg and its
step's real bound stops it there: the package is left half-configured, as a real `apt-get install` cut
short leaves it. apt-get is a stand-in that only records the order of calls and the package's state
when it is called (a real one would need a mirror); dpkg, dpkg-query and fuser are the real ones.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from components.remote import RootScript
from render.shipping import script_text
from tests.vm_shell import ROOMY, cut_step, end_session, run_step, started

pytestmark = pytest.mark.timeout(120)

PACKAGE = "haproxy-lab-test-hang"

# The first `apt-get install` installs the package whose configuration waits (as apt runs dpkg); every
# call records the package's state as dpkg sees it then.
APT_GET = r"""#!/bin/sh
verb=
for a in "$@"; do case $a in -*|*=*) ;; *) [ -n "$verb" ] || verb=$a ;; esac; done
state=$(dpkg-query -W -f '${Status}' "$PACKAGE" 2>/dev/null) || state=absent
echo "apt-get $verb: $state" >>"$STATE/calls"
if [ "$verb" = install ] && [ ! -e "$STATE/installed-once" ]; then
    : >"$STATE/installed-once"
    exec dpkg -i "$DEB"
fi
"""
# The real dpkg, its log kept out of the machine's /var/log/dpkg.log.
DPKG = '#!/bin/sh\nexec /usr/bin/dpkg --log="$STATE/dpkg.log" "$@"\n'


@dataclass
class Machine:
    root: Path
    state: Path
    release: Path
    env: dict[str, str]

    def status(self) -> str:
        query = ["dpkg-query", "-W", "-f", "${Status}", PACKAGE]
        return subprocess.run(query, env=self.env, capture_output=True, text=True, check=True).stdout

    def audit(self) -> str:
        audit = ["/usr/bin/dpkg", "--audit"]
        return subprocess.run(audit, env=self.env, capture_output=True, text=True, check=False).stdout

    def calls(self) -> list[str]:
        return (self.state / "calls").read_text().splitlines()


def build_package(directory: Path, name: str, postinst: str) -> Path:
    """A package with no files and this postinst; returns the .deb."""
    control = directory / name / "DEBIAN"
    control.mkdir(parents=True)
    (control / "control").write_text(
        f"Package: {name}\nVersion: 1.0\nArchitecture: all\nMaintainer: tests <tests@example.invalid>\n"
        "Description: a package whose configuration waits for a file\n"
    )
    (control / "postinst").write_text(f"#!/bin/sh\n{postinst}")
    (control / "postinst").chmod(0o755)
    deb = directory / f"{name}.deb"
    build = ["dpkg-deb", "--build", "--root-owner-group", str(control.parent), str(deb)]
    subprocess.run(build, check=True, capture_output=True)
    return deb


@pytest.fixture
def machine(tmp_path: Path) -> Machine:
    root, state, bin_dir = tmp_path / "root", tmp_path / "state", tmp_path / "bin"
    for directory in (root / "var/lib/dpkg/updates", root / "var/lib/dpkg/info", state, bin_dir):
        directory.mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    release = tmp_path / "release"
    # Its configuration waits for `release`, then records whether another dpkg run had finished (see below).
    deb = build_package(
        tmp_path / "packages",
        PACKAGE,
        f"while [ ! -e {release} ]; do sleep 0.1; done\n"
        f"if [ -e {state}/other-finished ]; then echo yes; else echo no; fi >>{state}/other-had-finished\n",
    )
    for name, text in (("apt-get", APT_GET), ("dpkg", DPKG)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "ROOT": str(root),  # where lib/apt.sh looks for the lock files and dpkg's journal
        "DPKG_ROOT": str(root),
        "DPKG_FORCE": "script-chrootless",
        "STATE": str(state),
        "DEB": str(deb),
        "PACKAGE": PACKAGE,
        "APT_RETRY_DELAY": "0",
        "APT_LOCK_TIMEOUT": "30",
        "LC_ALL": "C",
    }
    return Machine(root=root, state=state, release=release, env=env)


def cut_mid_configure(machine: Machine, where: Path) -> None:
    """The first run: its apt-get install hangs in the package's configuration, and the bound stops it."""
    cut_step(where, "install-keepalived.sh", env=machine.env)
    assert machine.status() == "install ok half-configured"
    assert "only half configured" in machine.audit(), "dpkg itself knows the run was interrupted"


def test_an_install_cut_mid_configure_is_finished_before_apt_runs_again(machine: Machine, tmp_path: Path) -> None:
    cut_mid_configure(machine, tmp_path)
    machine.release.touch()  # what hung (a stalled download, a slow postinst) works this time

    result = run_step(tmp_path, "install-keepalived.sh", env=machine.env)

    assert result.returncode == 0, result.stderr
    assert "finishing an interrupted dpkg run first: dpkg --configure -a" in result.stderr
    assert machine.calls() == [
        "apt-get update: absent",
        "apt-get install: absent",
        "apt-get update: install ok installed",  # the next run: dpkg finished first, then apt
        "apt-get install: install ok installed",
    ]
    assert machine.audit() == ""


def test_a_clean_dpkg_is_left_alone(machine: Machine, tmp_path: Path) -> None:
    (machine.state / "installed-once").touch()  # apt-get installs nothing: dpkg stays clean
    result = run_step(tmp_path, "install-keepalived.sh", env=machine.env)
    assert result.returncode == 0, result.stderr
    assert "dpkg --configure -a" not in result.stderr
    assert machine.calls() == ["apt-get update: absent", "apt-get install: absent"]


def test_the_recovery_waits_for_another_dpkg_run_instead_of_failing(machine: Machine, tmp_path: Path) -> None:
    """Another dpkg run (unattended-upgrades, say) holds dpkg's lock: the recovery waits for it, then goes on."""
    cut_mid_configure(machine, tmp_path)
    machine.release.touch()
    other_release = tmp_path / "other-release"
    other_deb = build_package(
        tmp_path / "packages",
        "haproxy-lab-test-other",
        f"while [ ! -e {other_release} ]; do sleep 0.1; done\n: >{machine.state}/other-finished\n",
    )
    dpkg = ["dpkg", "-i", str(other_deb)]
    with subprocess.Popen(dpkg, env=machine.env, stdout=subprocess.PIPE, text=True, start_new_session=True) as other:
        try:
            assert other.stdout is not None
            for line in other.stdout:  # dpkg holds its lock from before this line to its end
                if line.startswith("Setting up haproxy-lab-test-other"):
                    break
            line = RootScript(script_text("install-keepalived.sh"), "install-keepalived.sh").command_line(ROOMY)
            with started(line, tmp_path, env={**machine.env, "APT_RETRIES": "1"}) as step:
                assert step.stderr is not None
                waiting = step.stderr.readline()
                other_release.touch()  # only once the step says it waits
                _, err = step.communicate(timeout=60)
        finally:
            end_session(other.pid)  # its postinst too, whatever happened

    assert waiting == "waiting for another apt/dpkg run to finish...\n"
    assert step.returncode == 0, err
    assert (machine.state / "other-had-finished").read_text() == "yes\n"
    assert machine.status() == "install ok installed"
