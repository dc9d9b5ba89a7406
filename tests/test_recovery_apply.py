"""A config apply stopped by its step's budget is finished by the next run: the staged copies it left are
removed, and a file swapped in but never reloaded is reloaded, even though it is already in place.

apply-haproxy-cfg.sh runs against the real HAProxy in master-worker mode (tests/test_apply_haproxy_cfg.py's
lab), apply-keepalived-conf.sh against the real `keepalived -t` (tests/test_keepalived.py's target), each
as its step runs it with its real bound (tests/vm_shell.py). What hangs, once: the config check (a cut
between staging and swap) or the reload (a cut between swap and reload), either dying on SIGTERM (the
script's traps run) or deaf to it (SIGKILL after the grace: no trap runs, leftovers stay).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from render.keepalived import keepalived_bundle, render_keepalived_conf
from tests import test_apply_haproxy_cfg as haproxy_apply
from tests import test_keepalived as keepalived_tests
from tests.test_apply_haproxy_cfg import SECRET, Lab, config_id_of
from tests.test_keepalived import Target
from tests.vm_shell import cut_step, run_step

pytestmark = pytest.mark.timeout(120)

# The fixtures of those files: a real HAProxy (2.6 here: reload confirmation is checked on 3.0 there),
# and the keepalived target.
haproxy = haproxy_apply.haproxy
lab = haproxy_apply.lab
target = keepalived_tests.target

# Hangs once when $HANG_DIR/hang-once exists, deaf to SIGTERM when $HANG_DIR/deaf exists.
HANG_ONCE = """#!/bin/sh
[ -e "$HANG_DIR/hang-once" ] || exit 0
rm -f "$HANG_DIR/hang-once"
[ ! -e "$HANG_DIR/deaf" ] || trap '' TERM
while :; do sleep 0.1; done
"""
# A config checker that hangs (once) after checking.
CHECK_THEN_HANG = '#!/bin/sh\n"$REAL_CHECKER" "$@" || exit\nexec sh "$HANG_DIR/hang-once.sh"\n'

HANGS = pytest.mark.parametrize("deaf", [False, True], ids=["dies-on-sigterm", "deaf-to-sigterm"])


def hanging(where: Path, *, deaf: bool) -> tuple[dict[str, str], str]:
    """The environment that makes the next hang point hang once, and the command line of the hang."""
    hang_dir = where / "hang"
    hang_dir.mkdir(exist_ok=True)
    (hang_dir / "hang-once.sh").write_text(HANG_ONCE)
    (hang_dir / "check-then-hang").write_text(CHECK_THEN_HANG)
    (hang_dir / "check-then-hang").chmod(0o755)
    (hang_dir / "hang-once").touch()
    if deaf:
        (hang_dir / "deaf").touch()
    return {"HANG_DIR": str(hang_dir)}, f"sh {hang_dir}/hang-once.sh"


# --- haproxy.cfg -------------------------------------------------------------------------------------


def apply_cfg(lab: Lab, where: Path, text: str, env: dict[str, str]) -> str:
    result = run_step(where, "apply-haproxy-cfg.sh", stdin=text, env={**lab.env, **env})
    assert result.returncode == 0, result.stderr
    assert SECRET not in result.stdout + result.stderr
    return result.stdout


@pytest.mark.parametrize("haproxy", ["2.6"], indirect=True)
@HANGS
def test_an_apply_cut_between_staging_and_swap_leaves_the_live_file_and_the_next_run_starts_clean(
    lab: Lab, tmp_path: Path, deaf: bool
) -> None:
    old, new = lab.cfg.read_text(), lab.config("v2")
    env, _ = hanging(tmp_path, deaf=deaf)
    env |= {"REAL_CHECKER": lab.env["HAPROXY_BIN"], "HAPROXY_BIN": f"{env['HANG_DIR']}/check-then-hang"}

    cut = cut_step(tmp_path, "apply-haproxy-cfg.sh", stdin=new, env={**lab.env, **env})

    assert SECRET not in cut.stdout + cut.stderr
    assert lab.cfg.read_text() == old
    assert lab.get() == "v1"
    apply_cfg(lab, tmp_path, new, env)
    assert lab.served_id() == config_id_of(new)
    assert lab.cfg_dir_listing() == ["haproxy.cfg", "haproxy.cfg.previous"], "no staged copy of the password left"


@pytest.mark.parametrize("haproxy", ["2.6"], indirect=True)
@HANGS
def test_an_apply_cut_between_swap_and_reload_is_reloaded_by_the_next_run(lab: Lab, tmp_path: Path, deaf: bool) -> None:
    old, new = lab.cfg.read_text(), lab.config("v2")
    env, hang = hanging(tmp_path, deaf=deaf)
    env["HAPROXY_RELOAD"] = f"{hang} && {lab.env['HAPROXY_RELOAD']}"

    cut_step(tmp_path, "apply-haproxy-cfg.sh", stdin=new, env={**lab.env, **env})

    assert lab.cfg.read_text() == new, "swapped in"
    assert lab.served_id() == config_id_of(old), "but never reloaded"
    out = apply_cfg(lab, tmp_path, new, env)
    assert "reload was cut short" in out
    assert lab.served_id() == config_id_of(new)
    assert lab.serves() == "v2"
    assert lab.reloads() == 1
    assert lab.cfg_dir_listing() == ["haproxy.cfg", "haproxy.cfg.previous"]


# --- keepalived.conf ---------------------------------------------------------------------------------


def bundle(target: Target, where: Path, priority: int) -> Path:
    """A SRC_DIR as the bundle step unpacks it, here under the test's directory (a cut leaves it)."""
    files = keepalived_bundle(dataclasses.replace(target.settings, priority=priority))
    source = where / "bundles" / f"{priority}-{len(list(where.glob('bundles/*')))}"
    source.mkdir(parents=True)
    for name, text in files.items():
        (source / name).write_text(text)
    return source


def apply_conf(target: Target, where: Path, priority: int, env: dict[str, str]) -> str:
    source = bundle(target, where, priority)
    result = run_step(where, "apply-keepalived-conf.sh", str(source), env={**target.env, **env})
    assert result.returncode == 0, result.stderr
    return result.stdout


def cut_conf(target: Target, where: Path, priority: int, env: dict[str, str]) -> None:
    cut_step(where, "apply-keepalived-conf.sh", str(bundle(target, where, priority)), env={**target.env, **env})


def etc_listing(target: Target) -> list[str]:
    return sorted(p.name for p in target.etc.iterdir())


LIVE_FILES = ["check-haproxy.sh", "keepalived.conf", "keepalived.conf.previous"]


@HANGS
def test_a_keepalived_apply_cut_between_staging_and_swap_and_the_next_run_starts_clean(
    target: Target, tmp_path: Path, deaf: bool
) -> None:
    apply_conf(target, tmp_path, 100, {})
    live = target.conf.read_text()
    env, _ = hanging(tmp_path, deaf=deaf)
    env |= {"REAL_CHECKER": target.env["KEEPALIVED_BIN"], "KEEPALIVED_BIN": f"{env['HANG_DIR']}/check-then-hang"}

    cut_conf(target, tmp_path, 120, env)

    assert target.conf.read_text() == live
    apply_conf(target, tmp_path, 120, env)
    assert target.conf.read_text() == render_keepalived_conf(dataclasses.replace(target.settings, priority=120))
    assert etc_listing(target) == LIVE_FILES


@HANGS
def test_a_keepalived_apply_cut_between_swap_and_reload_is_reloaded_by_the_next_run(
    target: Target, tmp_path: Path, deaf: bool
) -> None:
    apply_conf(target, tmp_path, 100, {})
    env, hang = hanging(tmp_path, deaf=deaf)
    env["KEEPALIVED_RELOAD"] = f"{hang} && {target.env['KEEPALIVED_RELOAD']}"

    cut_conf(target, tmp_path, 120, env)

    assert target.reloads() == 1, "the new file was swapped in, its reload never ran"
    out = apply_conf(target, tmp_path, 120, env)
    assert "reload was cut short" in out
    assert target.reloads() == 2
    assert etc_listing(target) == LIVE_FILES
