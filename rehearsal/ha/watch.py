"""Timestamped observers of the pair: who holds the virtual IP (seen from inside each namespace) and
which state each keepalived entered (from its log). The drills read their events to time every move."""

from __future__ import annotations

import contextlib
import ipaddress
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rehearsal.ha.netns import TestNetwork, run_in_namespace

_STATE = re.compile(r"\(haproxy_lab\) entering (\w+) state", re.IGNORECASE)


@dataclass
class VipEvent:
    """The virtual IP appeared on (held=True) or left (held=False) a load balancer, at time.monotonic() `at`."""

    at: float
    lb: str
    held: bool


class VipWatch:
    """One thread per load balancer, inside its namespace, noticing within ~5 ms when it gains or loses the VIP
    (binding a socket to an address only works where the address is configured)."""

    def __init__(self, net: TestNetwork, lbs: tuple[str, ...], vip: ipaddress.IPv4Address) -> None:
        self.events: list[VipEvent] = []
        self._held: dict[str, bool] = dict.fromkeys(lbs, False)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(net, lb, vip), name=f"vip-watch-{lb}", daemon=True) for lb in lbs
        ]
        for thread in self._threads:
            thread.start()

    def _watch(self, net: TestNetwork, lb: str, vip: ipaddress.IPv4Address) -> None:
        def loop() -> None:
            import socket

            while not self._stop.is_set():
                with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                    try:
                        sock.bind((str(vip), 0))
                        held = True
                    except OSError:
                        held = False
                with self._lock:
                    if held != self._held[lb]:
                        self._held[lb] = held
                        self.events.append(VipEvent(time.monotonic(), lb, held))
                self._stop.wait(0.005)

        with contextlib.suppress(OSError):  # the namespace went away: close() is running
            run_in_namespace(net.hosts[lb].namespace, loop)

    def holders(self) -> list[str]:
        """The load balancers holding the VIP right now."""
        with self._lock:
            return [lb for lb, held in self._held.items() if held]

    def first(self, lb: str, held: bool, after: float) -> float | None:
        """When `lb` first gained (held=True) or lost the VIP at or after `after`; None if it did not."""
        with self._lock:
            return next((e.at for e in self.events if e.lb == lb and e.held == held and e.at >= after), None)

    def moves_between(self, start: float, end: float) -> list[VipEvent]:
        """Every change of holder between two moments."""
        with self._lock:
            return [e for e in self.events if start <= e.at <= end]

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=2)


@dataclass
class StateEvent:
    """keepalived on `lb` entered `state` (MASTER, BACKUP, FAULT...), seen at time.monotonic() `at`."""

    at: float
    lb: str
    state: str


class StateWatch:
    """Follows each load balancer's keepalived log (every 20 ms) and timestamps its state changes."""

    def __init__(self, logs: dict[str, Path]) -> None:
        self.events: list[StateEvent] = []
        self._logs = logs
        self._offsets: dict[str, int] = dict.fromkeys(logs, 0)
        self._partial: dict[str, str] = dict.fromkeys(logs, "")
        self._lock = threading.Lock()
        self._poll_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="keepalived-states", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.poll()
            self._stop.wait(0.02)

    def poll(self) -> None:
        with self._poll_lock:
            self._poll()

    def _poll(self) -> None:
        for lb, log in self._logs.items():
            try:
                with log.open("rb") as handle:
                    handle.seek(self._offsets[lb])
                    chunk = handle.read()
            except OSError:
                continue
            if not chunk:
                continue
            now = time.monotonic()
            with self._lock:
                self._offsets[lb] += len(chunk)
                text = self._partial[lb] + chunk.decode("utf-8", errors="replace")
                *lines, self._partial[lb] = text.split("\n")
                for line in lines:
                    match = _STATE.search(line)
                    if match:
                        self.events.append(StateEvent(now, lb, match.group(1).upper()))

    def state(self, lb: str) -> str:
        """The last state seen ('?' before the first)."""
        with self._lock:
            return next((e.state for e in reversed(self.events) if e.lb == lb), "?")

    def first(self, lb: str, state: str, after: float) -> float | None:
        """When `lb` first entered `state` at or after `after`."""
        with self._lock:
            return next((e.at for e in self.events if e.lb == lb and e.state == state and e.at >= after), None)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
