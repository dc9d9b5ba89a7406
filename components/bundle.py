"""A set of text files packed as a deterministic base64 tar.gz, to travel on a remote command's stdin.

Why deterministic (sorted names, fixed owner, mode and time, gzip without a timestamp): the same
files give the same bytes on every `pulumi preview`, so the command's inputs never change by
themselves and it re-runs only when a file really changes.
"""

from __future__ import annotations

import base64
import gzip
import io
import tarfile
from collections.abc import Mapping


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
