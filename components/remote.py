"""How Pulumi reaches the VMs: the SSH connection and the command line that runs one of our scripts.

Why scripts go as `sudo sh -c '<text>'`: nothing has to be copied to the VM first, the exact text
that shellcheck checked is what runs, and its hash triggers a re-run when (and only when) it changes.
Values that may hold secrets or user text travel on stdin, never on the command line.
"""

from __future__ import annotations

import shlex

import pulumi
import pulumi_command as command

from plan.model import Host, Ssh
from plan.values import SSH_PORT

# Only the first command after boot dials until SSH answers (bounded by its timeouts): the VM is
# still booting. Once it has answered, silence is a fault (VM stopped, ssh.adminCidr or key wrong):
# give up after DIAL_ATTEMPTS dials of PER_DIAL_TIMEOUT_S each, a few minutes at most.
DIAL_ATTEMPTS = 10
PER_DIAL_TIMEOUT_S = 15


def timeouts(minutes: int) -> pulumi.CustomTimeouts:
    """The same bound on create, update and delete: no remote command may hang `pulumi up`."""
    return pulumi.CustomTimeouts(create=f"{minutes}m", update=f"{minutes}m", delete=f"{minutes}m")


# Create: a fresh VM's boot, cloud-init and its package installs. Update: the same step on a VM that
# has long booted (its connection changed, e.g. a new key): dialing forever must end sooner.
WAIT_FOR_BOOT = pulumi.CustomTimeouts(create="30m", update="5m", delete="5m")


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


def sudo_script(script: str, name: str, *args: str) -> str:
    """A shell command line that runs `script` as root with POSIX sh, `$0` = name, then args."""
    return " ".join(["sudo", "-n", "sh", "-c", shlex.quote(script), shlex.quote(name), *map(shlex.quote, args)])


# Runs as root: unpack the base64 tar.gz arriving on stdin into a fresh private directory, then run
# the script ($1, named $2) with that directory as its only argument. The directory is removed on every
# exit (a corrupt bundle, a failed script, a signal), so no copy of the app is left in /tmp.
_UNPACK_AND_RUN = (
    'set -eu; umask 077; d=$(mktemp -d "${TMPDIR:-/tmp}/haproxy-lab-bundle.XXXXXX"); '
    "trap 'rm -rf \"$d\"' EXIT; trap 'exit 1' HUP INT TERM; "
    'base64 -d | tar -xzf - -C "$d"; sh -c "$1" "$2" "$d"'
)


def sudo_script_with_bundle(script: str, name: str) -> str:
    """Like sudo_script, for a script that takes a directory: its files arrive on stdin (render/shipping.py)."""
    return " ".join(
        [
            "sudo",
            "-n",
            "sh",
            "-c",
            shlex.quote(_UNPACK_AND_RUN),
            "unpack-bundle",
            shlex.quote(script),
            shlex.quote(name),
        ]
    )
