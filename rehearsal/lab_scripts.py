"""Change a running LocalLab through the scripts the VMs run: apply-haproxy-cfg.sh (reload confirmed through
the master CLI) and haproxy-server-state.sh (drain/ready on the admin socket).

Why the shipped scripts and not Python equivalents: the day-2 drills then prove the scripts `pulumi up`
runs, with the VM's PATH, as `sh -c` with their includes inlined.
"""

from __future__ import annotations

import dataclasses
import grp
import os
import subprocess
from collections.abc import Mapping, Sequence

from rehearsal.local_lab import MASTER_SOCKET, LocalLab, ServerSpec
from rehearsal.runtime import wait_processes
from render.haproxy_cfg import Backend, render_haproxy_cfg
from render.shipping import script_text

VM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"  # the scripts find the system's python3, awk, sed as on a VM
SCRIPT_TIMEOUT = 120  # seconds: a script still running then fails the drill


def run_script(
    lab: LocalLab, name: str, *args: str, env: Mapping[str, str], stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    """files/scripts/<name> as a VM runs it (dash, includes inlined), with the lab's paths in `env`, in the
    lab's work directory (where HAProxy's sockets are: named relative to it, their paths stay short)."""
    return subprocess.run(
        ["dash", "-c", script_text(name), name, *args],
        cwd=lab.workdir,
        input=stdin,
        capture_output=True,
        text=True,
        env={"PATH": VM_PATH, **env},
        timeout=SCRIPT_TIMEOUT,
        check=False,
    )


def server_state(lab: LocalLab, action: str, name: str) -> subprocess.CompletedProcess[str]:
    """haproxy-server-state.sh drain|ready NAME on the lab's admin socket."""
    if lab.lb.admin_socket is None:
        raise RuntimeError("this lab's haproxy.cfg has no admin socket")
    env = {"SOCKET": lab.lb.admin_socket, "BACKEND": lab.lb.backend, "TIMEOUT": "30"}
    return run_script(lab, "haproxy-server-state.sh", action, name, env=env)


def render_for(lab: LocalLab, servers: Sequence[ServerSpec]) -> str:
    """The lab's haproxy.cfg with another set of web servers (everything else unchanged)."""
    if lab.lb.settings is None:
        raise RuntimeError("this lab's haproxy.cfg was not rendered from settings")
    backends = [Backend(server.name, f"{server.host}:{server.port}") for server in servers]
    return render_haproxy_cfg(dataclasses.replace(lab.lb.settings, servers=backends))


def apply_config(lab: LocalLab, text: str) -> subprocess.CompletedProcess[str]:
    """apply-haproxy-cfg.sh with `text`: checked, swapped in, reloaded (USR2 to the master, as the unit does)
    and confirmed through the master CLI."""
    env = {
        "HAPROXY_CFG": str(lab.cfg_path),
        "HAPROXY_BIN": lab.lb.haproxy_bin,
        "HAPROXY_RELOAD": f"kill -USR2 {lab.haproxy_pid}",
        "HAPROXY_MASTER_SOCKET": MASTER_SOCKET,
        "HAPROXY_GROUP": grp.getgrgid(os.getgid()).gr_name,  # ours, not the VM's haproxy group
    }
    return run_script(lab, "apply-haproxy-cfg.sh", env=env, stdin=text)


def wait_old_workers_gone(lab: LocalLab, timeout: float = 30.0) -> None:
    """After a reload: wait until only the newest worker is left (the old ones finished their requests)."""
    lab.close_stats_connection()  # our own idle stats connection would hold an old worker until its timeout
    wait_processes(lab.master_socket, lambda procs: len(procs.workers) == 1, timeout)
