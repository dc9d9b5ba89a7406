"""./tools/e2e's placement of failed requests during a rolling change (e2e/rolling_watch.py): a failure counts
as the load balancers' only if it started around a VIP move (a pair) or while the load balancer was out."""

from __future__ import annotations

from e2e.rolling_watch import BEFORE_S, GRACE_S, Window, allowed_windows, judge_failures


def test_failures_around_a_move_are_the_load_balancers_and_the_others_are_not() -> None:
    windows = allowed_windows([Window(100.0, 100.2), Window(200.0, 200.0)])
    assert windows == [Window(100.0 - BEFORE_S, 100.2 + GRACE_S), Window(200.0 - BEFORE_S, 200.0 + GRACE_S)]
    failures = [
        [99.6, 99.7],  # just before the first poll that saw the VIP unheld
        [101.1, 101.2],  # within the second after it was held again
        [101.3, 101.4],  # more than a second after: a web server out in service, a drain skipped...
        [150.0, 150.1],  # far from any move
        [200.9, 201.0],  # a move seen between two polls
    ]
    assert judge_failures(windows, failures) == (3, 2)


def test_a_window_never_closed_allows_failures_to_the_end() -> None:
    """A load balancer still out when the change ended (the row then fails on its own verdict)."""
    assert judge_failures(allowed_windows([Window(10.0)]), [[10.0, 11.0], [500.0, 501.0], [9.0, 9.1]]) == (2, 1)


def test_no_window_no_failure_allowed() -> None:
    assert judge_failures(allowed_windows([]), [[1.0, 2.0]]) == (0, 1)
    assert judge_failures([], []) == (0, 0)
