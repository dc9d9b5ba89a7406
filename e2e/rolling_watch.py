"""What the load balancers did during a day-2 change that re-creates or reboots VMs (issue 17): which one
held the virtual IP when, and when each one's HAProxy was out (its guest down, or HAProxy not active), polled
inside the guests themselves (nsenter, no SSH) every POLL_S. The load client's failed requests are then placed
against these windows (`judge_failures`): in a pair, a failure is allowed only from the moment the VIP left a
holder to 1 s after another one held it; with one load balancer, only while that load balancer is out (to
1 s after its HAProxy is active again). Anything else (a web server replaced or rebooted in service, a drain
skipped) is a failure outside every window.
"""

from __future__ import annotations

import subprocess
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from e2e.lab import Lab

POLL_S = 0.1
GRACE_S = 1.0  # after the VIP is held again (or the load balancer serves again): failures still counted as its
BEFORE_S = 0.5  # before the first poll that saw the VIP gone (or the load balancer out): a poll's period and more
# Serving: HAProxy active and listening on the site's port (a re-created load balancer runs Debian's packaged
# haproxy.cfg, which listens on nothing, until apply-haproxy-cfg: it still goes until then).
PROBE = "ip -o -4 addr show; ss -Hltn sport = :{port} | grep -q . && systemctl is-active haproxy"


@dataclass
class Window:
    start: float
    end: float | None = None


@dataclass
class LoadBalancerWatch:
    """Polls each load balancer's guest; `moves`: the VIP's (lost, held again) times, `out`: per load balancer,
    when its HAProxy did not serve."""

    lab: Lab
    vip: str | None
    vmids: dict[str, int]  # load balancer name -> vmid
    port: int  # the site's port (HTTP)
    moves: list[Window] = field(default_factory=list)
    out: dict[str, list[Window]] = field(default_factory=dict)
    holders: list[tuple[float, tuple[str, ...]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)
        self._thread.start()

    def _probe(self, vmid: int) -> tuple[bool, bool]:
        """(holds the VIP, HAProxy active) inside this guest; (False, False) when it is not running."""
        guest = self.lab.machines.guests.get(vmid)
        if guest is None or not guest.running:
            return False, False
        try:
            result = guest.run(["sh", "-c", PROBE.format(port=self.port)], timeout_s=5)
        except (RuntimeError, OSError, subprocess.TimeoutExpired):  # a guest going down meanwhile
            return False, False
        lines = result.stdout.splitlines()
        holds = self.vip is not None and any(f" {self.vip}/" in line for line in lines)
        # "reloading": a graceful reload, HAProxy serves throughout
        return holds, bool(lines) and lines[-1].strip() in ("active", "reloading")

    def _watch(self) -> None:
        held: tuple[str, ...] | None = None
        while not self._stop.wait(POLL_S):
            now = time.monotonic()
            seen = {name: self._probe(vmid) for name, vmid in self.vmids.items()}
            for name, (_, active) in seen.items():
                windows = self.out.setdefault(name, [])
                if not active and (not windows or windows[-1].end is not None):
                    windows.append(Window(now))
                elif active and windows and windows[-1].end is None:
                    windows[-1].end = now
            if self.vip is None:
                continue
            holders = tuple(name for name, (holds, _) in seen.items() if holds)
            if holders != held:
                self.holders.append((now, holders))
                if held is not None and not holders and (not self.moves or self.moves[-1].end is not None):
                    self.moves.append(Window(now))  # the VIP left its holder
                elif holders and self.moves and self.moves[-1].end is None:
                    self.moves[-1].end = now  # held again
                elif held and holders and set(held) != set(holders):
                    self.moves.append(Window(now, now))  # moved between two polls
                held = holders

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def allowed(self) -> list[Window]:
        """The windows failed requests may start in: around the VIP's moves (a pair), or while a load balancer
        is out (one load balancer)."""
        return allowed_windows(self.moves if self.vip is not None else [w for ws in self.out.values() for w in ws])


def allowed_windows(seen: list[Window]) -> list[Window]:
    """Each window widened: from BEFORE_S before it was first seen to GRACE_S after it ended (never ended: to
    the end of the run)."""
    return [Window(w.start - BEFORE_S, (w.end if w.end is not None else float("inf")) + GRACE_S) for w in seen]


def judge_failures(windows: list[Window], failures: list[list[Any]]) -> tuple[int, int]:
    """(failed requests that started inside one of `windows`, those that started outside every one)."""
    outside = outside_failures(windows, failures)
    return len(failures) - len(outside), len(outside)


def outside_failures(windows: list[Window], failures: list[list[Any]]) -> list[list[Any]]:
    """The failed requests ([start, end, error...]) that started outside every one of `windows`."""
    return [f for f in failures if not any(w.start <= f[0] <= (w.end or f[0]) for w in windows)]


def explain(watch: LoadBalancerWatch, failures: list[list[Any]], since: float) -> str:
    """The first failures outside every window and the windows, in seconds since `since` (the load's start)."""
    outside = outside_failures(watch.allowed(), failures)[:5]
    if not outside:
        return ""
    shown = ", ".join(f"{f[0] - since:.1f}-{f[1] - since:.1f} {f[2] if len(f) > 2 else ''}".strip() for f in outside)
    windows = ", ".join(f"{w.start - since:.1f}-{(w.end or float('inf')) - since:.1f}" for w in watch.allowed())
    return f"; outside: {shown} (s since the load began; windows {windows or 'none'})"


def describe(watch: LoadBalancerWatch) -> str:
    """The VIP's moves (how long each one left the VIP unheld) or each load balancer's time out, for the row."""
    if watch.vip is not None:
        moves = [f"{(w.end - w.start):.1f}" if w.end is not None else "never held again" for w in watch.moves]
        return f"VIP moves {len(watch.moves)} (unheld s: {', '.join(moves) or '-'})"
    outs = [
        f"{name} out {(w.end - w.start):.1f} s" if w.end is not None else f"{name} still out"
        for name, windows in watch.out.items()
        for w in windows
    ]
    return "; ".join(outs) or "no load balancer out"
