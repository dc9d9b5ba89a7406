"""The lab's web app: one Flask app for every web server, told apart only by the MESSAGE env var.

Why one file for all servers: the report deployed two copies of the code differing by one string;
here the message is configuration, so every server runs byte-identical code (served as `app:app` by
serve.py). Every request is logged with the real client address (access_log.py).
"""

from __future__ import annotations

import os
import socket

from access_log import ClientAddressLog, parse_trusted
from flask import Flask, Response

# The path HAProxy checks; plan/app_contract.py holds the same value (a test checks they agree).
HEALTH_PATH = "/healthz"


def create_app(message: str | None = None, trusted_proxies: str | None = None) -> Flask:
    """Build the app; the message defaults to $MESSAGE, else the host name (servers stay told apart).

    X-Forwarded-For is believed only from $FORWARDED_ALLOW_IPS (the load balancer; default 127.0.0.1).
    """
    text = message if message is not None else os.environ.get("MESSAGE") or socket.gethostname()
    flask_app = Flask(__name__)

    @flask_app.get("/")
    def index() -> Response:
        """The server's message, as the report's `curl http://lb` showed it."""
        return Response(text, mimetype="text/plain")

    def healthz() -> Response:
        """HAProxy's health check: constant, cheap, no side effects, never cached."""
        response = Response("ok", mimetype="text/plain")
        response.headers["Cache-Control"] = "no-store"
        return response

    flask_app.add_url_rule(HEALTH_PATH, "healthz", healthz, methods=["GET"])

    trusted = trusted_proxies if trusted_proxies is not None else os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1")
    flask_app.wsgi_app = ClientAddressLog(flask_app.wsgi_app, parse_trusted(trusted))  # type: ignore[method-assign]
    return flask_app


app = create_app()
