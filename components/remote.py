"""How Pulumi reaches the VMs: the SSH connection, each step's time budget, and the command line that runs
one of our scripts as root within that budget.

Why scripts go as `sh -c '<text>'` under sudo: nothing has to be copied to the VM first, the exact text
that shellcheck checked is what runs, and its hash triggers a re-run when (and only when) it changes.
Values that may hold secrets or user text travel on stdin, never on the command line.
Why the VM bounds each step itself: pulumi-command's custom timeouts end only SSH dial retries; a command
that has started runs until it ends (docs/day2.md, "No step hangs").
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass, replace

import pulumi
import pulumi_command as command

from plan.model import Host, Ssh
from plan.values import SSH_PORT

# Only the first command after boot dials until SSH answers (bounded by its timeouts): the VM is
# still booting. Once it has answered, silence is a fault (VM stopped, ssh.adminCidr or key wrong):
# give up after DIAL_ATTEMPTS dials of PER_DIAL_TIMEOUT_S each, a few minutes at most.
DIAL_ATTEMPTS = 10
PER_DIAL_TIMEOUT_S = 15

# Between the VM's SIGTERM to a step and its SIGKILL: long enough for a script's traps to clean up.
KILL_GRACE_S = 30


@dataclass(frozen=True)
class Budget:
    """How long one remote step may take, defined once: its Pulumi custom timeouts and the bound the VM
    enforces on its command line both come from here. `update_seconds` (when set) is the budget of the
    step's `update` run; the delete timeout follows it (no step runs anything on delete)."""

    seconds: int
    update_seconds: int | None = None
    grace_seconds: int = KILL_GRACE_S

    def __post_init__(self) -> None:
        for seconds in (self.seconds, self.update_seconds or self.seconds):
            if seconds <= 2 * self.grace_seconds:
                raise ValueError(f"a budget of {seconds}s leaves no time to run within a {self.grace_seconds}s grace")

    @classmethod
    def minutes(cls, create: int, update: int | None = None) -> Budget:
        return cls(seconds=create * 60, update_seconds=None if update is None else update * 60)

    @property
    def on_update(self) -> Budget:
        """The budget of an update run (the same unless `update_seconds` says otherwise)."""
        return Budget(seconds=self.update_seconds or self.seconds, grace_seconds=self.grace_seconds)

    def custom_timeouts(self) -> pulumi.CustomTimeouts:
        """For the engine: bounds the SSH dial retries of create, update and delete."""
        update = _duration(self.on_update.seconds)
        return pulumi.CustomTimeouts(create=_duration(self.seconds), update=update, delete=update)

    def __str__(self) -> str:
        return f"{self.seconds // 60} min" if self.seconds % 60 == 0 else f"{self.seconds} s"


def _duration(seconds: int) -> str:
    return f"{seconds // 60}m" if seconds % 60 == 0 else f"{seconds}s"


def connection(
    host: Host, ssh: Ssh, private_key: pulumi.Output[str], *, wait_for_boot: bool = False
) -> command.remote.ConnectionArgs:
    """SSH to the VM's configured static address as the cloud-init admin user, key from a secret;
    `wait_for_boot` (first command after boot only) dials until the VM answers."""
    return command.remote.ConnectionArgs(
        host=str(host.ip),
        port=SSH_PORT,
        user=ssh.user,
        private_key=private_key,
        dial_error_limit=-1 if wait_for_boot else DIAL_ATTEMPTS,
        per_dial_timeout=PER_DIAL_TIMEOUT_S,
    )


# Runs as root: unpack the base64 tar.gz arriving on stdin into a fresh private directory, then run
# the script ($1, named $2) with that directory as its only argument. The directory is removed on every
# exit (a corrupt bundle, a failed script, a signal), so no copy of the app is left in /tmp.
_UNPACK_AND_RUN = (
    'set -eu; umask 077; d=$(mktemp -d "${TMPDIR:-/tmp}/haproxy-lab-bundle.XXXXXX"); '
    "trap 'rm -rf \"$d\"' EXIT; trap 'exit 1' HUP INT TERM; "
    'base64 -d | tar -xzf - -C "$d"; sh -c "$1" "$2" "$d"'
)


@dataclass(frozen=True)
class RootScript:
    """One of our scripts, run as root with POSIX sh: its text, its name (`$0`) and arguments. With
    `bundle`, stdin is a base64 tar.gz (render.shipping) unpacked first; the script gets its directory."""

    text: str
    name: str
    args: tuple[str, ...] = ()
    bundle: bool = False

    def marked(self, mark: str) -> RootScript:
        """The same script with a closing comment line holding `mark`: a new mark is a new command text (an
        update of the step that holds it: components/rolling.py), the script runs the same."""
        return replace(self, text=f"{self.text.rstrip()}\n# haproxy-lab: {mark}\n")

    def command_line(self, budget: Budget) -> str:
        """The command line that runs the script within `budget` on the VM."""
        if self.bundle:
            argv = ["sh", "-c", _UNPACK_AND_RUN, "unpack-bundle", self.text, self.name, *self.args]
        else:
            argv = ["sh", "-c", self.text, self.name, *self.args]
        return as_root_within(budget, " ".join([self.name, *self.args]), argv)


# Between the inner `timeout` and the step, as root: once the step has ended after a SIGTERM, SIGKILL what
# is left of its process group. `timeout` sends its SIGKILL only while the step itself still runs, and a
# child deaf to SIGTERM would outlive a script that obeys it and keep the SSH session's output open.
_REAP = 'stopped=0; trap "stopped=1" TERM; "$@"; rc=$?; [ "$stopped" -eq 0 ] || kill -s KILL 0; exit "$rc"'


def as_root_within(budget: Budget, label: str, argv: Sequence[str]) -> str:
    """A shell command line that runs `argv` as root and stops it by `budget` on the VM itself.

    Two coreutils `timeout`s: the inner one, as root, sends SIGTERM to the whole process group at
    budget - 2 grace and SIGKILL at budget - grace (root can kill whatever the script started, so the
    SSH session's output closes and the step ends; _REAP covers what the script leaves behind); the
    outer one, as the login user, covers `sudo` itself (budget - grace, then SIGKILL at the budget).
    stdin flows through both to the script. A stopped step exits 137 (124 when SIGTERM alone ended
    it) with `label` and the budget on stderr.
    """
    grace = budget.grace_seconds
    outer, inner = budget.seconds - grace, budget.seconds - 2 * grace
    run = [
        *("timeout", "-k", f"{grace}s", f"{outer}s", "sudo", "-n"),
        *("timeout", "-k", f"{grace}s", f"{inner}s", "sh", "-c", _REAP, "reap", *argv),
    ]
    message = f"haproxy-lab: {label} ran past its {budget} budget on the VM and was stopped"
    # The message only when a bound fired: the exit status of `timeout` and at least the inner bound elapsed
    # (a script killed by the OOM killer also exits 137, sooner).
    return (
        f"haproxy_lab_start=$(date +%s); {shlex.join(run)} || {{ rc=$?; case $rc in 124 | 137) "
        f"[ $(($(date +%s) - haproxy_lab_start)) -lt {inner} ] || echo {shlex.quote(message)} >&2 ;; esac; "
        'exit "$rc"; }'
    )
