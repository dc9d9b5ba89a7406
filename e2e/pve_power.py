"""MachinePve: fakepve's FakePve whose VMs are machines (e2e/machines.py).

fakepve keeps a VM's power as bookkeeping in its task bodies. Here the start, stop, shutdown, reboot
and destroy tasks, and a create that starts the VM, call the `Machines` from inside their bodies, so a
task ends when its machine has done what the task says; the guest agent's answer is the machine's.
LabPve (e2e/pve.py) builds on it.
"""

from __future__ import annotations

import contextvars
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from fakepve import FakePve, TaskError

from e2e.machines import Machines, VmSpec

_REBOOTING: contextvars.ContextVar[bool] = contextvars.ContextVar("rebooting", default=False)


class MachinePve(FakePve):  # type: ignore[misc]  # fakepve is untyped
    """A FakePve whose VMs' power and guest agent are a `Machines`' (see the module's docstring)."""

    machines: Machines

    def snippet_text(self, volid: str) -> str | None:
        """The text of a snippet volume, None if absent (here: none; LabPve has real snippets)."""
        return None

    def start_problem(self, vm: Any) -> str | None:
        """Why PVE would refuse to start this VM (here: nothing)."""
        return None

    def vm_spec(self, vm: Any) -> VmSpec:
        """What the machine may know of this VM now: its config, and its cicustom user-data's text."""
        config = {key: str(value) for key, value in vm.config.items()}
        user = dict(part.split("=", 1) for part in config.get("cicustom", "").split(",") if "=" in part).get("user")
        return VmSpec(
            vmid=vm.vmid,
            name=vm.name,
            node=vm.node,
            config=config,
            user_data=self.snippet_text(user) if user else None,
        )

    async def task(
        self,
        node: str,
        ttype: str,
        tid: Any,
        user: str,
        body: Callable[[], Awaitable[Any]],
        vm: Any = None,
        lock: bool = True,
        log: Sequence[str] = (),
    ) -> Any:
        """Every fakepve task; a VM's power tasks call the machines from inside their bodies."""
        power = {
            "qmcreate": self._created,
            "qmstart": self._started,
            "qmstop": self._stopped,
            "qmreboot": self._rebooted,
            "qmdestroy": self._destroyed,
        }.get(ttype)
        if power is not None and vm is not None:
            fake_body, on_vm = body, vm

            async def body() -> Any:
                return await power(on_vm, fake_body)

        return await super().task(node, ttype, tid, user, body, vm=vm, lock=lock, log=log)

    async def _created(self, vm: Any, fake_body: Callable[[], Awaitable[Any]]) -> Any:
        note = await fake_body()
        if vm.status == "running":  # created with start=1
            await self.machines.start(self.vm_spec(vm))
        return note

    async def _started(self, vm: Any, fake_body: Callable[[], Awaitable[Any]]) -> Any:
        problem = None if vm.status == "running" else self.start_problem(vm)
        if problem:
            raise TaskError(problem)
        note = await fake_body()
        try:
            await self.machines.start(self.vm_spec(vm))
        except Exception as error:
            vm.status = vm.qmpstatus = "stopped"
            raise TaskError(f"start failed: {error}") from error
        return note

    async def _stopped(self, vm: Any, fake_body: Callable[[], Awaitable[Any]]) -> Any:
        await self.machines.stop(vm.vmid)
        return await fake_body()

    async def _powerdown(self, vm: Any, p: Mapping[str, Any]) -> str | None:
        """A shutdown (or the first half of fakepve's reboot): the machine powers off, or is stopped
        hard with forceStop, else the task fails as PVE's does at its timeout."""
        if _REBOOTING.get():
            return None  # the machine reboots in place: Machines.reboot, after the pending changes
        timeout = float(p.get("timeout") or self.shutdown_default_timeout)
        if await self.machines.shutdown(vm.vmid, timeout):
            vm.status = vm.qmpstatus = "stopped"
            return None
        if str(p.get("forceStop", "0")) in ("1", "true"):
            await self.machines.stop(vm.vmid)
            vm.status = vm.qmpstatus = "stopped"
            return "VM still running - terminating now with SIGTERM"
        raise TaskError("VM quit/powerdown failed - got timeout")

    async def _rebooted(self, vm: Any, fake_body: Callable[[], Awaitable[Any]]) -> Any:
        token = _REBOOTING.set(True)
        try:
            note = await fake_body()  # applies the pending changes
        finally:
            _REBOOTING.reset(token)
        await self.machines.reboot(self.vm_spec(vm))
        vm.started_at = time.time()
        return note

    async def _destroyed(self, vm: Any, fake_body: Callable[[], Awaitable[Any]]) -> Any:
        note = await fake_body()
        await self.machines.destroy(vm.vmid)
        return note

    async def _agent_call(self, match: Any, values: dict[str, Any]) -> Any:
        # fakepve answers from a fixed table; the agent of a running VM is its machine's.
        vm = self.find(values["node"], values["vmid"])
        agent = str(vm.config.get("agent", "0"))
        enabled = agent.split(",")[0].split("=")[-1] in ("1", "true")
        if vm.status == "running" and enabled:
            answer = self.machines.interfaces(vm.vmid)
            vm.agent = None if answer is None else {"interfaces": answer}
        return await super()._agent_call(match, values)
