"""The names our files get on the Proxmox node: unique per stack and per content.

Why: a Proxmox file resource replaced create-then-delete under the same name is first overwritten,
then deleted by the old resource's delete (the VM is left pointing at nothing), and a file name
another stack also uses is overwritten or refused. A content (or URL) hash and the stack name in
the name make every replacement a new file, and two stacks on one node never share one.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlparse

from render.shipping import sha256_hex

PREFIX = "haproxy-lab"


def snippet_file_name(stack: str, host_key: str, user_data: str) -> str:
    """The cloud-init snippet's name: a new name (so a new file, and a new VM) whenever the text changes."""
    return f"{PREFIX}-{stack}-{host_key}-{sha256_hex(user_data)[:12]}.yaml"


def image_file_name(stack: str, url: str, checksum: str | None) -> str:
    """The cloud image's name on the node: the URL's base name with a short hash of the URL (and the
    checksum); Proxmox's Import content type wants a .qcow2 ending."""
    base = PurePosixPath(urlparse(url).path).name.removesuffix(".img").removesuffix(".qcow2")
    return f"{PREFIX}-{stack}-{sha256_hex(url, checksum or '')[:10]}-{base}.qcow2"
