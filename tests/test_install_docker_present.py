"""files/scripts/install-docker.sh where a Docker Engine with the compose v2 plugin is already installed (not
Docker's packages, e.g. a distribution's docker.io and compose v2, as in the end-to-end run's guests): it is used
as it is and Docker's apt repository is left alone; without compose v2, or with Docker's own packages, the usual
path runs. Fake system commands: tests/script_harness.py.
"""

from __future__ import annotations

from pathlib import Path

from tests.script_harness import DOCKER_PACKAGES, Fakes, SigningKeys, run_script, snapshot


def engine_present(fakes: Fakes, compose_v2: bool = True) -> None:
    """A Docker Engine installed from elsewhere (a dockerd on PATH), with or without the compose v2 plugin."""
    dockerd = Path(fakes.env["PATH"].split(":")[0]) / "dockerd"
    dockerd.write_text("#!/bin/sh\necho dockerd fake\n")
    dockerd.chmod(0o755)
    if not compose_v2:
        (fakes.state / "compose-v1").touch()


def test_install_docker_uses_an_engine_already_present(fakes: Fakes) -> None:
    engine_present(fakes)
    before = snapshot(fakes.root)

    result = run_script("install-docker.sh", env=fakes.env)

    assert result.returncode == 0, result.stderr
    assert "already installed (not Docker's packages)" in result.stdout
    assert snapshot(fakes.root) == before, "Docker's key and repository are left alone"
    assert fakes.apt_calls() == []
    assert not any(c.startswith("curl") for c in fakes.calls())
    for unit in ("containerd", "docker"):
        assert f"systemctl enable {unit}" in fakes.calls()
        assert f"systemctl start {unit}" in fakes.calls()

    fakes.reset_calls()
    again = run_script("install-docker.sh", env=fakes.env)
    assert again.returncode == 0, again.stderr
    assert snapshot(fakes.root) == before
    assert not any(c.startswith(("systemctl enable", "systemctl start", "curl", "apt-get")) for c in fakes.calls())


def test_install_docker_without_compose_v2_installs_dockers_packages(fakes: Fakes, signing_keys: SigningKeys) -> None:
    engine_present(fakes, compose_v2=False)

    result = run_script("install-docker.sh", env=fakes.env)

    assert result.returncode == 0, result.stderr
    assert (fakes.root / "etc/apt/keyrings/docker.asc").read_text() == signing_keys.trusted
    assert [c.split(" lock")[0] for c in fakes.apt_calls()] == ["apt-get update", "apt-get install"]
    assert set(DOCKER_PACKAGES) <= set((fakes.state / "apt-args").read_text().split())


def test_install_docker_keeps_its_own_packages_on_dockers_repository(fakes: Fakes, signing_keys: SigningKeys) -> None:
    """Docker's packages, once installed by this script, keep their key and repository maintained."""
    assert run_script("install-docker.sh", env=fakes.env).returncode == 0
    engine_present(fakes)
    (fakes.root / "etc/apt/keyrings/docker.asc").unlink()
    fakes.reset_calls()

    result = run_script("install-docker.sh", env=fakes.env)

    assert result.returncode == 0, result.stderr
    assert (fakes.root / "etc/apt/keyrings/docker.asc").read_text() == signing_keys.trusted
    assert any(c.startswith("curl") for c in fakes.calls())
