"""Shipping helpers for everything that goes to the VMs from files/: the one template environment,
script inlining, the deterministic tarball, and content hashes.

StrictUndefined makes a missing variable an error at render time instead of an empty string in a
live haproxy.cfg; keep_trailing_newline keeps rendered files byte-identical to what tests check.
Scripts travel alone as `sh -c '<text>'` over SSH, so shared shell code is inlined, not sourced.
Tarballs and hashes are deterministic so a remote command re-runs only when a file really changes.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import re
import tarfile
from collections.abc import Mapping
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


_INCLUDE = re.compile(r"^# haproxy-lab: include (lib/[a-z0-9-]+\.sh)\n", re.MULTILINE)


def _config_trailer() -> str:
    """The last line of every config we render, as the apply scripts check it (lib/apply-config.sh defines it)."""
    found = re.search(r"^CONFIG_TRAILER='([^']+)'$", read_file("scripts/lib/apply-config.sh"), re.MULTILINE)
    if found is None:
        raise RuntimeError("files/scripts/lib/apply-config.sh lost its CONFIG_TRAILER line")
    return found.group(1)


CONFIG_TRAILER = _config_trailer()


def render_config(template: str, **context: Any) -> str:
    """Render a config that the apply scripts install: its template ends with `{{ trailer }}`, checked here."""
    text = render(template, trailer=CONFIG_TRAILER, **context)
    if text.rstrip("\n").rsplit("\n", 1)[-1] != CONFIG_TRAILER:
        raise AssertionError(f"{template} lost its trailer line")  # a template bug, not bad input
    return text


def script_text(name: str) -> str:
    """files/scripts/<name> with its includes inlined: exactly what runs, and what is hashed."""

    def inline(match: re.Match[str]) -> str:
        library = read_file(f"scripts/{match.group(1)}")
        if _INCLUDE.search(library):
            raise ValueError(f"scripts/{match.group(1)} includes another file: keep libraries flat")
        return f"# --- {match.group(1)} (inlined) ---\n{library}# --- end of {match.group(1)} ---\n"

    return _INCLUDE.sub(inline, read_file(f"scripts/{name}"))


def tar_gz_base64(files: Mapping[str, str]) -> str:
    """The files (relative path -> text) as a base64 tar.gz, byte-identical for identical input."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for path in sorted(files):
            if path.startswith("/") or ".." in path.split("/"):
                raise ValueError(f"bundle path {path!r} must be relative and stay inside the bundle")
            data = files[path].encode("utf-8")
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            info.mtime = 0
            info.uid = info.gid = 0
            info.uname = info.gname = "root"
            tar.addfile(info, io.BytesIO(data))
    packed = gzip.compress(raw.getvalue(), compresslevel=9, mtime=0)
    return base64.b64encode(packed).decode("ascii")
