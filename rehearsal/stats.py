"""HAProxy's stats page from Python: the Basic auth header, the CSV parsed per backend, and a client that keeps
one connection alive (the drills read the stats every 20 ms).

Why here: the loopback lab and the HA pair read the same page, on a loopback address or on a load
balancer's own address from inside the client's namespace.
"""

from __future__ import annotations

import base64
import csv
import http.client
import io
import ssl
from pathlib import Path


def basic_auth_header(user: str, password: str) -> str:
    """The Authorization header value for HTTP Basic (UTF-8, as HAProxy compares raw bytes)."""
    token = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
    return f"Basic {token}"


def stats_rows(text: str, backend: str) -> dict[str, dict[str, str]]:
    """Row name (each server, and BACKEND) -> every column, for one backend of HAProxy's CSV stats."""
    lines = text.splitlines()
    if not lines or not lines[0].startswith("# "):
        raise ValueError("not HAProxy CSV stats")
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    return {row["svname"]: row for row in reader if row.get("pxname") == backend and row.get("svname") != "FRONTEND"}


def parse_stats_csv(text: str, backend: str) -> dict[str, str]:
    """Server name -> status ('UP', 'DOWN', 'UP 1/2', 'no check'...) for one backend of HAProxy's CSV stats."""
    return {name: row["status"] for name, row in stats_rows(text, backend).items() if name != "BACKEND"}


class StatsClient:
    """GET <uri>;csv with the credentials (when given), over one kept-alive connection, reconnecting once; over
    TLS verified against `ca_file` when given (the stats port speaks TLS only when the lab's TLS is on)."""

    def __init__(
        self,
        host: str,
        port: int,
        uri: str = "/stats",
        user: str | None = None,
        password: str | None = None,
        *,
        ca_file: Path | None = None,
    ) -> None:
        self.host, self.port, self.uri = host, port, uri
        self.context = None if ca_file is None else ssl.create_default_context(cafile=str(ca_file))
        self.headers = {} if user is None or password is None else {"Authorization": basic_auth_header(user, password)}
        self._conn: http.client.HTTPConnection | None = None

    def csv(self, timeout: float = 2.0) -> str:
        for attempt in range(2):
            if self._conn is None:
                self._conn = (
                    http.client.HTTPConnection(self.host, self.port, timeout=timeout)
                    if self.context is None
                    else http.client.HTTPSConnection(self.host, self.port, timeout=timeout, context=self.context)
                )
            try:
                self._conn.request("GET", f"{self.uri};csv", headers=self.headers)
                response = self._conn.getresponse()
                body = response.read().decode("utf-8", errors="replace")
                if response.will_close:
                    self.close()
                if response.status != 200:
                    raise RuntimeError(f"stats CSV answered {response.status}")
                return body
            except (OSError, http.client.HTTPException):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def states(self, backend: str) -> dict[str, str]:
        """Server name -> HAProxy status, for one backend."""
        return parse_stats_csv(self.csv(), backend)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
