"""The one poll helper of the rehearsal: wait, bounded, until a condition holds, and say how long it took.

Why one: every wait on HAProxy's, keepalived's or a web server's real state (never a fixed sleep) has the
same shape: a predicate, a timeout, a short interval; a predicate that cannot answer yet (a socket not
listening, a page not served) counts as "not yet".
"""

from __future__ import annotations

import time
from collections.abc import Callable

NOT_YET: tuple[type[BaseException], ...] = ()


def poll_until(
    predicate: Callable[[], bool],
    timeout: float,
    interval: float = 0.02,
    *,
    not_yet: tuple[type[BaseException], ...] = NOT_YET,
    between: Callable[[], None] | None = None,
) -> float | None:
    """Call `predicate` until it holds: the seconds it took, or None after `timeout`. An exception listed in
    `not_yet` counts as False; `between` runs after each miss (e.g. to raise if the process died)."""
    start = time.monotonic()
    while True:
        try:
            if predicate():
                return time.monotonic() - start
        except not_yet:
            pass
        if time.monotonic() - start >= timeout:
            return None
        if between is not None:
            between()
        time.sleep(interval)
