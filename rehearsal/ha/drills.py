"""The HA pair's five drills, each under the 16-client keep-alive load of rehearsal.load, with figures.

Execution order (each starts from the state the previous one left): the active's HAProxy is killed; the
new active is powered off; the powered-off one comes back (no flap); the active is frozen (then thawed);
VRRP between the two is cut, then restored (split brain). A request fails as rehearsal.load defines it;
"after 1 s" counts failures among requests started 1 s or more after the fault, "lost" those started
before it (in flight on the dead load balancer, which no one can save).
"""

from __future__ import annotations

import contextlib
import dataclasses
import http.client
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rehearsal.ha.netns_pair import HaPair
from rehearsal.load import LoadResult, run_load
from rehearsal.poll import poll_until
from rehearsal.progress import seconds as duration
from rehearsal.results import CheckResult

CONCURRENCY = 16
FAULT_AT = 2.0
GOAL_SECONDS = 1.0  # the standby answers within 1 s; nothing started 1 s after the fault fails
SETTLE_TIMEOUT = 15.0


@dataclass(frozen=True)
class HaDrill:
    """What one drill measured (seconds from the fault; None = did not happen) and its table row."""

    name: str
    passed: bool
    figures: str
    total: int
    failed: int
    failed_after_goal: int
    lost: int
    vip_moved_after: float | None = None
    first_answer_after: float | None = None

    def check(self) -> CheckResult:
        return CheckResult(self.name, self.passed, self.figures)


def under_load(
    pair: HaPair, seconds: float, actions: Sequence[tuple[float, Callable[[], object]]]
) -> tuple[LoadResult, list[float]]:
    """Run the load from the client's namespace for `seconds`; run each action at its offset. The load's
    result and the moment (time.monotonic) each action started."""
    box: list[LoadResult] = []
    errors: list[BaseException] = []
    port = pair.plan.haproxy.frontend_port

    def load() -> None:
        try:
            box.append(
                pair.in_client(
                    lambda: run_load(
                        str(pair.vip), port, concurrency=CONCURRENCY, seconds=seconds, expected=pair.messages
                    )
                )
            )
        except BaseException as error:  # re-raised below
            errors.append(error)

    thread = threading.Thread(target=load, name="ha-drill-load", daemon=True)
    begin = time.monotonic()
    thread.start()
    moments: list[float] = []
    for offset, action in actions:
        time.sleep(max(0.0, begin + offset - time.monotonic()))
        moments.append(time.monotonic())
        action()
    thread.join(timeout=seconds + 60)
    if errors:
        raise errors[0]
    if not box:
        raise RuntimeError("the load generator did not finish")
    return box[0], moments


class Prober:
    """A new client every 20 ms from the client's namespace: one fresh connection, GET /, 0.5 s at most.
    Probes overlap (each in its own thread), so one stuck on the dead load balancer never delays the next;
    unlike the load's 16 clients, their first answer after a fault is when the VIP really answers again."""

    def __init__(self, pair: HaPair) -> None:
        self.outcomes: list[tuple[float, float, bool]] = []
        self._stop = threading.Event()
        host, port = str(pair.vip), pair.plan.haproxy.frontend_port

        def probe() -> None:
            start = time.monotonic()
            ok = False
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn = http.client.HTTPConnection(host, port, timeout=0.5)
                try:
                    conn.request("GET", "/")
                    response = conn.getresponse()
                    ok = response.status == 200 and response.read().decode() in pair.messages
                finally:
                    conn.close()
            self.outcomes.append((start, time.monotonic(), ok))

        def loop() -> None:
            probes: list[threading.Thread] = []
            while not self._stop.is_set():
                probes = [thread for thread in probes if thread.is_alive()]
                if len(probes) < 32:  # bounded: 0.5 s timeout / 20 ms = 25 in flight at most
                    thread = threading.Thread(target=probe, name="vip-probe", daemon=True)
                    thread.start()  # started from inside the namespace: its socket lives there too
                    probes.append(thread)
                self._stop.wait(0.02)
            for thread in probes:
                thread.join(timeout=1)

        self._thread = threading.Thread(target=lambda: pair.in_client(loop), name="vip-prober", daemon=True)
        self._thread.start()

    def first_answer(self, after: float) -> float | None:
        """Seconds from `after` to the end of the first successful probe started at or after it."""
        ends = [end for start, end, ok in list(self.outcomes) if ok and start >= after]
        return min(ends) - after if ends else None

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def _counts(result: LoadResult, fault: float) -> tuple[int, int, int]:
    failed = len(result.failed)
    after_goal = len(result.failed_started_after(fault + GOAL_SECONDS))
    lost = sum(1 for o in result.failed if o.start < fault)
    return failed, after_goal, lost


def _load_figures(result: LoadResult, fault: float) -> str:
    failed, after_goal, lost = _counts(result, fault)
    text = f"{result.total} req, failed {failed} (lost in flight {lost}, started >= 1 s after {after_goal})"
    late = [o.start - fault for o in result.failed if o.start >= fault]
    if late:
        text += f", the last failed one started {max(late):.2f} s after"
    if result.failed:
        text += f"; errors: {result.error_summary()}"
    return text


def settle(pair: HaPair, timeout: float = SETTLE_TIMEOUT) -> str:
    """Wait for a steady pair: one holder of the VIP, the other keepalived BACKUP (bounded). The holder."""

    def steady() -> bool:
        holders = pair.watch_holders()
        return len(holders) == 1 and pair.keepalived_state(pair.other(holders[0])) == "BACKUP"

    if poll_until(steady, timeout) is None:
        raise RuntimeError(f"the pair did not settle within {timeout:.0f} s: {pair.states()}")
    return pair.active()


def _failover(
    pair: HaPair, name: str, seconds: float, fault: Callable[[str], object], verb: str
) -> tuple[HaDrill, str, str]:
    """Fault the active under load; the standby must answer within 1 s and nothing started after 1 s fail."""
    active = settle(pair)
    standby = pair.other(active)
    prober = Prober(pair)
    try:
        result, (fault_time,) = under_load(pair, seconds, [(FAULT_AT, lambda: fault(active))])
    finally:
        prober.stop()
    moved = pair.vip_watch.first(standby, True, fault_time)
    vip_after = None if moved is None else moved - fault_time
    first = prober.first_answer(fault_time)
    failed, after_goal, lost = _counts(result, fault_time)
    passed = (
        vip_after is not None
        and vip_after <= GOAL_SECONDS
        and first is not None
        and first <= GOAL_SECONDS
        and after_goal == 0
    )
    figures = (
        f"{pair.name_of(active)} {verb}: VIP on {pair.name_of(standby)} after {duration(vip_after)}, "
        f"a new client's first answer after {duration(first)}; {_load_figures(result, fault_time)}"
    )
    drill = HaDrill(name, passed, figures, result.total, failed, after_goal, lost, vip_after, first)
    return drill, active, standby


def haproxy_killed(pair: HaPair, seconds: float) -> HaDrill:
    """Drill 1: SIGKILL the active's HAProxy; its track script fails, it goes FAULT and hands over at once.
    Then HAProxy is started again there: that load balancer comes back as BACKUP and the VIP stays put."""
    drill, active, standby = _failover(pair, "haproxy killed", seconds, pair.kill_haproxy, "HAProxy SIGKILLed")
    restarted = time.monotonic()
    pair.start_haproxy(active)
    poll_until(lambda: pair.keepalived_state(active) == "BACKUP", SETTLE_TIMEOUT)
    entered = pair.state_watch.first(active, "BACKUP", restarted)
    back = None if entered is None else entered - restarted
    stayed = not pair.vip_watch.moves_between(restarted, time.monotonic()) and pair.watch_holders() == [standby]
    figures = (
        f"{drill.figures}; HAProxy restarted: {pair.name_of(active)} BACKUP after {duration(back)}, "
        f"VIP {'stayed' if stayed else 'MOVED BACK'}"
    )
    return dataclasses.replace(drill, passed=drill.passed and back is not None and stayed, figures=figures)


def powered_off(pair: HaPair, seconds: float) -> tuple[HaDrill, str]:
    """Drill 2: the active is powered off (every process of its namespace SIGKILLed, link down); the standby
    takes over when the adverts stop (master down: 3 x advert_int + skew). It stays off; returned for drill 4."""
    drill, active, _ = _failover(pair, "powered off", seconds, pair.power_off, "powered off")
    return drill, active


def comes_back(pair: HaPair, seconds: float, key: str) -> HaDrill:
    """Drill 4: the powered-off load balancer boots again under load: it must come back as BACKUP with no
    second switch (both BACKUP + nopreempt) and no failed request."""
    holder = settle_one_holder(pair)
    result, (boot,) = under_load(pair, seconds, [(FAULT_AT, lambda: pair.power_on(key))])
    back = poll_until(lambda: pair.keepalived_state(key) == "BACKUP", SETTLE_TIMEOUT)
    entered = pair.state_watch.first(key, "BACKUP", boot)
    back_after = None if entered is None else entered - boot
    moves = pair.vip_watch.moves_between(boot, time.monotonic())
    failed, after_goal, lost = _counts(result, boot)
    passed = failed == 0 and not moves and back is not None and pair.watch_holders() == [holder]
    figures = (
        f"{pair.name_of(key)} powered on: BACKUP after {duration(back_after)}, VIP "
        f"{'stayed on ' + pair.name_of(holder) if not moves else 'MOVED ' + str(len(moves)) + ' time(s)'}; "
        f"{_load_figures(result, boot)}"
    )
    return HaDrill("comes back", passed, figures, result.total, failed, after_goal, lost)


def settle_one_holder(pair: HaPair, timeout: float = SETTLE_TIMEOUT) -> str:
    """Wait until exactly one load balancer holds the VIP (the other may be off). The holder."""
    if poll_until(lambda: len(pair.watch_holders()) == 1, timeout) is None:
        raise RuntimeError(f"no single holder of the VIP within {timeout:.0f} s: {pair.states()}")
    return pair.active()


def frozen(pair: HaPair, seconds: float) -> HaDrill:
    """Drill 3: SIGSTOP the active's HAProxy and keepalived (the VIP stays on its interface, unannounced).
    The standby takes over when the adverts stop. After the load, the frozen one is thawed and watched
    (reported, not judged): its VRRP state machine resumes as MASTER; with the higher priority it takes
    the VIP back, unless its track script, frozen mid-run, times out first and puts it in FAULT."""
    drill, active, standby = _failover(pair, "frozen", seconds, pair.freeze, "frozen (SIGSTOP)")
    probe, (thawed,) = under_load(pair, 4.0, [(1.0, lambda: pair.thaw(active))])
    holder = settle(pair)
    if holder == active:
        # It never dropped the VIP while frozen: the switch back is when the standby lost it.
        left = pair.vip_watch.first(standby, False, thawed)
        thaw = (
            f"thawed: it took the VIP back after {duration(None if left is None else left - thawed)}, a second "
            f"switch ({len(probe.failed)} of {probe.total} req failed then)"
        )
    else:
        thaw = f"thawed: VIP stayed on {pair.name_of(standby)} ({len(probe.failed)} of {probe.total} req failed)"
    return dataclasses.replace(drill, figures=f"{drill.figures}; {thaw}")


def vrrp_cut(pair: HaPair, seconds: float, cut_for: float = 3.0) -> HaDrill:
    """Drill 5: VRRP dropped between the two (a firewall mistake): both become MASTER and both hold the VIP.
    Detected by the VIP on both and by two MAC addresses answering ARP for it; restored, the higher priority
    keeps it, re-announces it (vrrp_garp_lower_prio_repeat) and the other returns to BACKUP."""
    active = settle(pair)
    standby = pair.other(active)
    seen: dict[str, object] = {}

    def look() -> None:
        seen["holders"] = pair.watch_holders()
        seen["arp"] = pair.arp_answers()
        seen["states"] = pair.states()

    total = max(seconds, FAULT_AT + cut_for + 2.0)
    result, (cut, _, restored) = under_load(
        pair,
        total,
        [(FAULT_AT, pair.cut_vrrp), (FAULT_AT + cut_for - 0.5, look), (FAULT_AT + cut_for, pair.restore_vrrp)],
    )
    both = pair.vip_watch.first(standby, True, cut)
    both_after = None if both is None else both - cut
    holder = settle(pair)
    resolved = pair.vip_watch.first(pair.other(holder), False, restored)
    resolved_after = None if resolved is None else max(0.0, resolved - restored)
    arp = seen.get("arp", {})
    detected = isinstance(arp, dict) and len(arp) == 2 and len(seen.get("holders", [])) == 2  # type: ignore[arg-type]
    failed, after_goal, lost = _counts(result, cut)
    after_restore = len(result.failed_started_after(restored))
    macs = ", ".join(f"{mac} ({name})" for mac, name in arp.items()) if isinstance(arp, dict) else "?"
    figures = (
        f"VRRP cut: {pair.name_of(standby)} MASTER too after {duration(both_after)} "
        f"({seen.get('states', '?')}); ARP for the VIP answered by {macs}; restored after {cut_for:.0f} s: "
        f"one holder ({pair.name_of(holder)}) {duration(resolved_after)} later; {result.total} req, failed {failed} "
        f"({after_restore} of them after the restore); errors: {result.error_summary() or 'none'}"
    )
    passed = detected and resolved is not None
    return HaDrill("vrrp cut", passed, figures, result.total, failed, after_goal, lost, both_after)


def run_drills(pair: HaPair, seconds: float, progress: Callable[[str], None]) -> list[HaDrill]:
    """The five drills in order; an unexpected error becomes a failed row (the pair is then left as is)."""
    results: list[HaDrill] = []
    steps: list[tuple[str, Callable[[], HaDrill]]] = []
    off: list[str] = []

    def power() -> HaDrill:
        drill, key = powered_off(pair, seconds)
        off.append(key)
        return drill

    def back() -> HaDrill:
        if not off:
            raise RuntimeError("nothing was powered off")
        return comes_back(pair, seconds, off[0])

    steps = [
        ("haproxy killed", lambda: haproxy_killed(pair, seconds)),
        ("powered off", power),
        ("comes back", back),
        ("frozen", lambda: frozen(pair, seconds)),
        ("vrrp cut", lambda: vrrp_cut(pair, seconds)),
    ]
    for name, step in steps:
        progress(f"drill: {name}")
        try:
            results.append(step())
        except Exception as error:  # reported as a failed drill; later drills may fail for the same reason
            results.append(HaDrill(name, False, f"error: {error}", 0, 0, 0, 0))
        progress(f"  {results[-1].check().result}: {results[-1].figures}")
    return results
