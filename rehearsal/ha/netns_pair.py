"""The HA pair, for real, in network namespaces: two load balancers (HAProxy + keepalived), the web servers,
one client, on a private bridge in 198.18.0.0/15.

Why the plan is mapped rather than rewritten: `ha_plan()` gives the stack's plan the test network's
addresses (same names, messages, ports, balance, priorities), then haproxy.cfg and keepalived.conf come
from the very renderers `pulumi up` uses (render.haproxy_cfg.lab_settings, render.keepalived.pair_settings).
The only differences from the VMs: HAProxy runs unpackaged (no chroot, logs to stderr) and the track script
sits in the work directory. Every process runs inside its host's namespace; close() removes them all,
with the namespaces, veths and bridge (netns.TestNetwork).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import ipaddress
import secrets
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from plan.app_contract import SERVER_PORT, AppEnvironment
from plan.model import Host, LabConfig
from plan.tls import certificate_names
from rehearsal.ha.addresses import CLIENT_NUMBER, FIRST_WEB_NUMBER, LB_NUMBERS, VIP_NUMBER, ha_plan
from rehearsal.ha.arp import who_has
from rehearsal.ha.netns import INTERFACE, TestNetwork, run_in_namespace
from rehearsal.ha.watch import StateWatch, VipWatch
from rehearsal.load import peer_serial
from rehearsal.local_lab import quiet
from rehearsal.loopback import PlannedServer, web_server
from rehearsal.poll import poll_until
from rehearsal.processes import ProcessGroups
from rehearsal.stats import StatsClient
from rehearsal.tls import client_context, write_material
from render.haproxy_cfg import BACKEND, lab_settings, render_haproxy_cfg
from render.keepalived import CHECK_SCRIPT_FILE, KeepalivedSettings, pair_settings, render_keepalived_conf
from render.shipping import script_text

Progress = Callable[[str], None]
T = TypeVar("T")

CLIENT = "client"
LB_KEYS = ("lb1", "lb2")
_DRILL_TABLE = "haproxy_lab_drill"
_CUT_VRRP = f"""table inet {_DRILL_TABLE} {{
    chain out {{ type filter hook output priority 0; ip protocol vrrp drop; }}
    chain in {{ type filter hook input priority 0; ip protocol vrrp drop; }}
}}
"""


class HaPair:
    """The running pair. Use as a context manager: leaving it (normally, on error or Ctrl-C) removes everything."""

    def __init__(
        self,
        lab: LabConfig,
        workdir: Path,
        progress: Progress = quiet,
        *,
        web_servers: int | None = None,
        haproxy_bin: str | None = None,
        keepalived_bin: str | None = None,
        workers: int = 2,
        disposable_workdir: bool = False,
    ) -> None:
        self.haproxy_bin = haproxy_bin or shutil.which("haproxy") or ""
        self.keepalived_bin = keepalived_bin or shutil.which("keepalived") or ""
        if not self.haproxy_bin:
            raise RuntimeError("haproxy is not on PATH (apt-get install haproxy)")
        if not self.keepalived_bin:
            raise RuntimeError("keepalived is not on PATH (apt-get install keepalived)")
        for tool, why in (("curl", "the track script's HTTP client"), ("nft", "the VRRP-cut drill")):
            if shutil.which(tool) is None:
                raise RuntimeError(f"{tool} is not on PATH ({why}): run tools/setup.sh")
        self.workdir = workdir
        self.progress = progress
        self.workers = workers
        self.processes = ProcessGroups(workdir, disposable_workdir=disposable_workdir)
        self.net = TestNetwork(undo_on_death=self.processes.undo_on_death)
        self.plan = ha_plan(lab, self.net.subnet, web_servers)
        self.vip: ipaddress.IPv4Address = self.net.subnet.network_address + VIP_NUMBER
        self.lb_hosts: dict[str, Host] = dict(zip(LB_KEYS, self.plan.load_balancers, strict=True))
        self.web_keys = [f"web{index + 1}" for index in range(len(self.plan.web_servers))]
        self.stats_user = self.plan.haproxy.stats_user
        self.stats_password = secrets.token_urlsafe(18)
        # The VMs' settings, unpackaged: no chroot or user switch, logs on stderr (the namespaces share our root).
        settings = dataclasses.replace(
            lab_settings(self.plan, self.stats_password), packaged=False, log_target="stderr"
        )
        # TLS on: one certificate for both, as the program's one LabCertificate (names: VIP, each LB, their FQDNs).
        self.ca_file: Path | None = None
        if settings.tls is not None:
            dns, ips = certificate_names(self.plan)
            self.ca_file, pem = write_material(workdir / "tls", list(dns), list(ips))
            settings = dataclasses.replace(settings, tls=dataclasses.replace(settings.tls, certificate=str(pem)))
        self.haproxy_cfg = render_haproxy_cfg(settings)
        pair = pair_settings(self.plan)
        self.keepalived: dict[str, KeepalivedSettings] = {
            key: dataclasses.replace(pair[host.name], check_script=str(self._dir(key) / CHECK_SCRIPT_FILE))
            for key, host in self.lb_hosts.items()
        }
        self.watch: VipWatch | None = None
        self.state_watch = StateWatch({key: self.workdir / f"{key}-keepalived.log" for key in LB_KEYS})

    # --- lifecycle -------------------------------------------------------------------------------------------

    def __enter__(self) -> HaPair:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _dir(self, key: str) -> Path:
        return self.workdir / key

    @property
    def messages(self) -> frozenset[str]:
        return frozenset(server.message for server in self.plan.web_servers)

    def name_of(self, key: str) -> str:
        """The plan's name of a load balancer key (lb1 -> HAPROXY1-SAM)."""
        return self.lb_hosts[key].name

    def start(self, timeout: float = 30.0) -> None:
        """Build the network, start the web servers, both HAProxys, then both keepalived; wait until one load
        balancer holds the VIP and the site answers through it."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        base = self.net.subnet.network_address
        for key, number in zip(LB_KEYS, LB_NUMBERS, strict=True):
            self.net.add_host(key, number)
        for index, key in enumerate(self.web_keys):
            self.net.add_host(key, FIRST_WEB_NUMBER + index)
        self.net.add_host(CLIENT, CLIENT_NUMBER)
        self.progress(
            f"test network {self.net.subnet} on bridge {self.net.bridge}: VIP {self.vip}, "
            f"{', '.join(f'{self.name_of(k)} {base + n}' for k, n in zip(LB_KEYS, LB_NUMBERS, strict=True))}"
        )
        for key in LB_KEYS:
            directory = self._dir(key)
            directory.mkdir(parents=True, exist_ok=True)
            (directory / "haproxy.cfg").write_text(self.haproxy_cfg, encoding="utf-8")
            (directory / "keepalived.conf").write_text(render_keepalived_conf(self.keepalived[key]), encoding="utf-8")
            script = directory / CHECK_SCRIPT_FILE
            script.write_text(script_text(CHECK_SCRIPT_FILE), encoding="utf-8")
            script.chmod(0o755)
        for index in range(len(self.web_keys)):
            self.start_web(index)
        for index in range(len(self.web_keys)):
            self.wait_web(index, timeout)
        for key in LB_KEYS:
            self.start_haproxy(key)
        for key in LB_KEYS:
            self.wait_all_up(key, timeout)
        self.watch = VipWatch(self.net, LB_KEYS, self.vip)
        # The first load balancer starts keepalived first, so it is the first master (on the VMs, whichever
        # comes up first is; nopreempt keeps it that way).
        self.start_keepalived(LB_KEYS[0])
        if poll_until(lambda: self.watch_holders() == [LB_KEYS[0]] and self.site_answers(), timeout) is None:
            raise RuntimeError(
                f"{self.name_of(LB_KEYS[0])} did not take the VIP within {timeout:.0f} s: {self.states()}"
            )
        self.start_keepalived(LB_KEYS[1])
        if poll_until(lambda: self.keepalived_state(LB_KEYS[1]) == "BACKUP", timeout) is None:
            raise RuntimeError(
                f"{self.name_of(LB_KEYS[1])} did not become BACKUP within {timeout:.0f} s: {self.states()}"
            )
        self.progress(f"{self.name_of(self.active())} holds the VIP; the site answers on http://{self.vip}/")

    # --- processes -------------------------------------------------------------------------------------------

    def _spawn(
        self, host: str, what: str, argv: list[str], env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        """Run argv inside the host's namespace under the rehearsal's runner; its log: workdir/<host>-<what>.log."""
        self.processes.spawn(f"{host}-{what}", self.net.exec_argv(host, argv), env, cwd)

    def start_web(self, index: int) -> None:
        server = self.plan.web_servers[index]
        spec = web_server(PlannedServer(server.name, server.message, str(server.ip)), SERVER_PORT, self.workers)
        trusted = ",".join(str(lb.ip) for lb in self.plan.load_balancers)
        env = {**spec.env, **AppEnvironment(message=server.message, trusted_proxies=trusted).as_env()}
        self._spawn(self.web_keys[index], "web", list(spec.argv), env=env, cwd=spec.cwd)

    def start_haproxy(self, key: str) -> None:
        self._spawn(key, "haproxy", [self.haproxy_bin, "-db", "-f", str(self._dir(key) / "haproxy.cfg")])

    def start_keepalived(self, key: str) -> None:
        directory = self._dir(key)
        self._spawn(
            key,
            "keepalived",
            [
                self.keepalived_bin,
                "--dont-fork",
                "--log-console",
                "--log-detail",
                "--no-syslog",
                "--vrrp",
                "--use-file",
                str(directory / "keepalived.conf"),
                "--pid",
                str(directory / "keepalived.pid"),
                "--vrrp_pid",
                str(directory / "vrrp.pid"),
            ],
        )

    def signal_group(self, key: str, what: str, sig: signal.Signals) -> None:
        """Send `sig` to a process's whole group (keepalived: its parent, VRRP child and running scripts)."""
        if sig == signal.SIGKILL:
            self.processes.kill(f"{key}-{what}")
        else:
            self.processes.signal(f"{key}-{what}", sig)

    def kill_haproxy(self, key: str) -> None:
        self.signal_group(key, "haproxy", signal.SIGKILL)

    def freeze(self, key: str) -> None:
        """SIGSTOP HAProxy and keepalived (the VIP stays configured on the frozen host's interface)."""
        for what in ("haproxy", "keepalived"):
            self.signal_group(key, what, signal.SIGSTOP)

    def thaw(self, key: str) -> None:
        for what in ("keepalived", "haproxy"):
            self.signal_group(key, what, signal.SIGCONT)

    def power_off(self, key: str) -> int:
        """Every process of the host killed, its link down: a VM whose power was cut. The number of processes."""
        self.net.link(key, up=False)
        for name in self.processes.names():
            if name.startswith(f"{key}-"):
                self.processes.signal(name, signal.SIGKILL)
        killed = self.net.kill_all(key)
        # Its memory is gone, and the VIP keepalived had added with it: a VM boots with its own address only.
        vip = f"{self.vip}/{self.net.subnet.prefixlen}"
        subprocess.run(
            ["ip", "-n", self.net.hosts[key].namespace, "addr", "del", vip, "dev", INTERFACE],
            capture_output=True,
            check=False,
            timeout=10,
        )
        return killed

    def power_on(self, key: str) -> None:
        """Link up, then HAProxy and keepalived start again, like a rebooting VM."""
        self.net.link(key, up=True)
        self.start_haproxy(key)
        self.start_keepalived(key)

    def cut_vrrp(self) -> None:
        """Drop VRRP (IP protocol 112) in and out of both load balancers, as a firewall mistake would; nothing else."""
        for key in LB_KEYS:
            self.net.nft(key, ruleset=_CUT_VRRP)

    def restore_vrrp(self) -> None:
        for key in LB_KEYS:
            self.net.nft(key, "delete", "table", "inet", _DRILL_TABLE, check=False)

    # --- observation -----------------------------------------------------------------------------------------

    def in_client(self, function: Callable[[], T]) -> T:
        return run_in_namespace(self.net.hosts[CLIENT].namespace, function)

    def _get(self, host: str, port: int, path: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
        def get() -> tuple[int, str]:
            conn = http.client.HTTPConnection(host, port, timeout=2)
            try:
                conn.request("GET", path, headers=headers or {})
                response = conn.getresponse()
                return response.status, response.read().decode("utf-8", errors="replace")
            finally:
                conn.close()

        return self.in_client(get)

    def site_answers(self) -> bool:
        with contextlib.suppress(OSError, http.client.HTTPException):
            status, body = self._get(str(self.vip), self.plan.haproxy.frontend_port, "/")
            return status == 200 and body in self.messages
        return False

    def server_states(self, key: str) -> dict[str, str]:
        """The web servers' status on one load balancer's own stats page (asked on its own address)."""
        ip, port = str(self.lb_hosts[key].ip), self.plan.haproxy.stats_port
        stats = StatsClient(ip, port, "/stats", self.stats_user, self.stats_password, ca_file=self.ca_file)
        try:
            return self.in_client(lambda: stats.states(BACKEND))
        finally:
            stats.close()

    def served_serials(self) -> dict[str, str]:
        """Address -> the serial of the certificate HTTPS shows there (verified against the lab CA), asked from the
        client: the virtual IP, then each load balancer's own address."""
        if self.ca_file is None or self.plan.tls is None:
            raise RuntimeError("this pair does not serve HTTPS")
        ca_file, port = self.ca_file, self.plan.tls.https_port

        def serial(ip: str) -> str:
            with (
                socket.create_connection((ip, port), timeout=5) as raw,
                client_context(ca_file).wrap_socket(raw, server_hostname=ip) as tls,
            ):
                return peer_serial(tls)

        addresses = [str(self.vip), *(str(host.ip) for host in self.lb_hosts.values())]
        return {ip: self.in_client(lambda ip=ip: serial(ip)) for ip in addresses}  # type: ignore[misc]

    def wait_web(self, index: int, timeout: float) -> None:
        server = self.plan.web_servers[index]

        def ready() -> bool:
            return self._get(str(server.ip), SERVER_PORT, "/") == (200, server.message)

        if poll_until(ready, timeout, not_yet=(OSError, http.client.HTTPException)) is None:
            raise RuntimeError(f"{server.name} did not answer on {server.ip}:{SERVER_PORT} within {timeout:.0f} s")

    def wait_all_up(self, key: str, timeout: float) -> None:
        def all_up() -> bool:
            states = self.server_states(key)
            return all(states.get(server.name) == "UP" for server in self.plan.web_servers)

        not_yet = (OSError, http.client.HTTPException, RuntimeError, ValueError)
        if poll_until(all_up, timeout, not_yet=not_yet) is None:
            raise RuntimeError(f"{self.name_of(key)} does not see every web server UP within {timeout:.0f} s")

    @property
    def vip_watch(self) -> VipWatch:
        """Who holds the VIP, and since when (exists once start() has started keepalived)."""
        if self.watch is None:
            raise RuntimeError("the pair is not started")
        return self.watch

    def watch_holders(self) -> list[str]:
        return [] if self.watch is None else self.watch.holders()

    def active(self) -> str:
        """The load balancer holding the VIP (the first one if both do)."""
        holders = self.watch_holders()
        if not holders:
            raise RuntimeError("no load balancer holds the VIP")
        return holders[0]

    def other(self, key: str) -> str:
        return LB_KEYS[1] if key == LB_KEYS[0] else LB_KEYS[0]

    def keepalived_state(self, key: str) -> str:
        """keepalived's last state (MASTER, BACKUP, FAULT...) from its own log; '?' before its first."""
        self.state_watch.poll()
        return self.state_watch.state(key)

    def states(self) -> str:
        holders = self.watch_holders()
        return ", ".join(
            f"{self.name_of(k)} {self.keepalived_state(k)}{' (VIP)' if k in holders else ''}" for k in LB_KEYS
        )

    def arp_answers(self) -> dict[str, str]:
        """Who answers ARP for the VIP, seen from the client: MAC -> load balancer name ('?' if unknown)."""
        client = self.net.hosts[CLIENT]
        macs = self.in_client(lambda: who_has(self.vip, INTERFACE, client.address))
        owners = {self.lb_mac(key): self.name_of(key) for key in LB_KEYS}
        return {mac: owners.get(mac, "?") for mac in sorted(macs)}

    def lb_mac(self, key: str) -> str:
        result = subprocess.run(
            ["ip", "-n", self.net.hosts[key].namespace, "-br", "link", "show", INTERFACE],
            capture_output=True,
            text=True,
            check=False,
            timeout=10,
        )
        fields = result.stdout.split()
        return fields[2] if len(fields) > 2 else "?"

    # --- teardown --------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop the watch, kill every process of every namespace, remove the namespaces, veths and bridge."""
        self.state_watch.stop()
        if self.watch is not None:
            self.watch.stop()
        for name in self.processes.names():
            self.processes.signal(name, signal.SIGCONT)
        self.net.close()  # every process of every namespace killed, then the namespaces, veths and bridge
        self.processes.close()  # reaps them
