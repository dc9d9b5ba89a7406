"""The end-to-end run's load client: GETs to the load balancer until SIGTERM, then one JSON line of counts.

Run inside the client's network namespace on the guests' bridge (e2e/traffic.py starts it there), so its
requests reach HAProxy as a machine's on the lab network would. A request fails as the rehearsal's drills
define it (rehearsal/load.py): an error, a status other than 200, or no complete answer within 5 s. Bodies
are not judged: the message changes during the run's day-2 steps. Each connection paces itself (PACE_S
between requests): enough to see any failure of a rollout, without taking the 2-core machine from the guests.

    python -m e2e.load_client HOST PORT [CONCURRENCY]
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections import Counter

from rehearsal.load import FAIL_AFTER, Outcome, requests_on_one_connection

PACE_S = 0.01  # at most ~100 requests a second per connection
MAX_LISTED = 100_000  # failed requests listed with their times (those past it are judged as outside every window)


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    concurrency = int(argv[2]) if len(argv) > 2 else 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def more() -> bool:
        return not stop.wait(PACE_S)

    per_thread: list[list[Outcome]] = [[] for _ in range(concurrency)]
    threads = [
        threading.Thread(target=requests_on_one_connection, args=(host, port, "/", (), FAIL_AFTER, more, outcomes))
        for outcomes in per_thread
    ]
    for thread in threads:
        thread.start()
    print("started", flush=True)
    for thread in threads:
        thread.join()
    outcomes = [outcome for chunk in per_thread for outcome in chunk]
    failed = [outcome for outcome in outcomes if not outcome.ok]
    answered = Counter(outcome.body.strip() for outcome in outcomes if outcome.ok)
    print(
        json.dumps(
            {
                "total": len(outcomes),
                "failed": len(failed),
                "errors": dict(Counter(outcome.error for outcome in failed).most_common(4)),
                "answered": dict(answered.most_common(8)),
                "slowest_s": round(max((outcome.seconds for outcome in outcomes), default=0.0), 3),
                # When each failed request started and ended (time.monotonic, the same clock in every process
                # of the machine): the run places them against the VIP's moves and the VMs' windows.
                "failures": [
                    [round(o.start, 3), round(o.end, 3), o.error] for o in sorted(failed, key=lambda o: o.start)
                ][:MAX_LISTED],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
