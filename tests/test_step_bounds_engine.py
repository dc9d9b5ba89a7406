"""Under `pulumi up` (issue 17): a remote step whose script sleeps forever fails within its budget.

The real engine runs a tiny project (tests/bound_project) whose steps the program's own remote_step
helper declares, with budgets of a few seconds; the command plugin is our stand-in for pulumi-command
v1.2.1, which, as upstream, lets a running command outlive its step's custom timeout
(tests/test_command_plugin.py), so only the bound on the command line can end the step. The "VM" is a
real OpenSSH server on loopback (tests/command_harness.py) whose sessions find the root-only sudo
stand-in (tests/vm_shell.py) first on PATH.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.command_harness import Sshd, keygen, sshd
from tests.engine_harness import REPO, STACK, Engine, Result, Workspace
from tests.vm_shell import end_session, sudo_dir

pytestmark = pytest.mark.timeout(240)

SOURCE = Path(__file__).resolve().parent / "bound_project"
PROJECT = "bound-test"
# Well past the budgets below: a step without its VM-side bound fails the test instead of hanging it.
UP_LIMIT_S = 60


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    """A stock sshd (it refuses every variable a client sets) whose sessions run `sudo -n` as root does."""
    key = keygen(tmp_path_factory.mktemp("client") / "key")
    sudo = sudo_dir(tmp_path_factory.mktemp("sudo"))
    with sshd(tmp_path_factory.mktemp("sshd") / "server", key, path=f"{sudo}:/usr/sbin:/usr/bin:/sbin:/bin") as up:
        yield up


class BoundProject:
    """tests/bound_project in a Workspace with execution enabled, connected to the server as root."""

    def __init__(self, root: Path, pulumi_engine: Engine, server: Sshd) -> None:
        self.workspace = Workspace(root, pulumi_engine, SOURCE, execute_commands=True)
        self.workspace.env["PYTHONPATH"] = str(REPO)  # the program's components, plan and render
        self.workspace.pulumi("stack", "init", STACK)
        self.set("privateKey", server.private_key)  # a throwaway key; the program reads it as a secret
        self.set("connection", {"host": "127.0.0.1", "port": server.port, "user": "root"})

    def set(self, key: str, value: Any) -> None:
        stack_file = self.workspace.stack_file
        doc = yaml.safe_load(stack_file.read_text())
        doc.setdefault("config", {})[f"{PROJECT}:{key}"] = value
        stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def steps(self, steps: dict[str, dict[str, Any]]) -> None:
        self.set("steps", steps)

    def up(self) -> Result:
        """`pulumi up` in a session of its own: if it hangs, it and its plugins are killed, not left behind."""
        argv = ["pulumi", "up", "--yes", "--skip-preview", "--stack", STACK, "--non-interactive"]
        with subprocess.Popen(
            argv,
            cwd=self.workspace.project,
            env=self.workspace.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as process:
            try:
                out, err = process.communicate(timeout=UP_LIMIT_S)
            finally:
                end_session(process.pid)
        return Result(process.returncode, out, err)


@pytest.fixture
def project(tmp_path: Path, pulumi_engine: Engine, server: Sshd) -> BoundProject:
    return BoundProject(tmp_path / "project", pulumi_engine, server)


def test_a_script_that_sleeps_forever_fails_its_step_within_its_budget(project: BoundProject) -> None:
    project.steps(
        {
            "sleepy": {
                "script": 'read -r line; echo "got $line"; exec sleep infinity',
                "stdin": "hello\n",
                "budgetSeconds": 6,
                "graceSeconds": 1,
            }
        }
    )
    result = project.up()
    assert result.returncode != 0, result.output
    assert "haproxy-lab: sleepy.sh ran past its 6 s budget on the VM and was stopped" in result.output
    assert "got hello" in result.output, "stdin reached the script through the bound"


def test_an_update_against_a_stock_sshd_gives_no_warning(project: BoundProject) -> None:
    """The previous run's output would go by SSH Setenv, which a stock sshd refuses (a warning): the
    program's steps do not send it."""

    def declare(budget: int) -> None:
        project.steps({"quick": {"script": "echo ok", "budgetSeconds": budget, "graceSeconds": 1}})

    declare(60)
    assert project.up().returncode == 0
    declare(61)  # a new command line: an update, which runs the step again
    result = project.up()
    assert result.returncode == 0, result.output
    assert "1 updated" in result.output
    assert "Unable to set" not in result.output
