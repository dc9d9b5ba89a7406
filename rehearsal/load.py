"""A bounded concurrent HTTP load generator: threads with kept-alive http.client connections.

Why threads + http.client: cheap enough on 2 cores to keep 16-32 requests in flight, and every request
is judged exactly as the drills define failure: an error, a status other than 200, an unexpected or
truncated body, or no complete answer within the time limit. Always bounded in time and in count.
"""

from __future__ import annotations

import http.client
import itertools
import ssl
import threading
import time
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass

from cryptography import x509

FAIL_AFTER = 5.0  # seconds: an answer slower than this counts as failed


@dataclass(frozen=True)
class Outcome:
    """One request: when it started and ended (time.monotonic), whether it succeeded, and why not."""

    start: float
    end: float
    ok: bool
    body: str
    error: str
    serial: str = ""
    """Over HTTPS: the serial of the certificate this request's connection was shown (upper-case hex)."""

    @property
    def seconds(self) -> float:
        return self.end - self.start


@dataclass(frozen=True)
class LoadResult:
    """Every outcome of one load run, with the helpers the drills need."""

    outcomes: Sequence[Outcome]
    started: float
    finished: float

    @property
    def total(self) -> int:
        return len(self.outcomes)

    @property
    def failed(self) -> list[Outcome]:
        return [outcome for outcome in self.outcomes if not outcome.ok]

    def failed_started_after(self, moment: float) -> list[Outcome]:
        """Failures among requests sent at or after `moment` (e.g. the fault)."""
        return [outcome for outcome in self.outcomes if not outcome.ok and outcome.start >= moment]

    @property
    def slowest(self) -> float:
        return max((outcome.seconds for outcome in self.outcomes), default=0.0)

    @property
    def ok_per_second(self) -> float:
        elapsed = self.finished - self.started
        return sum(1 for outcome in self.outcomes if outcome.ok) / elapsed if elapsed > 0 else 0.0

    def error_summary(self, limit: int = 3) -> str:
        """The most frequent failure reasons, e.g. "503 x4, timeout x1"."""
        counts: dict[str, int] = {}
        for outcome in self.failed:
            counts[outcome.error] = counts.get(outcome.error, 0) + 1
        ranked = sorted(counts.items(), key=lambda item: -item[1])[:limit]
        return ", ".join(f"{error} x{count}" for error, count in ranked)


def one_request(
    conn: http.client.HTTPConnection, path: str, expected: Collection[str], limit: float
) -> tuple[Outcome, bool]:
    """Send one GET on `conn`; the outcome, and whether the connection can be reused."""
    start = time.monotonic()
    body = serial = ""
    try:
        conn.request("GET", path)
        if isinstance(conn.sock, ssl.SSLSocket):
            serial = peer_serial(conn.sock)
        response = conn.getresponse()
        raw = response.read()  # raises IncompleteRead on a truncated body
        body = raw.decode("utf-8", errors="replace")
        reusable = not response.will_close
        if response.status != 200:
            error = f"HTTP {response.status}"
        elif expected and body not in expected:
            error = "unexpected body"
        else:
            error = ""
    except TimeoutError:
        error, reusable = "timeout", False
    except (OSError, http.client.HTTPException) as exc:
        error, reusable = type(exc).__name__, False
    end = time.monotonic()
    if not error and end - start > limit:
        error = "too slow"
    return Outcome(start, end, not error, body, error, serial), reusable


def peer_serial(sock: ssl.SSLSocket) -> str:
    """The serial of the certificate the server showed on `sock` (upper-case hex, as `show ssl cert` prints it)."""
    return f"{x509.load_der_x509_certificate(sock.getpeercert(binary_form=True) or b'').serial_number:X}"


def connect(
    host: str, port: int, limit: float, address: tuple[str, int] | None, context: ssl.SSLContext | None
) -> http.client.HTTPConnection:
    """A plain HTTP connection, or HTTPS verifying the server with `context`."""
    if context is None:
        return http.client.HTTPConnection(host, port, timeout=limit, source_address=address)
    return http.client.HTTPSConnection(host, port, timeout=limit, source_address=address, context=context)


def requests_on_one_connection(
    host: str,
    port: int,
    path: str,
    expected: Collection[str],
    limit: float,
    more: Callable[[], bool],
    outcomes: list[Outcome],
    source: str | None = None,
    context: ssl.SSLContext | None = None,
    fresh: bool = False,
) -> None:
    """GET `path` while `more()` says so, on one kept-alive connection (from `source` if given, e.g. another
    loopback address), reconnecting after a failure; over HTTPS with `context`; `fresh`: a new connection (a
    full handshake) for every request."""
    conn: http.client.HTTPConnection | None = None
    address = None if source is None else (source, 0)
    try:
        while more():
            if conn is None:
                conn = connect(host, port, limit, address, context)
            outcome, reusable = one_request(conn, path, expected, limit)
            outcomes.append(outcome)
            if fresh or not reusable:
                conn.close()
                conn = None
    finally:
        if conn is not None:
            conn.close()


def run_load(
    host: str,
    port: int,
    *,
    concurrency: int,
    seconds: float,
    max_requests: int = 1_000_000,
    expected: Collection[str] = (),
    path: str = "/",
    limit: float = FAIL_AFTER,
    stop: threading.Event | None = None,
    context: ssl.SSLContext | None = None,
    fresh: bool = False,
) -> LoadResult:
    """`concurrency` threads send GETs back to back for `seconds` (and at most `max_requests` in all), or
    until `stop` is set; over HTTPS with `context` (`fresh`: a new handshake per request)."""
    if concurrency < 1 or seconds <= 0:
        raise ValueError("concurrency must be >= 1 and seconds > 0")
    tickets = itertools.count()
    barrier = threading.Barrier(concurrency + 1)
    per_thread: list[list[Outcome]] = [[] for _ in range(concurrency)]
    deadline_box: list[float] = []

    def worker(outcomes: list[Outcome]) -> None:
        barrier.wait()
        deadline = deadline_box[0]
        requests_on_one_connection(
            host,
            port,
            path,
            expected,
            limit,
            lambda: time.monotonic() < deadline and not (stop and stop.is_set()) and next(tickets) < max_requests,
            outcomes,
            context=context,
            fresh=fresh,
        )

    threads = [
        threading.Thread(target=worker, args=(outcomes,), name=f"load-{index}", daemon=True)
        for index, outcomes in enumerate(per_thread)
    ]
    for thread in threads:
        thread.start()
    started = time.monotonic()
    deadline_box.append(started + seconds)
    barrier.wait()
    for thread in threads:
        thread.join(timeout=seconds + 3 * limit + 5)  # a request never lasts much past `limit`
    finished = time.monotonic()
    outcomes = sorted((o for chunk in per_thread for o in chunk), key=lambda o: o.start)
    return LoadResult(outcomes, started, finished)


def sequential(
    host: str, port: int, count: int, expected: Collection[str] = (), source: str | None = None
) -> list[Outcome]:
    """`count` requests one after the other on one kept-alive connection (reconnecting after a failure)."""
    outcomes: list[Outcome] = []
    remaining = iter(range(count))
    requests_on_one_connection(
        host, port, "/", expected, FAIL_AFTER, lambda: next(remaining, None) is not None, outcomes, source
    )
    return outcomes
