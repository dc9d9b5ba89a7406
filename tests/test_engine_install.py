"""The engine installed the ordinary way (the users' CI: the pulumi CLI, which bundles the Python language host,
and `pulumi plugin install` for the providers) is found and used as it is, and nothing is built.

Here no such install can be downloaded: the layout is made of the built binaries (tools/build-pulumi.sh), placed
where the ordinary install puts them: the CLI and its language host in one directory on PATH, each provider in
PULUMI_HOME/plugins/resource-NAME-vVERSION/. What differs on GitHub (upstream's plugins): docs/engine.md.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from e2e.pve_running import running_pve
from tests.engine_harness import BUNDLED_WITH_CLI, PLUGINS, REPO, Engine, Workspace, engine, find_engine, versions

pytestmark = pytest.mark.timeout(600)


@pytest.fixture
def installed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The ordinary layout in tmp_path (PATH, PULUMI_HOME set to it; build-pulumi.sh's cache pointed elsewhere)."""
    built = engine().pieces
    cli = tmp_path / "cli"
    cli.mkdir()
    for name in ("pulumi", *BUNDLED_WITH_CLI, f"{PLUGINS[0]}-exec"):
        (cli / name).symlink_to(built["pulumi"].parent / name if name.endswith("-exec") else built[name])
    home = tmp_path / "pulumi-home"
    pins = versions()
    for plugin, pin in (("proxmoxve", "PROXMOXVE_PY_VERSION"), ("command", "COMMAND_PY_VERSION")):
        directory = home / "plugins" / f"resource-{plugin}-v{pins[pin]}"
        directory.mkdir(parents=True)
        (directory / f"pulumi-resource-{plugin}").symlink_to(built[f"pulumi-resource-{plugin}"])
    monkeypatch.setenv("PATH", f"{cli}:/usr/bin:/bin")
    monkeypatch.setenv("PULUMI_HOME", str(home))
    monkeypatch.setenv("PULUMI_ENGINE_DIR", str(tmp_path / "nothing-built"))
    return tmp_path


def build_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(REPO / "tools" / "build-pulumi.sh"), *args], capture_output=True, text=True, check=False, timeout=60
    )


def test_the_installed_engine_is_found_piece_by_piece(installed: Path) -> None:
    found = find_engine()
    assert found is not None
    assert found.how == "installed"
    home = installed / "pulumi-home" / "plugins"
    assert found.path == (
        installed / "cli",
        home / f"resource-proxmoxve-v{versions()['PROXMOXVE_PY_VERSION']}",
        home / f"resource-command-v{versions()['COMMAND_PY_VERSION']}",
    )


def test_a_missing_plugin_is_no_engine(installed: Path) -> None:
    plugin = installed / "pulumi-home" / "plugins" / f"resource-command-v{versions()['COMMAND_PY_VERSION']}"
    (plugin / "pulumi-resource-command").unlink()
    assert find_engine() is None
    assert build_script("--installed").returncode == 1


def test_build_pulumi_builds_nothing_when_the_engine_is_installed(installed: Path) -> None:
    result = build_script()
    assert result.returncode == 0, result.stderr
    assert "installed the ordinary way" in result.stdout
    assert not (installed / "nothing-built").exists()


def test_a_preview_runs_on_the_installed_engine(installed: Path) -> None:
    found = find_engine()
    assert isinstance(found, Engine)
    with running_pve(installed / "fake-pve") as fake:
        workspace = Workspace(installed / "ws", found)
        workspace.init_stack(fake.endpoint)
        result = workspace.preview()
    creates = Counter(step["op"] for step in result.json()["steps"])
    assert set(creates) == {"create"}
    # The engine says where each ambient plugin came from: the plugin cache, not tools/build-pulumi.sh's.
    for plugin in ("proxmoxve", "command"):
        assert f"pulumi-home/plugins/resource-{plugin}-v" in result.output, result.output[-3000:]
