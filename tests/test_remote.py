"""The command lines Pulumi runs over SSH, executed here for real with a local sh (tests/vm_shell.py)."""

from __future__ import annotations

import base64
import gzip
import subprocess
from pathlib import Path

import pytest

from components.remote import Budget, RootScript
from render.shipping import tar_gz_base64
from tests.vm_shell import run_line

HOSTILE = ["plain", "with space", "it's", '"dq"', "$(touch /tmp/pwned-by-arg)", "`id`", "a;b", "*", "\\", "$HOME"]


BUDGET = Budget.minutes(5)


def run_locally(
    script: RootScript, where: Path, stdin: str = "", tmpdir: Path | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the script's command line as the VM would (tests/vm_shell.py), within a budget of a few minutes.

    With `tmpdir`, the unpacker's directory goes there (TMPDIR), and none may appear in /tmp either.
    """
    env = None if tmpdir is None else {"TMPDIR": str(tmpdir)}
    before = set(Path("/tmp").glob("haproxy-lab-bundle.*"))
    result = run_line(script.command_line(BUDGET), where, stdin=stdin, env=env, timeout=30)
    if tmpdir is not None:
        left = set(Path("/tmp").glob("haproxy-lab-bundle.*")) - before
        assert not left, f"unpack directories left in /tmp: {left}"
    return result


def test_script_and_arguments_arrive_unchanged(tmp_path: Path) -> None:
    script = '#!/bin/sh\nset -eu\nprintf "%s\\n" "$0"\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n'
    result = run_locally(RootScript(script, "show-args.sh", tuple(HOSTILE)), tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == ["show-args.sh", *[f"[{a}]" for a in HOSTILE]]
    assert not Path("/tmp/pwned-by-arg").exists()


def test_bundle_arrives_as_files_in_a_private_directory(tmp_path: Path) -> None:
    files = {"app.py": "print('hi')\n", "compose.yaml": "message: \"$(id)\" 'x'\n", "sub/dir.txt": "nested\n"}
    script = (
        '#!/bin/sh\nset -eu\ndir=$1\nstat -c %a "$dir"\n'
        'for f in app.py compose.yaml sub/dir.txt; do printf "%s=" "$f"; cat "$dir/$f"; done\nrm -rf "$dir"\n'
    )
    result = run_locally(RootScript(script, "deploy.sh", bundle=True), tmp_path, stdin=tar_gz_base64(files))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "700"
    assert lines[1:] == [f"{name}={text.rstrip()}" for name, text in files.items()]


def test_a_corrupt_bundle_fails_before_the_script_runs(tmp_path: Path) -> None:
    command = RootScript("#!/bin/sh\necho ran\n", "deploy.sh", bundle=True)
    unpacked = tmp_path / "tmp"
    unpacked.mkdir()
    result = run_locally(command, tmp_path, stdin="bm90IGEgdGFy\n", tmpdir=unpacked)
    assert result.returncode != 0
    assert "ran" not in result.stdout
    assert list(unpacked.iterdir()) == [], "the unpack directory is removed"


@pytest.mark.parametrize(("script", "status"), [("exit 0", 0), ("exit 3", 3)])
def test_the_unpack_directory_is_removed_whatever_the_script_does(tmp_path: Path, script: str, status: int) -> None:
    command = RootScript(f'#!/bin/sh\ntest -f "$1/app.py"\n{script}\n', "deploy.sh", bundle=True)
    unpacked = tmp_path / "tmp"
    unpacked.mkdir()
    result = run_locally(command, tmp_path, stdin=tar_gz_base64({"app.py": "x"}), tmpdir=unpacked)
    assert result.returncode == status, result.stderr
    assert list(unpacked.iterdir()) == []


def test_bundles_are_deterministic() -> None:
    files = {"b.txt": "2", "a.txt": "1"}
    assert tar_gz_base64(files) == tar_gz_base64(dict(reversed(list(files.items()))))
    assert gzip.decompress(base64.b64decode(tar_gz_base64(files)))[:5] == b"a.txt"


@pytest.mark.parametrize("path", ["/etc/passwd", "../escape", "a/../../b"])
def test_bundle_paths_cannot_escape(path: str) -> None:
    with pytest.raises(ValueError, match="must be relative"):
        tar_gz_base64({path: "x"})
