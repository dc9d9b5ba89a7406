"""A WSGI app whose /slow takes a second, for the graceful-stop test of serve.py's settings.

/count answers at once with how many /slow requests are in progress, so the test sends SIGTERM only
once both are in flight (no sleep-and-hope).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

_lock = threading.Lock()
_in_flight = 0


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    """GET /slow: 1 s then "done"; anything else: the number of /slow requests in progress."""
    global _in_flight
    if environ.get("PATH_INFO") == "/slow":
        with _lock:
            _in_flight += 1
        try:
            time.sleep(1.0)
        finally:
            with _lock:
                _in_flight -= 1
        body = b"done"
    else:
        with _lock:
            body = str(_in_flight).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
