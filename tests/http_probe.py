"""One HTTP GET for tests, retried (bounded) while the server under test is still starting to listen."""

from __future__ import annotations

import http.client
import time
from collections.abc import Mapping


def get_when_listening(
    host: str,
    port: int,
    path: str,
    *,
    headers: Mapping[str, str] | None = None,
    source: str | None = None,
    wait: float = 10.0,
) -> tuple[int, str]:
    """(status, body) of GET path; a refused connection is retried for up to `wait` seconds, then raised."""
    deadline = time.monotonic() + wait
    while True:
        conn = http.client.HTTPConnection(host, port, timeout=5, source_address=None if source is None else (source, 0))
        try:
            conn.request("GET", path, headers=dict(headers or {}))
            response = conn.getresponse()
            return response.status, response.read().decode(errors="replace")
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)
        finally:
            conn.close()
