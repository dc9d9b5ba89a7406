"""A small client of the fake Proxmox node's API, for the adapter's own tests (tests/test_lab_pve.py)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests

from e2e.pve_running import RunningPve


@dataclass
class Answer:
    status: int
    data: Any
    message: str


class PveClient:
    """Requests to /api2/json/<path> with one API token, the certificate verified."""

    def __init__(self, pve: RunningPve, token: str) -> None:
        self.pve = pve
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"PVEAPIToken={token}"
        self.session.trust_env = False  # no proxy and no CA bundle from the environment: loopback, our cert
        self.session.verify = str(pve.cafile)

    def call(self, method: str, path: str, **values: Any) -> Answer:
        url = f"{self.pve.endpoint}api2/json/{path}"
        if method == "GET":
            response = self.session.request(method, url, params=values, timeout=30)
        else:
            response = self.session.request(method, url, data=values, timeout=30)
        body = response.json()
        return Answer(response.status_code, body.get("data"), str(body.get("message", "")).strip())

    def task(self, method: str, path: str, **values: Any) -> str:
        """Start a task and return its exit status ("OK" or PVE's error); the request itself must pass."""
        answer = self.call(method, path, **values)
        assert answer.status == 200, f"{method} {path}: {answer.status} {answer.message}"
        status = self.call("GET", f"nodes/{self.pve.node}/tasks/{answer.data}/status")
        assert status.data["status"] == "stopped", status.data
        return str(status.data["exitstatus"])

    def create_vm(self, vmid: int, **config: Any) -> Answer:
        """POST nodes/<node>/qemu; a 200 answer carries the create task's UPID (time_scale 0: done)."""
        return self.call("POST", f"nodes/{self.pve.node}/qemu", vmid=vmid, **config)
