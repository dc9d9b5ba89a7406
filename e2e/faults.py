"""`python -m e2e.faults FAULT[,FAULT...] [./tools/e2e options]`: the end-to-end run with named faults, to see
each row fail (docs/e2e.md, "Faults"). Never part of a normal run: each fault breaks the program (in the run's
workspace copy only), the fake node, the guests or the cleanup on purpose, so the row that watches it fails.
"""

from __future__ import annotations

import contextlib
import functools
import sys
from collections.abc import Callable, Iterator
from typing import Any

import e2e.guests.record
import e2e.lab
from e2e.__main__ import main
from e2e.engine import Workspace
from e2e.pve import LabPve
from e2e.pve_power import MachinePve
from e2e.pve_running import running_pve
from e2e.role import readme_role

# Program faults: (file in the workspace's copy, text, replacement).
EDITS: dict[str, list[tuple[str, str, str]]] = {
    "stats-without-auth": [
        ("files/haproxy.cfg.j2", "    http-request auth realm haproxy-lab if !stats_user_ok\n", ""),
        ("files/haproxy.cfg.j2", "    stats auth {{ stats_auth }}\n", ""),
    ],
    "balance-first": [("files/haproxy.cfg.j2", "    balance {{ balance }}\n", "    balance first\n")],
    "checks-never-down": [
        (
            "files/haproxy.cfg.j2",
            " fall 2 rise 2 observe layer7 error-limit 3 on-error sudden-death ",
            " fall 100000 rise 2 ",
        )
    ],
    "no-disk-speed-fix": [("components/vm.py", "ignore_changes=[DISK_SPEED],", "")],
    "drain-skipped": [
        (
            "files/scripts/haproxy-server-state.sh",
            "case $action in drain | ready) ;; *) usage ;; esac\n",
            'case $action in drain | ready) ;; *) usage ;; esac\nif [ "$action" = drain ]; then exit 0; fi\n',
        )
    ],
    "vm-ignores-vmid-and-user-data": [
        (
            "components/vm.py",
            "ignore_changes=[DISK_SPEED],",
            'ignore_changes=[DISK_SPEED, "vmId", "initialization.userDataFileId"],',
        )
    ],
    "vip-not-tracking-haproxy": [
        ("files/keepalived.conf.j2", "    track_script {\n        haproxy_alive\n    }\n", "")
    ],
    # Issue 17's two defects of its first try, and the rolling order switched off.
    "order-in-inputs": [
        ("components/web_server.py", "                triggers=[],\n", "                triggers=[str(rolling)],\n")
    ],
    "stack-reference": [
        (
            "__main__.py",
            'lab = Lab("haproxy-lab",',
            'pulumi.StackReference(f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}")\n'
            'lab = Lab("haproxy-lab",',
        )
    ],
    "all-at-once": [("components/rolling.py", "    return list(resources) if rolling else []\n", "    return []\n")],
    "unstable-description": [
        (
            "components/vm.py",
            'description=f"haproxy-lab {args.role}',
            "description=f\"{__import__('time').time()} {args.role}",  # single quotes: a 3.11 f-string
        )
    ],
}
MACHINE_FAULTS = ("token-without-VM.PowerMgmt", "guest-kept-on-vm-delete", "fake-keeps-deleted-snippets")
CLEANUP_FAULTS = ("cleanup-skips-netns",)


def faulty_workspace(faults: list[str]) -> type[Workspace]:
    class Faulty(Workspace):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            for fault in faults:
                for relative, old, new in EDITS.get(fault, []):
                    path = self.project / relative
                    text = path.read_text()
                    if old not in text:
                        raise SystemExit(f"fault {fault}: {relative} no longer has {old!r}")
                    path.write_text(text.replace(old, new))

    return Faulty


def faulty_pve(faults: list[str], original: Callable[..., Any]) -> Callable[..., Any]:
    """running_pve with the token's role, the fake's VM deletion or its snippet deletion broken."""
    if "guest-kept-on-vm-delete" in faults:

        async def destroyed(_self: Any, _vm: Any, fake_body: Callable[[], Any]) -> Any:
            return await fake_body()  # the VM goes from the fake, its machine stays

        setattr(MachinePve, "_destroyed", destroyed)  # noqa: B010 (a fault, on purpose)
    if "fake-keeps-deleted-snippets" in faults:
        original_delete = LabPve._content_delete

        async def content_delete(self: LabPve, v: dict[str, Any], user: str) -> Any:
            storage, volname, *_rest = self._volume_target(v)
            if not volname.startswith("snippets/"):
                return await original_delete(self, v, user)

            async def body() -> str:
                return "kept (fault)"

            return await self.task(v["node"], "imgdel", storage, user, body, lock=False)

        setattr(LabPve, "_content_delete", content_delete)  # noqa: B010

    @contextlib.contextmanager
    def running(*args: Any, **kwargs: Any) -> Iterator[Any]:
        if "token-without-VM.PowerMgmt" in faults:
            kwargs["role"] = readme_role(9) - {"VM.PowerMgmt"}
        with original(*args, **kwargs) as pve:
            yield pve

    return running


def main_with_faults(argv: list[str]) -> int:
    if not argv or argv[0].startswith("-"):
        print(f"usage: python -m e2e.faults FAULT[,FAULT...] [options]; faults: {sorted(all_faults())}")
        return 2
    faults = argv[0].split(",")
    unknown = sorted(set(faults) - all_faults())
    if unknown:
        print(f"unknown fault(s) {unknown}; known: {sorted(all_faults())}", file=sys.stderr)
        return 2
    setattr(e2e.lab, "Workspace", faulty_workspace(faults))  # noqa: B010
    setattr(e2e.lab, "running_pve", faulty_pve(faults, running_pve))  # noqa: B010
    if "cleanup-skips-netns" in faults:
        setattr(e2e.guests.record, "_run", functools.partial(_skip_netns_del, e2e.guests.record._run))  # noqa: B010
    return main(argv[1:])


def _skip_netns_del(run: Callable[..., Any], *argv: str) -> Any:
    return run("true") if argv[:3] == ("ip", "netns", "del") else run(*argv)


def all_faults() -> set[str]:
    return {*EDITS, *MACHINE_FAULTS, *CLEANUP_FAULTS}


if __name__ == "__main__":
    raise SystemExit(main_with_faults(sys.argv[1:]))
