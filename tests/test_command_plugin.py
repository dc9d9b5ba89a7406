"""The command plugin (haproxy-lab's stand-in for pulumi-command v1.2.1, docs/engine.md) run by the real
engine on a tiny project of remote.Command resources (tests/command_project) against a real OpenSSH
server on loopback (tests/command_harness.py): each of upstream's semantics that the program relies on,
seen on the host (files the commands write) and in the engine's state, outputs and events.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.command_harness import NO_NETWORK, CommandProject, Sshd, closed_port, keygen, sshd
from tests.engine_harness import EXECUTE_ENV, Engine

pytestmark = pytest.mark.timeout(180)

REFUSAL = "haproxy-lab's command stand-in refuses to connect to"


@pytest.fixture(scope="module")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The key every test server authorizes for root (the stacks' privateKey)."""
    return keygen(tmp_path_factory.mktemp("client") / "key")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, client_key: Path) -> Iterator[Sshd]:
    """An sshd that accepts the variables the tests set (LAB_*) and the previous run's outputs."""
    workdir = tmp_path_factory.mktemp("sshd") / "server"
    with sshd(workdir, client_key, accept_env="LAB_* PULUMI_COMMAND_*") as running:
        yield running


@pytest.fixture
def project(tmp_path: Path, pulumi_engine: Engine, server: Sshd) -> CommandProject:
    return CommandProject(tmp_path / "project", pulumi_engine, server.private_key, server.port)


@pytest.fixture
def remote(tmp_path: Path) -> Path:
    """Where the commands write what they did (the sshd runs on this machine)."""
    path = tmp_path / "remote"
    path.mkdir()
    return path


def append(path: Path, text: str) -> str:
    return f"echo {shlex.quote(text)} >> {shlex.quote(str(path))}"


def lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def dials(project: CommandProject, name: str) -> list[str]:
    return [msg for _, msg in project.logged(name, ephemeral=True) if msg.startswith("Dial ")]


def test_create_runs_the_command_and_keeps_its_output_with_one_newline_trimmed(
    project: CommandProject, remote: Path
) -> None:
    ran = remote / "ran"
    project.commands({"a": {"create": f"printf 'out\\n\\n'; printf 'err\\n' >&2; {append(ran, 'create')}"}})
    project.up()
    assert lines(ran) == ["create"]
    outputs = project.outputs()["a"]
    assert (outputs["stdout"], outputs["stderr"]) == ("out\n", "err")
    # The id: the resource's name and 8 random hex digits (resource.NewUniqueHex, as upstream).
    assert outputs["id"].startswith("a")
    assert len(outputs["id"]) == len("a") + 8


def test_preview_runs_nothing(project: CommandProject, remote: Path) -> None:
    ran = remote / "ran"
    project.commands({"a": {"create": append(ran, "create")}})
    result = project.run("preview", "--json")
    assert [step["op"] for step in result.json()["steps"] if step["urn"].endswith("::a")] == ["create"]
    assert not ran.exists()
    assert dials(project, "a") == []


def test_an_unset_create_runs_nothing_and_dials_nothing(project: CommandProject) -> None:
    with closed_port() as port:
        project.commands({"a": {"connection": {"port": port}, "delete": "true"}})
        project.up()
    assert (project.outputs()["a"]["stdout"], project.outputs()["a"]["stderr"]) == ("", "")
    assert dials(project, "a") == []


def test_update_runs_update_if_set_else_create(project: CommandProject, remote: Path) -> None:
    with_update, without = remote / "with-update", remote / "without"

    def declare(revision: str) -> None:
        env = {"environment": {"LAB_REVISION": revision}}
        project.commands(
            {
                "u1": {"create": append(with_update, "create"), "update": append(with_update, "update"), **env},
                "u2": {"create": append(without, "create"), **env},
            }
        )

    declare("1")
    project.up()
    ids = {name: value["id"] for name, value in project.outputs().items()}
    declare("2")
    project.up()
    assert lines(with_update) == ["create", "update"]
    assert lines(without) == ["create", "create"]
    assert {name: value["id"] for name, value in project.outputs().items()} == ids  # updated in place


def test_triggers_replace_and_run_create_again_under_a_new_id(project: CommandProject, remote: Path) -> None:
    ran = remote / "ran"
    project.commands({"t": {"create": append(ran, "create"), "update": append(ran, "update"), "triggers": ["1"]}})
    project.up()
    first = project.outputs()["t"]["id"]
    project.commands({"t": {"create": append(ran, "create"), "update": append(ran, "update"), "triggers": ["2"]}})
    project.up()
    assert project.ops("t") == ["create-replacement", "replace", "delete-replaced"]
    assert lines(ran) == ["create", "create"]
    assert project.outputs()["t"]["id"] != first


def test_delete_runs_only_delete_and_nothing_when_unset(
    project: CommandProject, remote: Path, tmp_path: Path, client_key: Path
) -> None:
    with_delete, without = remote / "with-delete", remote / "without"
    # The command without `delete` talks to a server of its own, gone before the destroy: a dial fails.
    with sshd(tmp_path / "gone", client_key) as gone:
        project.commands(
            {
                "d1": {"create": append(with_delete, "create"), "delete": append(with_delete, "delete")},
                "d2": {"create": append(without, "create"), "connection": {"port": gone.port}},
            }
        )
        project.up()
    project.run("destroy", "--yes")
    assert lines(with_delete) == ["create", "delete"]
    assert lines(without) == ["create"]
    assert dials(project, "d2") == []


def test_read_returns_the_stored_state(project: CommandProject, remote: Path) -> None:
    ran = remote / "ran"
    project.commands({"r": {"create": f"{append(ran, 'create')}; date +%N"}})
    project.up()
    before = project.state(show_secrets=True)["r"]["outputs"]
    ran.unlink()
    project.run("refresh", "--yes", "--expect-no-changes")
    assert project.state(show_secrets=True)["r"]["outputs"] == before
    assert not ran.exists()


def test_environment_is_set_and_a_refused_variable_fails_the_run(project: CommandProject) -> None:
    project.commands(
        {
            "accepted": {"create": 'printf %s "$LAB_GREETING"', "environment": {"LAB_GREETING": "hello 'world'"}},
            "refused": {"create": "true", "environment": {"OTHER_VARIABLE": "x"}},
        }
    )
    result = project.up("--continue-on-error", check=False)
    assert result.returncode != 0
    assert project.state()["accepted"]["outputs"]["stdout"] == "hello 'world'"
    assert 'could not set environment variable "OTHER_VARIABLE": ssh: setenv failed' in result.output
    assert any(
        severity == "error" and message.startswith("Unable to set 'OTHER_VARIABLE'. This only works if")
        for severity, message in project.logged("refused", ephemeral=False)
    )
    assert "refused" not in project.state()


def test_previous_output_in_env_on_update_and_delete(project: CommandProject, remote: Path) -> None:
    seen = remote / "seen"
    show = 'printf "%s|%s" "$PULUMI_COMMAND_STDOUT" "$PULUMI_COMMAND_STDERR"'

    def declare(revision: str) -> None:
        base = {"create": "echo first; echo e1 >&2", "update": show, "environment": {"LAB_REVISION": revision}}
        project.commands(
            {
                "on": {**base, "delete": f"{show} > {seen}-on"},
                "off": {**base, "delete": f"{show} > {seen}-off", "addPreviousOutputInEnv": False},
            }
        )

    declare("1")
    project.up()
    declare("2")
    project.up()
    outputs = project.outputs()
    assert outputs["on"]["stdout"] == "first|e1"
    assert outputs["off"]["stdout"] == "|"
    project.run("destroy", "--yes")
    assert Path(f"{seen}-on").read_text() == "first|e1|"
    assert Path(f"{seen}-off").read_text() == "|"


def test_a_refused_previous_output_is_only_a_warning(tmp_path: Path, pulumi_engine: Engine, client_key: Path) -> None:
    """A stock sshd (no AcceptEnv) refuses PULUMI_COMMAND_STDOUT/STDERR: the update still runs."""
    with sshd(tmp_path / "stock", client_key) as stock:
        project = CommandProject(tmp_path / "project", pulumi_engine, stock.private_key, stock.port)
        project.commands({"w": {"create": "echo first", "update": 'printf "[%s]" "$PULUMI_COMMAND_STDOUT"'}})
        project.up()
        project.commands({"w": {"create": "echo first", "update": 'printf "<%s>" "$PULUMI_COMMAND_STDOUT"'}})
        project.up()
    assert project.outputs()["w"]["stdout"] == "<>"
    warnings = [msg for severity, msg in project.logged("w", ephemeral=False) if severity == "warning"]
    assert [msg.split(".")[0] for msg in warnings] == ["Unable to set 'PULUMI_COMMAND_STDOUT'"]


def test_stdin_reaches_the_command(project: CommandProject, remote: Path) -> None:
    received = remote / "stdin"
    text = "line one\nline 'two' $HOME\n\n"
    project.commands({"s": {"create": f"cat > {received}", "stdin": text}})
    project.up()
    assert received.read_text() == text


def test_logging_streams_the_chosen_streams_as_log_lines(project: CommandProject) -> None:
    choices = {"default": None, "stdout": "stdout", "stderr": "stderr", "both": "stdoutAndStderr", "none": "none"}
    project.commands(
        {
            name: {"create": f"echo out-{name}; echo err-{name} >&2", **({"logging": value} if value else {})}
            for name, value in choices.items()
        }
    )
    project.up()
    logged = {name: sorted(msg for _, msg in project.logged(name, ephemeral=True)) for name in choices}
    assert logged == {
        "default": ["err-default", "out-default"],
        "stdout": ["out-stdout"],
        "stderr": ["err-stderr"],
        "both": ["err-both", "out-both"],
        "none": [],
    }
    # Logging never changes what is captured.
    assert all(project.outputs()[name]["stderr"] == f"err-{name}" for name in choices)


def test_a_failed_command_fails_with_its_output_and_leaves_no_state(project: CommandProject) -> None:
    command = 'echo "partial"; echo oops >&2; exit 3'
    project.commands({"f": {"create": command}})
    result = project.up(check=False)
    assert result.returncode != 0
    # fmt.Errorf("%w: running %q:\n%s", err, cmd, stdout+stderr) in upstream's commandOutputs.go.
    assert f"Process exited with status 3: running {json.dumps(command)}:" in result.output
    assert "partial" in result.output
    assert "oops" in result.output
    assert "f" not in project.state()


def test_dial_error_limit_ends_dials_with_upstreams_message(project: CommandProject) -> None:
    with closed_port() as port:
        project.commands({"c": {"create": "true", "connection": {"port": port, "dialErrorLimit": 2}}})
        result = project.up(check=False)
    assert result.returncode != 0
    assert f"after 2 failed attempts: dial tcp 127.0.0.1:{port}: connect: connection refused" in result.output
    assert dials(project, "c") == ["Dial 1/2 failed: retrying", "Dial 2/2 failed: retrying"]


def test_dial_error_limit_counts_dials_to_a_server_that_refuses_the_login(
    project: CommandProject, server: Sshd
) -> None:
    """dialErrorLimit=N allows N failed dials, and the N+1th ends: N+1 connections reach the server."""
    before = server.connections()
    project.commands({"c": {"create": "true", "connection": {"user": "nobody", "dialErrorLimit": 3}}})
    result = project.up(check=False)
    assert "after 3 failed attempts: ssh: handshake failed: ssh: unable to authenticate" in result.output
    assert server.connections() - before == 4


def test_the_deadline_ends_dial_retries(project: CommandProject) -> None:
    with closed_port() as port:
        project.commands({"c": {"create": "true", "timeout": "3s", "connection": {"port": port, "dialErrorLimit": -1}}})
        result = project.up(check=False, timeout=60)
    assert result.returncode != 0
    assert "context deadline exceeded" in result.output
    # No limit: "n/inf" (those shown before the deadline; later ones go with the expired context).
    assert all(line.endswith("/inf failed: retrying") for line in dials(project, "c"))


def test_the_deadline_does_not_stop_a_running_command(project: CommandProject, remote: Path) -> None:
    """Upstream's session.Run ignores the context: a command that outlives its step's custom timeout
    (sleeping 5 s under a 2 s timeout) runs to its end, and the step succeeds (issue 17). What it prints
    after the deadline is kept in its outputs but never shown: the log calls use the expired context."""
    done = remote / "done"
    command = f"echo started; sleep 5; {append(done, 'finished')}; echo finished"
    project.commands({"slow": {"create": command, "timeout": "2s"}})
    project.up()
    assert lines(done) == ["finished"]
    assert project.outputs()["slow"]["stdout"] == "started\nfinished"
    # "finished" comes 5 s after the command started, so always after the deadline ("started" is shown
    # unless the machine took 2 s to dial: not asserted).
    assert "finished" not in [message for _, message in project.logged("slow", ephemeral=True)]


def test_secrets_stay_secret_as_upstream_keeps_them(project: CommandProject, server: Sshd) -> None:
    project.commands({"s": {"create": "cat", "stdin": "a secret stdin", "secretStdin": True}})
    project.up()
    stored = project.state()["s"]
    assert server.private_key.splitlines()[1] not in json.dumps(stored)
    for kind in ("inputs", "outputs"):
        assert "ciphertext" in stored[kind]["connection"]
        assert "ciphertext" in stored[kind]["stdin"]
    # Upstream makes no output secret for being computed from a secret input: what the command printed
    # of its secret stdin is stored in plain text (upstream's advice: logging none and
    # additionalSecretOutputs).
    assert stored["outputs"]["stdout"] == "a secret stdin"


def test_hosts_outside_the_test_networks_are_refused_before_any_packet(
    tmp_path: Path, pulumi_engine: Engine, server: Sshd
) -> None:
    """Run in a network namespace with only loopback, so that nothing could leave even if the refusal
    failed; the address just inside 198.18.0.0/15 is dialed (and finds no route), the others are not."""
    project = CommandProject(tmp_path / "project", pulumi_engine, server.private_key, 22, prefix=NO_NETWORK)
    hosts = {"plan": "10.0.0.31", "above": "198.20.0.1", "name": "localhost", "ipv6": "::1", "inside": "198.19.0.1"}
    project.commands(
        {name: {"create": "true", "connection": {"host": host, "dialErrorLimit": 0}} for name, host in hosts.items()}
    )
    result = project.up("--continue-on-error", check=False)
    assert result.returncode != 0
    for name, host in hosts.items():
        if name == "inside":
            assert f"after 0 failed attempts: dial tcp {host}:22: connect: network is unreachable" in result.output
        else:
            assert f'{REFUSAL} "{host}": it runs remote commands only on test machines' in result.output
            assert dials(project, name) == []
    assert project.state().keys().isdisjoint(hosts)


def test_plan_only_unless_the_run_enables_execution(
    tmp_path: Path, pulumi_engine: Engine, server: Sshd, remote: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Even when the test's own environment says 1: a Workspace passes it on only when asked to."""
    monkeypatch.setenv(EXECUTE_ENV, "1")
    ran = remote / "ran"
    project = CommandProject(tmp_path / "project", pulumi_engine, server.private_key, server.port, execute=False)
    project.commands({"p": {"create": append(ran, "create")}})
    project.run("preview")
    before = server.connections()
    result = project.up(check=False)
    assert result.returncode != 0
    assert "haproxy-lab's command stand-in plans only; it never runs a command" in result.output
    assert not ran.exists()
    assert server.connections() == before


def test_a_bad_execute_setting_is_refused_naming_it(project: CommandProject) -> None:
    project.workspace.env[EXECUTE_ENV] = "yes"
    project.commands({"p": {"create": "true"}})
    result = project.run("preview", check=False)
    assert result.returncode != 0
    assert f'{EXECUTE_ENV}="yes": set it to 1 to run remote commands on test machines' in result.output
