"""The project's own plumbing: dependency lists agree, the users' workflow is valid, the stack file is clean."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent


def test_requirements_txt_matches_pyproject() -> None:
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    requirements = [
        line.strip()
        for line in (REPO / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert requirements == pyproject["project"]["dependencies"]


def test_github_workflow_passes_actionlint() -> None:
    actionlint = shutil.which("actionlint") or str(REPO / ".venv/bin/actionlint")
    if not Path(actionlint).exists():
        pytest.fail("actionlint is missing: run tools/setup.sh")
    workflows = sorted(str(p) for p in (REPO / ".github/workflows").glob("*.yml"))
    assert workflows
    result = subprocess.run([actionlint, *workflows], capture_output=True, text=True, check=False, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_workflow_runs_tests_then_pulumi_preview() -> None:
    workflow = yaml.safe_load((REPO / ".github/workflows/pull-request.yml").read_text(encoding="utf-8"))
    assert "pull_request" in workflow[True]  # YAML 1.1 reads the `on` key as True
    steps = workflow["jobs"]["preview"]["steps"]
    pulumi = next(step for step in steps if str(step.get("uses", "")).startswith("pulumi/actions@"))
    assert pulumi["with"]["command"] == "preview"
    assert "secrets.PULUMI_STACK" in pulumi["with"]["stack-name"]
    assert "secrets.PULUMI_ACCESS_TOKEN" in workflow["jobs"]["preview"]["env"]["PULUMI_ACCESS_TOKEN"]
    assert workflow["jobs"]["preview"]["needs"] == "test"


def test_stack_file_holds_no_secret() -> None:
    config = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text(encoding="utf-8"))["config"]
    for key in ("haproxy-lab:sshPrivateKey", "haproxy-lab:statsPassword", "proxmoxve:apiToken"):
        assert key not in config, f"{key} belongs in `pulumi config set --secret`, not in the stack file"
    assert "PRIVATE KEY" not in (REPO / "Pulumi.dev.yaml").read_text(encoding="utf-8")
