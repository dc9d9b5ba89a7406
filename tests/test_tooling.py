"""The project's own plumbing: dependency lists agree, the users' workflow is valid, the stack file is clean."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

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


def test_workflow_installs_the_pinned_engine_and_builds_nothing() -> None:
    """Users' CI: the CLI at versions.env's pin, upstream's plugins, no Go build and no engine cache."""
    workflow = yaml.safe_load((REPO / ".github/workflows/pull-request.yml").read_text(encoding="utf-8"))
    steps = workflow["jobs"]["test"]["steps"]
    text = yaml.safe_dump(steps)
    pins = next(step for step in steps if step.get("id") == "pins")
    assert "tools/pulumi-engine/versions.env" in pins["run"]
    cli = next(step for step in steps if str(step.get("uses", "")).startswith("pulumi/actions@"))
    assert cli["with"]["pulumi-version"] == "${{ steps.pins.outputs.PULUMI_VERSION }}"
    assert "command" not in cli["with"]  # install only
    assert 'pulumi plugin install resource proxmoxve "$PROXMOXVE"' in text
    assert 'pulumi plugin install resource command "$COMMAND"' in text
    assert "build-pulumi" not in text
    assert "pulumi-*" not in text  # no cache of built engine binaries
    assert "go " not in text


def test_stack_file_holds_no_secret() -> None:
    config = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text(encoding="utf-8"))["config"]
    for key in ("haproxy-lab:sshPrivateKey", "haproxy-lab:statsPassword", "proxmoxve:apiToken"):
        assert key not in config, f"{key} belongs in `pulumi config set --secret`, not in the stack file"
    assert "PRIVATE KEY" not in (REPO / "Pulumi.dev.yaml").read_text(encoding="utf-8")


def _group(pyproject: dict[str, Any], name: str) -> list[str]:
    """A dependency group's requirement lines, included groups expanded."""
    lines: list[str] = []
    for item in pyproject["dependency-groups"][name]:
        lines.extend(_group(pyproject, item["include-group"]) if isinstance(item, dict) else [item])
    return lines


def test_the_rehearsal_group_holds_what_the_rehearsal_imports() -> None:
    """`tools/setup.sh rehearsal` installs only the `rehearsal` group: every third-party module the rehearsal and
    the web app import must be in it, at the program's own ranges."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    group = _group(pyproject, "rehearsal")
    names = {re.split(r"[<>=!~ ]", line, maxsplit=1)[0].lower() for line in group}
    for line in pyproject["project"]["dependencies"]:
        if re.split(r"[<>=!~ ]", line, maxsplit=1)[0].lower() in names:
            assert line in group, f"{line}: the rehearsal group must use the program's range"
    probe = (
        "import sys, rehearsal.__main__, rehearsal.ha.drills, rehearsal.watchdog;"
        "sys.path.insert(0, 'files/webapp'); import app, serve, granian;"
        "print(' '.join(sorted({m.split('.')[0] for m in sys.modules})))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True, timeout=60
    ).stdout.split()
    third_party = {m for m in loaded if m not in sys.stdlib_module_names and not m.startswith("_")}
    ours = {"rehearsal", "plan", "render", "app", "serve", "access_log"}
    distributions = {"yaml": "pyyaml", "markupsafe": "markupsafe", "werkzeug": "werkzeug"}
    # Flask's own dependencies come with it; only what is not pulled by a group member is a problem.
    pulled = {"markupsafe", "werkzeug", "itsdangerous", "click", "blinker", "cython_runtime"}  # + Cython's own
    missing = {distributions.get(m, m) for m in third_party - ours} - names - pulled
    assert not missing, f"the rehearsal imports {sorted(missing)}: add them to the rehearsal group"


def test_setup_refuses_an_unknown_purpose() -> None:
    result = subprocess.run(
        ["sh", str(REPO / "tools" / "setup.sh"), "everything"], capture_output=True, text=True, check=False, timeout=30
    )
    assert result.returncode == 2
    assert "usage:" in result.stderr


def test_no_symlink_is_tracked() -> None:
    # Twice a worktree's `.venv -> /work/main/.venv` link was committed; merged, it replaced main's venv
    # with a link to itself. Fault: `git add -f .venv` of such a link -> this lists it.
    listed = subprocess.run(["git", "ls-files", "-s"], cwd=REPO, check=True, capture_output=True, text=True).stdout
    links = [line.split("\t", 1)[1] for line in listed.splitlines() if line.startswith("120000 ")]
    assert links == []
