"""The one jinja2 environment that renders everything shipped to the VMs from files/.

StrictUndefined makes a missing variable an error at render time instead of an empty string in a
live haproxy.cfg; keep_trailing_newline keeps rendered files byte-identical to what tests check.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import jinja2

FILES_DIR = Path(__file__).resolve().parent.parent / "files"

_ENVIRONMENT = jinja2.Environment(
    loader=jinja2.FileSystemLoader(str(FILES_DIR)),
    undefined=jinja2.StrictUndefined,
    keep_trailing_newline=True,
    autoescape=False,  # noqa: S701 (we render config files and scripts, never HTML)
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(template: str, **context: Any) -> str:
    """Render files/<template> with exactly the given variables (a missing one raises)."""
    return _ENVIRONMENT.get_template(template).render(**context)


def read_file(name: str) -> str:
    """The text of files/<name>, as shipped."""
    return (FILES_DIR / name).read_text(encoding="utf-8")


def sha256_hex(*parts: str | bytes) -> str:
    """A content hash for remote-command triggers: same content, same hash, across runs."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8") if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()
