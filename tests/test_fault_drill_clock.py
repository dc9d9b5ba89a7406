"""The fault drills' clock: a request counts as started after the fault only once the signal has landed.

The full suite once saw a hang drill fail on one IncompleteRead: the drill took its timestamp before
sending SIGSTOP, and the load's 16 threads can hold the GIL in between, so a request started in that gap
was cut mid-answer and counted as sent after the fault. Here the signal lands 50 ms after it is asked for.
"""

from __future__ import annotations

import signal
import time
from types import SimpleNamespace
from typing import Any, cast

import pytest

from rehearsal import checks
from rehearsal.load import LoadResult, Outcome
from rehearsal.local_lab import LocalLab
from rehearsal.poll import poll_until

GIL_GAP = 0.05


class SlowSignalLab:
    """What fault_drill touches of a LocalLab, with a signal that lands GIL_GAP after it is asked for."""

    def __init__(self) -> None:
        self.servers = [SimpleNamespace(name="WEB1", message="Serveur 1")]
        self.messages = ["Serveur 1"]
        self.lb = SimpleNamespace(host="127.0.0.1", port=9, https_port=None, ca_file=None)
        self.landed: float | None = None

    def signal_server(self, index: int, sig: signal.Signals) -> None:
        time.sleep(GIL_GAP)
        if sig != signal.SIGCONT:
            self.landed = time.monotonic()

    def kill_server(self, index: int) -> None:
        self.signal_server(index, signal.SIGKILL)

    def start_server(self, index: int) -> None:
        pass

    def wait_states(self, predicate: Any, timeout: float, interval: float = 0.02) -> float:
        return 0.0


def drill(monkeypatch: pytest.MonkeyPatch, kind: str, failed_at: float) -> checks.DrillResult:
    """A drill whose load has one failure, started `failed_at` seconds after the signal landed."""
    lab = SlowSignalLab()

    def load(*_: object, **__: object) -> LoadResult:
        poll_until(lambda: lab.landed is not None, 5.0, 0.005)
        assert lab.landed is not None
        start = lab.landed + failed_at
        failure = Outcome(start=start, end=start + 0.01, ok=False, body="", error="IncompleteRead")
        return LoadResult([failure], lab.landed - 1.0, lab.landed + 1.0)

    monkeypatch.setattr(checks, "run_load", load)
    return checks.fault_drill(cast(LocalLab, lab), 0, kind, seconds=0.1, fault_at=0.0)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["crash", "hang"])
def test_a_request_cut_in_flight_is_not_counted_after_the_fault(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    # Fault: the timestamp taken before the signal (the old order) counts this one -> 1.
    result = drill(monkeypatch, kind, failed_at=-GIL_GAP / 2)
    assert (result.failed, result.failed_after_fault) == (1, 0)


@pytest.mark.parametrize("kind", ["crash", "hang"])
def test_a_request_sent_after_the_signal_still_counts(monkeypatch: pytest.MonkeyPatch, kind: str) -> None:
    result = drill(monkeypatch, kind, failed_at=0.001)
    assert result.failed_after_fault == 1
