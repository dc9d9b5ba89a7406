"""Our language host (tools/pulumi-engine/standins/cmd/pulumi-language-python) runs programs as the upstream
one does, on the cases the project's own stacks never hit."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from tests.engine_harness import PASSPHRASE, REPO, engine

pytestmark = pytest.mark.timeout(300)


def test_a_stack_without_any_config_runs(tmp_path: Path) -> None:
    """The SDK iterates PULUMI_CONFIG: a stack with no config must get `{}`, not `null` (a traceback)."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "Pulumi.yaml").write_text(
        "name: no-config\nruntime:\n  name: python\n  options:\n    toolchain: pip\n    virtualenv: .venv\n"
    )
    (project / "__main__.py").write_text('import pulumi\n\npulumi.export("answer", 42)\n')
    (project / ".venv").symlink_to((REPO / ".venv").resolve())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("PULUMI_")},
        "PATH": os.pathsep.join([*map(str, engine().path), os.environ.get("PATH", "")]),
        "PULUMI_HOME": str(tmp_path / "home"),
        "PULUMI_BACKEND_URL": f"file://{tmp_path}",
        "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
        "PULUMI_SKIP_UPDATE_CHECK": "true",
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
    }
    for args in (["stack", "init", "bare"], ["up", "--yes"]):
        proc = subprocess.run(
            ["pulumi", *args, "--non-interactive"], cwd=project, env=env, capture_output=True, text=True, check=False
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    out = subprocess.run(
        ["pulumi", "stack", "output", "answer", "--non-interactive"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.stdout.strip() == "42", out.stdout + out.stderr
