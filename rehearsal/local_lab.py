"""Start, signal and stop a local lab: one HAProxy and N web-server processes, all on loopback; change it
(servers in and out, haproxy.cfg) through the same scripts the VMs run.

Why process groups: a web server is a master process plus workers (granian); the drills must kill or freeze the
whole server at once (like `docker stop -s KILL` / `docker pause`), so each server runs in its own
session and every signal goes to its group. close() always reaps every group it started.
"""

from __future__ import annotations

import base64
import contextlib
import csv
import http.client
import io
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rehearsal.watchdog import Watchdog
from render.haproxy_cfg import HaproxySettings

Progress = Callable[[str], None]
MASTER_SOCKET = "master.sock"


def quiet(_: str) -> None:
    """A progress sink that prints nothing (tests)."""


def free_port(host: str) -> int:
    """A TCP port free on `host` right now (the OS picks it; the tiny race is acceptable for a local lab)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass(frozen=True, kw_only=True)
class ServerSpec:
    """How to run one web server: its HAProxy name, expected answer, loopback address and command."""

    name: str
    message: str
    host: str
    port: int
    argv: tuple[str, ...]
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None


@dataclass(frozen=True, kw_only=True)
class LbSpec:
    """How to run HAProxy: its config text, where it listens, and how to read its stats CSV."""

    cfg_text: str
    haproxy_bin: str
    host: str
    port: int
    stats_port: int
    stats_uri: str = "/stats"
    stats_user: str | None = None
    stats_password: str | None = None
    backend: str = "web_servers"
    settings: HaproxySettings | None = None  # what cfg_text was rendered from: drills render variants of it
    admin_socket: str | None = None  # the `stats socket` file, in HAProxy's working directory (the workdir)


def basic_auth_header(user: str, password: str) -> str:
    """The Authorization header value for HTTP Basic (UTF-8, as HAProxy compares raw bytes)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def stats_rows(text: str, backend: str) -> dict[str, dict[str, str]]:
    """Row name (each server, and BACKEND) -> every column, for one backend of HAProxy's CSV stats."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError("not HAProxy CSV stats")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    return {row["svname"]: row for row in reader if row.get("pxname") == backend and row.get("svname") != "FRONTEND"}


def parse_stats_csv(text: str, backend: str) -> dict[str, str]:
    """Server name -> status ('UP', 'DOWN', 'UP 1/2', 'no check'...) for one backend of HAProxy's CSV stats."""
    return {name: row["status"] for name, row in stats_rows(text, backend).items() if name != "BACKEND"}


def _group_exists(pgid: int) -> bool:
    """Whether any process (a zombie not yet reaped included) is still in process group `pgid`."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class LocalLab:
    """A running lab. Use as a context manager: leaving it (normally, on error or Ctrl-C) stops everything."""

    def __init__(
        self,
        lb: LbSpec,
        servers: Sequence[ServerSpec],
        workdir: Path,
        progress: Progress = quiet,
        *,
        disposable_workdir: bool = False,
    ) -> None:
        """`disposable_workdir`: the guard process also removes `workdir` if this process dies uncleanly."""
        self.lb = lb
        self.servers = list(servers)
        self.workdir = workdir
        self.progress = progress
        self.disposable_workdir = disposable_workdir
        self._watchdog: Watchdog | None = None
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._frozen: set[str] = set()
        self._stats_conn: http.client.HTTPConnection | None = None
        self.groups: list[int] = []  # every process group ever started, for tests to prove they are gone

    # --- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalLab:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def messages(self) -> frozenset[str]:
        """Every answer a web server may give through the load balancer."""
        return frozenset(server.message for server in self.servers)

    @property
    def cfg_path(self) -> Path:
        return self.workdir / "haproxy.cfg"

    @property
    def master_socket(self) -> Path:
        """HAProxy's master CLI, as the packaged unit's `-S` gives the VM one."""
        return self.workdir / MASTER_SOCKET

    def start(self, timeout: float = 30.0) -> None:
        """Start every web server, then HAProxy, and wait until HAProxy sees every server UP."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cfg_path.write_text(self.lb.cfg_text, encoding="utf-8")
        for index in range(len(self.servers)):
            self.start_server(index)
        for index in range(len(self.servers)):
            self.wait_server_ready(index, timeout)
        self.start_haproxy()
        self.wait_listening(self.lb.host, self.lb.port, timeout, "haproxy")
        self.progress(f"haproxy listening on {self.lb.host}:{self.lb.port}, waiting for every server to be UP")
        if self.wait_states(lambda states: all(states.get(s.name) == "UP" for s in self.servers), timeout) is None:
            raise RuntimeError(f"not every server became UP within {timeout:.0f} s: {self.server_states()}")

    def _spawn(self, key: str, argv: Sequence[str], env: Mapping[str, str], cwd: Path | None) -> None:
        if self._watchdog is None:
            # Before the first process: a kill -9 of this process must not leave any of them behind.
            self._watchdog = Watchdog()
            if self.disposable_workdir:
                self._watchdog.tell(f"dir {self.workdir}")
        log = (self.workdir / f"{key}.log").open("ab")
        try:
            proc = subprocess.Popen(
                list(argv),
                cwd=str(cwd) if cwd else None,
                env={**os.environ, **env},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: signals reach master and workers together
            )
        finally:
            log.close()
        self._procs[key] = proc
        self.groups.append(proc.pid)
        self._watchdog.tell(f"group {proc.pid}")

    def _reaped(self, proc: subprocess.Popen[bytes]) -> None:
        """The group is gone: the guard must never signal its id again (it may be reused)."""
        if self._watchdog is not None and proc.returncode is not None:
            self._watchdog.tell(f"reaped {proc.pid}")

    def start_haproxy(self) -> None:
        """HAProxy in master-worker mode like the VM's unit (-W, master CLI), in the foreground (-db),
        logging to its stderr, i.e. workdir/haproxy.log."""
        # Run in the work directory, sockets named relative to it: AF_UNIX paths are limited to ~100 bytes.
        argv = [self.lb.haproxy_bin, "-W", "-db", "-f", str(self.cfg_path), "-S", f"unix@{MASTER_SOCKET}"]
        self._spawn("haproxy", argv, {}, self.workdir)

    def start_server(self, index: int) -> None:
        """(Re)start web server `index` in a new process group."""
        server = self.servers[index]
        self.progress(f"starting {server.name} on {server.host}:{server.port} ({server.message!r})")
        self._spawn(server.name, server.argv, server.env, server.cwd)
        self._frozen.discard(server.name)

    def wait_listening(self, host: str, port: int, timeout: float, what: str) -> None:
        """Wait until something accepts TCP connections on host:port (bounded)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_exited(what)
            with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
                return
            time.sleep(0.05)
        raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")

    def wait_server_ready(self, index: int, timeout: float = 30.0) -> None:
        """Wait until web server `index` answers GET / with its message, asked directly on loopback."""
        server = self.servers[index]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._raise_if_exited(server.name)
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(server.host, server.port, timeout=1.0)
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    if response.status == 200 and response.read().decode() == server.message:
                        return
                finally:
                    conn.close()
            time.sleep(0.05)
        raise RuntimeError(f"{server.name} did not answer on {server.host}:{server.port} within {timeout:.0f} s")

    def _raise_if_exited(self, key: str) -> None:
        proc = self._procs.get(key)
        if proc is not None and proc.poll() is not None:
            log = self.workdir / f"{key}.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{key} exited with status {proc.returncode}; its log ends with:\n{tail}")

    # --- faults ----------------------------------------------------------------------------------------------

    def signal_server(self, index: int, sig: signal.Signals) -> None:
        """Send `sig` to web server `index`'s whole process group (master and workers)."""
        name = self.servers[index].name
        proc = self._procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        if sig == signal.SIGSTOP:
            self._frozen.add(name)
        elif sig == signal.SIGCONT:
            self._frozen.discard(name)

    def server_group(self, index: int) -> int:
        """The process group of web server `index` (its master and workers), while it runs."""
        return self._procs[self.servers[index].name].pid

    def haproxy_group(self) -> int:
        """HAProxy's process group, while it runs."""
        return self._procs["haproxy"].pid

    def kill_server(self, index: int) -> None:
        """SIGKILL the whole server (like `docker stop -s KILL` or a VM power loss) and reap it."""
        self.signal_server(index, signal.SIGKILL)
        proc = self._procs[self.servers[index].name]
        proc.wait(timeout=10)
        self._reaped(proc)

    def stop_server(self, index: int, timeout: float = 15.0) -> None:
        """Graceful stop, like `docker stop`: SIGTERM to the master only, then wait for it to exit."""
        proc = self._procs[self.servers[index].name]
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill_server(index)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # any worker left behind
        self._reaped(proc)

    # --- changes ---------------------------------------------------------------------------------------

    @property
    def haproxy_pid(self) -> int:
        """HAProxy's master (what the VM's unit calls $MAINPID)."""
        return self._procs["haproxy"].pid

    def add_server(self, spec: ServerSpec, timeout: float = 30.0) -> int:
        """Start one more web server and wait until it answers directly; its index."""
        self.servers.append(spec)
        index = len(self.servers) - 1
        self.start_server(index)
        self.wait_server_ready(index, timeout)
        return index

    def remove_server(self, index: int) -> ServerSpec:
        """Stop web server `index` gracefully and forget it (its process group stays reaped by close())."""
        self.stop_server(index)
        return self.servers.pop(index)

    # --- observation -----------------------------------------------------------------------------------------

    def stats_csv(self, timeout: float = 2.0) -> str:
        """HAProxy's CSV stats (with credentials when the lab has some), over one kept-alive connection."""
        headers = {}
        if self.lb.stats_user is not None and self.lb.stats_password is not None:
            headers["Authorization"] = basic_auth_header(self.lb.stats_user, self.lb.stats_password)
        for attempt in range(2):
            if self._stats_conn is None:
                self._stats_conn = http.client.HTTPConnection(self.lb.host, self.lb.stats_port, timeout=timeout)
            try:
                self._stats_conn.request("GET", f"{self.lb.stats_uri};csv", headers=headers)
                response = self._stats_conn.getresponse()
                body = response.read().decode("utf-8", errors="replace")
                if response.will_close:
                    self.close_stats_connection()
                if response.status != 200:
                    raise RuntimeError(f"stats CSV answered {response.status}")
                return body
            except (OSError, http.client.HTTPException):
                self.close_stats_connection()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def close_stats_connection(self) -> None:
        if self._stats_conn is not None:
            self._stats_conn.close()
            self._stats_conn = None

    def server_states(self) -> dict[str, str]:
        """Server name -> HAProxy status, from the stats CSV."""
        return parse_stats_csv(self.stats_csv(), self.lb.backend)

    def wait_states(
        self, predicate: Callable[[dict[str, str]], bool], timeout: float, interval: float = 0.02
    ) -> float | None:
        """Poll the stats until predicate(states) holds; seconds it took, or None after `timeout` (bounded)."""
        start = time.monotonic()
        while True:
            with contextlib.suppress(OSError, http.client.HTTPException, RuntimeError, ValueError):
                if predicate(self.server_states()):
                    return time.monotonic() - start
            if time.monotonic() - start >= timeout:
                return None
            if "haproxy" in self._procs:
                self._raise_if_exited("haproxy")
            time.sleep(interval)

    # --- teardown --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process group this lab started: SIGCONT (frozen ones), SIGTERM, then SIGKILL after 3 s."""
        self.close_stats_connection()
        procs = list(self._procs.items())
        for _, proc in procs:
            for sig in (signal.SIGCONT, signal.SIGTERM):
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, sig)
        deadline = time.monotonic() + 3.0
        for _, proc in procs:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=max(0.01, deadline - time.monotonic()))
        for _, proc in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)  # whatever is left in the group, workers included
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=5)
            self._reaped(proc)
        # A worker whose master died first is reparented to init, which reaps it a moment later: wait
        # (bounded) until every group is empty, so nothing this lab started outlives close().
        deadline = time.monotonic() + 5.0
        for _, proc in procs:
            while time.monotonic() < deadline and _group_exists(proc.pid):
                time.sleep(0.02)
        self._procs.clear()
        self._frozen.clear()
        if self._watchdog is not None:
            self._watchdog.bye()
            self._watchdog = None
