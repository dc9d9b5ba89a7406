"""What each balance algorithm promises, as the rehearsal judges it from sequential requests.

Why: only roundrobin and static-rr rotate; judging `source` or `first` by rotation (or by the returning
server answering a single client) fails a valid plan. Each algorithm is held to its own promise:
- roundrobin, static-rr: strict rotation (judged in rehearsal.checks, which waits out the catch-up);
- source: each client address keeps its server, and the addresses spread over every server;
- first: every request goes to the first server in the list that is UP;
- leastconn, random: sequential requests reach every server.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rehearsal.load import sequential
from rehearsal.local_lab import LocalLab

ORDERED_BALANCES = ("roundrobin", "static-rr")
# Client addresses for `balance source` (HAProxy admits the whole loopback /8 in the rehearsal): with 32 of
# them, the chance that hashing leaves a server without any is below 1e-5 for 3 servers.
CLIENT_SOURCES = tuple(f"127.0.2.{i}" for i in range(1, 33))
REQUESTS_PER_SERVER = 10  # leastconn/random: 2 servers all missed by 20 random picks: 2e-6


@dataclass(frozen=True)
class Verdict:
    """Whether the lab kept the algorithm's promise, the answers seen, and the promise in words."""

    kept: bool
    answers: list[str]
    promise: str


def _answers(local_lab: LocalLab, count: int, source: str | None = None) -> tuple[list[str], bool]:
    outcomes = sequential(local_lab.lb.host, local_lab.lb.port, count, local_lab.messages, source=source)
    return [o.body if o.ok else f"<{o.error}>" for o in outcomes], all(o.ok for o in outcomes)


def _sticky_sources(local_lab: LocalLab, sources: Sequence[str]) -> Verdict:
    answers: list[str] = []
    kept = True
    for source in sources:
        pair, ok = _answers(local_lab, 2, source)
        kept = kept and ok and pair[0] == pair[1]
        answers.append(pair[0])
    served = {message for message in answers if message in local_lab.messages}
    kept = kept and served == set(local_lab.messages)
    promise = f"balance source: each of {len(sources)} client addresses kept its server, {len(served)} servers used"
    return Verdict(kept, answers, promise)


def keeps_promise(local_lab: LocalLab, balance: str) -> Verdict:
    """Send the requests that show `balance`'s promise (every server UP) and judge them.

    Not for the ordered algorithms, whose rotation rehearsal.checks judges.
    """
    n = len(local_lab.servers)
    if balance == "source":
        return _sticky_sources(local_lab, CLIENT_SOURCES)
    if balance == "first":
        first = local_lab.servers[0].message
        answers, ok = _answers(local_lab, max(6, 2 * n))
        return Verdict(ok and set(answers) == {first}, answers, f"balance first: every request to {first!r}")
    if balance in ORDERED_BALANCES:
        raise ValueError(f"balance {balance} is judged by its rotation")
    answers, ok = _answers(local_lab, REQUESTS_PER_SERVER * n)
    kept = ok and set(answers) == set(local_lab.messages)
    return Verdict(kept, answers, f"balance {balance}: every server answered within {len(answers)} requests")
