"""files/scripts/install-docker.sh, install-haproxy.sh and install-keepalived.sh (and lib/apt.sh they include).

Run as on a VM with fake system commands: tests/script_harness.py.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.script_harness import (
    DOCKER_LIST,
    DOCKER_PACKAGES,
    Fakes,
    SigningKeys,
    run_script,
    snapshot,
)

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
    assert (fakes.state / "installed/iputils-ping").exists(), "load-balancer-state.sh pings the virtual IP"
    fakes.reset_calls()
    result = run_script("install-keepalived.sh", env=fakes.env)
    assert result.returncode == 0, result.stderr
    assert fakes.apt_calls() == []
