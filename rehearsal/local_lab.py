"""Start, signal and stop a local lab: one HAProxy and N web-server processes, all on loopback; change it
(servers in and out, haproxy.cfg) through the same scripts the VMs run. Its processes run under the
rehearsal's one runner (rehearsal/processes.py): a process group each, every one gone after close().
"""

from __future__ import annotations

import http.client
import signal
import socket
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rehearsal.poll import poll_until
from rehearsal.processes import ProcessGroups
from rehearsal.stats import StatsClient
from render.haproxy_cfg import BACKEND, HaproxySettings

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
    backend: str = BACKEND
    settings: HaproxySettings | None = None  # what cfg_text was rendered from: drills render variants of it
    admin_socket: str | None = None  # the `stats socket` file, in HAProxy's working directory (the workdir)
    https_port: int | None = None  # TLS on: the frontend's HTTPS port (the stats port then speaks TLS only)
    ca_file: Path | None = None  # TLS on: the lab CA clients verify the site and the stats page against


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
        self.processes = ProcessGroups(workdir, disposable_workdir=disposable_workdir)
        self.stats = StatsClient(
            lb.host, lb.stats_port, lb.stats_uri, lb.stats_user, lb.stats_password, ca_file=lb.ca_file
        )

    # --- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> LocalLab:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    @property
    def groups(self) -> list[int]:
        """Every process group this lab ever started (tests prove they are gone)."""
        return self.processes.groups

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

    def start_haproxy(self) -> None:
        """HAProxy in master-worker mode like the VM's unit (-W, master CLI), in the foreground (-db),
        logging to its stderr, i.e. workdir/haproxy.log."""
        # Run in the work directory, sockets named relative to it: AF_UNIX paths are limited to ~100 bytes.
        argv = [self.lb.haproxy_bin, "-W", "-db", "-f", str(self.cfg_path), "-S", f"unix@{MASTER_SOCKET}"]
        self.processes.spawn("haproxy", argv, cwd=self.workdir)

    def start_server(self, index: int) -> None:
        """(Re)start web server `index` in a new process group."""
        server = self.servers[index]
        self.progress(f"starting {server.name} on {server.host}:{server.port} ({server.message!r})")
        self.processes.spawn(server.name, server.argv, server.env, server.cwd)

    def wait_listening(self, host: str, port: int, timeout: float, what: str) -> None:
        """Wait until something accepts TCP connections on host:port (bounded)."""

        def accepts() -> bool:
            with socket.create_connection((host, port), timeout=0.5):
                return True

        if poll_until(accepts, timeout, 0.05, not_yet=(OSError,), between=self._exited(what)) is None:
            raise RuntimeError(f"{what} did not listen on {host}:{port} within {timeout:.0f} s")

    def wait_server_ready(self, index: int, timeout: float = 30.0) -> None:
        """Wait until web server `index` answers GET / with its message, asked directly on loopback."""
        server = self.servers[index]

        def answers() -> bool:
            conn = http.client.HTTPConnection(server.host, server.port, timeout=1.0)
            try:
                conn.request("GET", "/")
                response = conn.getresponse()
                return response.status == 200 and response.read().decode() == server.message
            finally:
                conn.close()

        not_yet = (OSError, http.client.HTTPException)
        if poll_until(answers, timeout, 0.05, not_yet=not_yet, between=self._exited(server.name)) is None:
            raise RuntimeError(f"{server.name} did not answer on {server.host}:{server.port} within {timeout:.0f} s")

    def _exited(self, key: str) -> Callable[[], None]:
        return lambda: self.processes.raise_if_exited(key)

    # --- faults ----------------------------------------------------------------------------------------------

    def signal_server(self, index: int, sig: signal.Signals) -> None:
        """Send `sig` to web server `index`'s whole process group (master and workers)."""
        self.processes.signal(self.servers[index].name, sig)

    def server_group(self, index: int) -> int:
        """The process group of web server `index` (its master and workers), while it runs."""
        return self.processes.pid(self.servers[index].name)

    def haproxy_group(self) -> int:
        """HAProxy's process group, while it runs."""
        return self.processes.pid("haproxy")

    def kill_server(self, index: int) -> None:
        """SIGKILL the whole server (like `docker stop -s KILL` or a VM power loss) and reap it."""
        self.processes.kill(self.servers[index].name)

    def stop_server(self, index: int, timeout: float = 15.0) -> None:
        """Graceful stop, like `docker stop`: SIGTERM to the master only, then wait for it to exit."""
        self.processes.stop(self.servers[index].name, timeout)

    # --- changes ---------------------------------------------------------------------------------------

    @property
    def haproxy_pid(self) -> int:
        """HAProxy's master (what the VM's unit calls $MAINPID)."""
        return self.processes.pid("haproxy")

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
        return self.stats.csv(timeout)

    def close_stats_connection(self) -> None:
        self.stats.close()

    def server_states(self) -> dict[str, str]:
        """Server name -> HAProxy status, from the stats CSV."""
        return self.stats.states(self.lb.backend)

    def wait_states(
        self, predicate: Callable[[dict[str, str]], bool], timeout: float, interval: float = 0.02
    ) -> float | None:
        """Poll the stats until predicate(states) holds; seconds it took, or None after `timeout` (bounded)."""
        not_yet = (OSError, http.client.HTTPException, RuntimeError, ValueError)
        return poll_until(
            lambda: predicate(self.server_states()), timeout, interval, not_yet=not_yet, between=self._exited("haproxy")
        )

    # --- teardown --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop every process group this lab started (rehearsal/processes.py)."""
        self.stats.close()
        self.processes.close()
