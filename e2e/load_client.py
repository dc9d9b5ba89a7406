"""The end-to-end run's load client: GETs to the load balancer until SIGTERM, then one JSON line of counts.

Run inside the client's network namespace on the guests' bridge (e2e/traffic.py starts it there), so its
requests reach HAProxy as a machine's on the lab network would. A request fails as the rehearsal's drills
define it (rehearsal/load.py): an error, a status other than 200, or no complete answer within 5 s. Bodies
are not judged: the message changes during the run's day-2 steps.

    python -m e2e.load_client HOST PORT [CONCURRENCY]
"""

from __future__ import annotations

import json
import signal
import sys
import threading
from collections import Counter

from rehearsal.load import run_load

RUN_AT_MOST_S = 3600.0


def main(argv: list[str]) -> None:
    host, port = argv[0], int(argv[1])
    concurrency = int(argv[2]) if len(argv) > 2 else 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    print("started", flush=True)
    result = run_load(host, port, concurrency=concurrency, seconds=RUN_AT_MOST_S, stop=stop)
    errors = Counter(outcome.error for outcome in result.failed)
    answered = Counter(outcome.body.strip() for outcome in result.outcomes if outcome.ok)
    print(
        json.dumps(
            {
                "total": result.total,
                "failed": len(result.failed),
                "errors": dict(errors.most_common(4)),
                "answered": dict(answered.most_common(8)),
                "slowest_s": round(result.slowest, 3),
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
