"""WSGI middleware: the real client address behind the load balancer, and one access-log line per request.

Why in the app and not in the server: HAProxy (`option forwardfor`) tells the client's address in
X-Forwarded-For, but only a peer we trust may say so; anyone else could forge the header. The server's
own access log sees HAProxy's address, and granian logs the socket's peer whatever the app decides,
so the app rewrites REMOTE_ADDR (Flask's `request.remote_addr` then tells the truth too) and writes
the line itself, in Common Log Format, whichever WSGI server runs it.
"""

from __future__ import annotations

import ipaddress
import re
import sys
import time
from collections.abc import Callable, Iterable
from typing import IO, Any

Environ = dict[str, Any]
StartResponse = Callable[..., Any]
WsgiApp = Callable[[Environ, StartResponse], Iterable[bytes]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Control characters, quotes and backslashes in a request line are written escaped: a client must
# not be able to forge a log line or break the quoted field.
_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F)} | {ord('"'): '\\"', ord("\\"): "\\\\"}
_NEEDS_ESCAPE = re.compile(r'[\x00-\x1f\x7f"\\]')
# Addresses already classified (the peer is nearly always the LB); bounded, emptied when full.
_CACHE_SIZE = 4096


def parse_trusted(spec: str) -> tuple[Network, ...]:
    """'10.0.0.30' or '10.0.0.30, 127.0.0.0/8' -> networks; raises ValueError on anything else (no '*')."""
    networks = [ipaddress.ip_network(part.strip()) for part in spec.split(",") if part.strip()]
    return tuple(networks)


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text.strip())
    except ValueError:
        return None


class ClientAddressLog:
    """Wrap a WSGI app: REMOTE_ADDR becomes the client behind a trusted proxy; each request is logged.

    The client is the right-most X-Forwarded-For address that is not itself a trusted proxy (HAProxy
    appends the address it saw; whatever a client wrote before it is not trusted). From an untrusted
    peer the header is ignored.
    """

    def __init__(self, app: WsgiApp, trusted: Iterable[Network], stream: IO[str] | None = None) -> None:
        self.app = app
        self.trusted = tuple(trusted)
        self.stream = stream
        self._second = -1
        self._stamp = ""
        self._known: dict[str, tuple[str | None, bool]] = {}

    def _classify(self, text: str) -> tuple[str | None, bool]:
        """(the address written canonically, or None if it is not one; whether it is a trusted proxy)."""
        known = self._known.get(text)
        if known is None:
            address = _ip(text)
            trusted = address is not None and any(address in network for network in self.trusted)
            known = (None if address is None else str(address), trusted)
            if len(self._known) >= _CACHE_SIZE:
                self._known.clear()
            self._known[text] = known
        return known

    def client_address(self, peer: str, forwarded_for: str | None) -> str:
        """Who the client is, given the socket's peer and the X-Forwarded-For header (or None)."""
        if not forwarded_for or not self._classify(peer)[1]:
            return peer
        for hop in reversed(forwarded_for.split(",")):
            address, trusted = self._classify(hop)
            if address is None:
                return peer  # a proxy we trust never writes this: do not guess
            if not trusted:
                return address
        return peer

    def _timestamp(self) -> str:
        now = time.time()
        second = int(now)
        if second != self._second:  # one strftime per second, not per request
            self._stamp = time.strftime("%d/%b/%Y:%H:%M:%S %z", time.localtime(second))
            self._second = second
        return self._stamp

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        client = self.client_address(environ.get("REMOTE_ADDR", "-"), environ.get("HTTP_X_FORWARDED_FOR"))
        environ["REMOTE_ADDR"] = client
        seen: list[str] = []

        def recording_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            length = next((value for name, value in headers if name.lower() == "content-length"), "-")
            seen[:] = [status.split(" ", 1)[0], length]
            return start_response(status, headers, exc_info)

        body = self.app(environ, recording_start_response)
        query = environ.get("QUERY_STRING")
        target = environ.get("SCRIPT_NAME", "") + environ.get("PATH_INFO", "") + (f"?{query}" if query else "")
        request = f"{environ.get('REQUEST_METHOD', '-')} {target} {environ.get('SERVER_PROTOCOL', '-')}"
        status, length = seen or ["-", "-"]
        stream = self.stream if self.stream is not None else sys.stdout
        if _NEEDS_ESCAPE.search(request):
            request = request.translate(_ESCAPES)
        stream.write(f'{client} - - [{self._timestamp()}] "{request}" {status} {length}\n')
        return body
