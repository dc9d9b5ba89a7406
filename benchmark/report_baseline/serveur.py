"""The report's Flask app (src/serveur.py) as the report ran it: Flask's built-in Werkzeug server.

Only the benchmark's baseline uses it. Usage: python serveur.py HOST PORT MESSAGE (the report had one
copy of the code per server, differing by the message; here the message is an argument).
"""

from __future__ import annotations

import sys

from flask import Flask

app = Flask(__name__)
MESSAGE = sys.argv[3] if len(sys.argv) > 3 else "Serveur 1"


@app.route("/")
def hello() -> str:
    """The server's message."""
    return MESSAGE


if __name__ == "__main__":
    app.run(host=sys.argv[1], port=int(sys.argv[2]))
