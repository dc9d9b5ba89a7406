"""A remote step's command line stops itself on the VM when it runs past its budget (components/remote.py).

Each command line is run here as the VM runs it (tests/vm_shell.py: the login shell, sudo for root) with
the real coreutils `timeout`, and a budget of a few seconds that only tests use (the program's budgets are
minutes). What is checked: the step ends, with its exit status and the message naming it and its budget on
stderr; stdin still reaches the script; nothing it started is left running.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from components.remote import RootScript
from render.shipping import tar_gz_base64
from tests.vm_shell import SHORT, STOPPED, run_line, started, stopped_message

pytestmark = pytest.mark.timeout(120)

# Well past SHORT: a command line without its bound fails the test instead of hanging it.
HANG_LIMIT_S = 30


def gone(pid: int) -> bool:
    """No such process, or a zombie waiting for its reaper (it runs nothing any more)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


def test_a_script_that_sleeps_forever_fails_its_step_with_the_budget_in_its_message(tmp_path: Path) -> None:
    script = RootScript('read -r secret; echo "got $secret"; exec sleep infinity', "install-docker.sh")
    result = run_line(script.command_line(SHORT), tmp_path, stdin="s3cret\n", timeout=HANG_LIMIT_S)
    assert result.returncode in STOPPED, result.stderr
    assert stopped_message("install-docker.sh") in result.stderr.splitlines()
    assert result.stdout == "got s3cret\n", "stdin reaches the script through both bounds"


def test_a_script_that_ignores_sigterm_is_killed_with_all_it_started(tmp_path: Path) -> None:
    """The KILL after the grace: the script's child that ignores SIGTERM and holds the output is gone too,
    so the session's output closes (subprocess.run returns only then)."""
    pid_file = tmp_path / "child.pid"
    text = f"trap '' TERM; sleep 1000 & echo $! >{pid_file}; while :; do sleep 0.2; done"
    script = RootScript(text, "apply-haproxy-cfg.sh")
    result = run_line(script.command_line(SHORT), tmp_path, timeout=HANG_LIMIT_S)
    assert result.returncode in STOPPED, result.stderr
    assert stopped_message("apply-haproxy-cfg.sh") in result.stderr.splitlines()
    assert gone(int(pid_file.read_text()))


def test_the_bound_covers_the_bundle_unpacking_and_cleans_its_directory(tmp_path: Path) -> None:
    """stdin that never ends: the unpacking itself hangs, and the bound stops it."""
    unpacked = tmp_path / "tmp"
    unpacked.mkdir()
    script = RootScript('echo "ran $1"', "deploy-webapp.sh", bundle=True)
    with started(script.command_line(SHORT), tmp_path, env={"TMPDIR": str(unpacked)}) as process:
        assert process.stdin is not None
        process.stdin.write(tar_gz_base64({"app.py": "x"})[:40])  # a bundle that never finishes arriving
        process.stdin.flush()
        process.wait(timeout=HANG_LIMIT_S)  # stdin stays open (a few bytes of output fit the pipes)
        assert process.stdout is not None
        assert process.stderr is not None
        out, err = process.stdout.read(), process.stderr.read()
    assert process.returncode in STOPPED, err
    assert stopped_message("deploy-webapp.sh") in err.splitlines()
    assert "ran" not in out
    assert list(unpacked.iterdir()) == [], "the unpack directory is removed on SIGTERM"


def test_a_sudo_that_hangs_is_bounded_too(tmp_path: Path) -> None:
    hung_sudo = "#!/bin/sh\nexec sleep infinity\n"
    script = RootScript("echo never", "haproxy-server-state.sh", ("drain", "web1"))
    result = run_line(script.command_line(SHORT), tmp_path, sudo=hung_sudo, timeout=HANG_LIMIT_S)
    assert result.returncode == 124, result.stderr
    assert stopped_message("haproxy-server-state.sh drain web1") in result.stderr.splitlines()


@pytest.mark.parametrize("status", [0, 3, 124, 137])
def test_a_step_that_ends_in_time_keeps_its_status_and_no_message(tmp_path: Path, status: int) -> None:
    """Even a script exiting 124 or 137 on its own (a child killed by the OOM killer) is not called stopped."""
    script = RootScript(f"echo done; exit {status}", "install-haproxy.sh")
    result = run_line(script.command_line(SHORT), tmp_path, timeout=HANG_LIMIT_S)
    assert result.returncode == status
    assert result.stdout == "done\n"
    assert "ran past" not in result.stderr


def test_a_child_deaf_to_sigterm_is_killed_when_its_script_obeys(tmp_path: Path) -> None:
    """The script ends on SIGTERM (its trap), its child does not: `timeout` alone would stop there, with the
    child holding the output open; the step still ends and the child is gone."""
    pid_file = tmp_path / "child.pid"
    deaf = f"trap '' TERM; echo $$ >{pid_file}; while :; do sleep 0.1; done"
    # `wait` returns at once on a trapped signal (where a foreground child would delay the trap).
    text = f"trap 'exit 1' TERM; sh -c {shlex.quote(deaf)} & wait"
    result = run_line(RootScript(text, "apply-keepalived-conf.sh").command_line(SHORT), tmp_path, timeout=HANG_LIMIT_S)
    assert result.returncode in STOPPED, result.stderr
    assert stopped_message("apply-keepalived-conf.sh") in result.stderr.splitlines()
    assert gone(int(pid_file.read_text()))
