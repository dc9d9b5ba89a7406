"""A fake Proxmox VE API on loopback, for the real engine's tests: it records every request and answers
only the calls listed in ANSWERS (docs/engine.md). Anything else gets 501, so a new call
the provider starts making shows up as a failed preview, never as a request to a real address.
"""

from __future__ import annotations

import json
import ssl
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

# (method, path) -> the JSON `data` Proxmox would answer. Empty: `pulumi preview` (no refresh) makes no
# call (the provider connects lazily); tests/test_engine.py asserts it. Add here the calls that change.
ANSWERS: dict[tuple[str, str], Any] = {}


@dataclass
class FakeProxmox:
    """The running fake: its endpoint and the (method, path) of every request it got."""

    endpoint: str
    requests: list[tuple[str, str]] = field(default_factory=list)


def _self_signed(directory: Path) -> tuple[Path, Path]:
    cert, key = directory / "fake-pve.crt", directory / "fake-pve.key"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
            "-keyout", str(key), "-out", str(cert),
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@contextmanager
def fake_proxmox(directory: Path) -> Iterator[FakeProxmox]:
    """Serve the fake on https://127.0.0.1:<free port>/ (self-signed: the stack sets proxmoxve:insecure)."""
    fake = FakeProxmox(endpoint="")

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            path = self.path.split("?", 1)[0]
            fake.requests.append((self.command, path))
            data = ANSWERS.get((self.command, path))
            status = 200 if (self.command, path) in ANSWERS else 501
            body = json.dumps({"data": data} if status == 200 else {"errors": {"fake": "not implemented"}}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_DELETE = _answer  # noqa: N815 (http.server's method names)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    cert, key = _self_signed(directory)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    fake.endpoint = f"https://127.0.0.1:{server.server_address[1]}/"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield fake
    finally:
        server.shutdown()
        server.server_close()
