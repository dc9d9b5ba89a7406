"""What the rehearsal and the benchmark share at their edges: progress lines, durations as text, and
turning SIGTERM/SIGHUP into the same clean stop as Ctrl-C."""

from __future__ import annotations

import signal
import time
from types import FrameType


def progress(message: str) -> None:
    """One timestamped progress line, flushed at once (the runs take minutes)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def seconds(value: float | None) -> str:
    """A duration for tables and figures; None means the event never happened."""
    return "never" if value is None else f"{value:.2f} s"


def _raise_on_signal(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def stop_like_ctrl_c() -> None:
    """SIGTERM/SIGHUP end the run like Ctrl-C, so every `finally` stops the processes it started."""
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_on_signal)
