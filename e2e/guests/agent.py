"""Ask a guest's own QEMU guest agent, as Proxmox does, for `guest-network-get-interfaces`.

The guest runs the real qemu-ga (Debian's qemu-guest-agent, installed by the program's user-data at first
boot as on a VM); a container has no virtio port, so the image's unit runs it on a unix socket inside the
guest (docs/e2e.md). The host reaches that socket through the guest's root, /proc/<guest pid 1>/root. No
answer (agent not installed or started yet, guest down) is None, as PVE answers "agent is not running".
"""

from __future__ import annotations

import json
import socket
from typing import Any

SOCKET = "run/qemu-ga.sock"


def ask(pid1: int, command: str, timeout_s: float = 3.0) -> Any:
    """One QGA command's `return` value, or None when the agent does not answer."""
    path = f"/proc/{pid1}/root/{SOCKET}"
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(path)
            sock.sendall(json.dumps({"execute": command}).encode() + b"\n")
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                data += chunk
    except OSError:
        return None
    try:
        answer = json.loads(data)
    except ValueError:
        return None
    return answer.get("return") if isinstance(answer, dict) else None


def network_interfaces(pid1: int) -> list[dict[str, Any]] | None:
    answer = ask(pid1, "guest-network-get-interfaces")
    return answer if isinstance(answer, list) else None
