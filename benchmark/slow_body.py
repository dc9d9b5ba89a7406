"""Slow request bodies straight at one web server: does it still answer everyone else?

Why at the server and not through HAProxy: HAProxy can shield the servers (buffering bodies), but a
server must not fall over by itself when clients send headers and a few bytes of a long body, then
stall (a slow upload, a stuck client, a slowloris). A sync worker reads that body until its timeout.
"""

from __future__ import annotations

import contextlib
import http.client
import socket
import time
from dataclasses import dataclass

CLAIMED_LENGTH = 100_000


@dataclass(frozen=True)
class SlowBodyResult:
    """How many stalled uploads were held open, and how many normal GETs were answered meanwhile."""

    stalled: int
    probes: int
    answered: int

    @property
    def passed(self) -> bool:
        return self.answered == self.probes


def slow_body_drill(host: str, port: int, *, stalled: int = 50, probes: int = 5, limit: float = 3.0) -> SlowBodyResult:
    """Open `stalled` connections that each send a POST head claiming a 100,000-byte body and 3 bytes of
    it, then go silent; then send `probes` GETs, one at a time, each given `limit` seconds."""
    head = (
        f"POST / HTTP/1.1\r\nHost: {host}\r\nContent-Type: text/plain\r\nContent-Length: {CLAIMED_LENGTH}\r\n\r\nabc"
    ).encode()
    held: list[socket.socket] = []
    answered = 0
    try:
        for _ in range(stalled):
            sock = socket.create_connection((host, port), timeout=limit)
            held.append(sock)
            sock.sendall(head)
        time.sleep(0.5)  # let the server start on every stalled request
        for _ in range(probes):
            conn = http.client.HTTPConnection(host, port, timeout=limit)
            with contextlib.suppress(OSError, http.client.HTTPException):
                conn.request("GET", "/")
                response = conn.getresponse()
                response.read()
                answered += response.status == 200
            conn.close()
    finally:
        for sock in held:
            sock.close()
    return SlowBodyResult(stalled=len(held), probes=probes, answered=answered)
