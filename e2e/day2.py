"""The day-2 changes of the README's "Updates" table, each applied with `pulumi up` on the running lab
while the load client sends requests from its namespace, and judged on what the VMs and the site do.

Each row: the check's verdict, the up's wall time and the load client's counts. README promises no failed
request for the app's changes; for the changes that re-create or reboot VMs one at a time (SSH key rotation,
vm.cores: issue 17), failed requests only around a move of the virtual IP (a pair) or while the single load
balancer itself goes (e2e/rolling_watch.py places each one).
"""

from __future__ import annotations

import copy
import threading
import time
from collections.abc import Callable
from typing import Any

from e2e.lab import STACK, Lab, announce, new_key
from e2e.report_tests import APP_CONTAINER, messages, states, urls
from e2e.rolling_watch import LoadBalancerWatch, describe, explain, judge_failures
from e2e.stack import addresses
from rehearsal.results import CheckResult

UP_TIMEOUT_S = 1800
MESSAGE_SUFFIX = " (day 2)"


def up(lab: Lab) -> tuple[bool, str, float]:
    """`pulumi up` of the stack: passed, its error lines (or the end of its output), seconds."""
    started = time.monotonic()
    result = lab.workspace.pulumi("up", "--yes", "--skip-preview", "--stack", STACK, check=False, timeout=UP_TIMEOUT_S)
    return result.returncode == 0, errors(result.output), time.monotonic() - started


def errors(output: str) -> str:
    """What a failed pulumi command said went wrong: its `error:` lines and their messages' last lines, short."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    picked = [line[-300:] for line in lines if "error" in line.lower() or "timeout" in line.lower()]
    return " | ".join(dict.fromkeys(picked))[-900:] or output[-600:]


def _vms(lab: Lab) -> dict[int, dict[str, str]]:
    return {vmid: dict(config) for vmid, config in lab.pve.state().vms.items()}


class StateWatch:
    """Every status each server showed on the stats page during a change (polled from the client namespace),
    so a rollout is seen drained, not only seen without failed requests (HAProxy's retries hide a missing
    drain from clients)."""

    def __init__(self, lab: Lab) -> None:
        self.seen: dict[str, set[str]] = {}
        self.most_out = 0  # the most servers out of rotation (not UP) at one time
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, args=(lab,), daemon=True)
        self._thread.start()

    def _watch(self, lab: Lab) -> None:
        while not self._stop.wait(0.2):
            found = states(lab)
            for server, status in found.items():
                self.seen.setdefault(server, set()).add(status.split(" ")[0])
            self.most_out = max(self.most_out, sum(1 for status in found.values() if status != "UP"))

    def stop(self) -> dict[str, set[str]]:
        self._stop.set()
        self._thread.join(timeout=30)
        return self.seen


def change(
    lab: Lab,
    name: str,
    apply: Callable[[], None],
    judge: Callable[[], tuple[bool, str]],
    *,
    no_failures: bool = True,
    rolling: bool = False,
) -> CheckResult:
    """Under load: `apply` the change, `pulumi up`, `judge` the result; fails on any failed request if asked,
    or with `rolling`, on any failed request outside the load balancers' windows (e2e/rolling_watch.py)."""
    load = lab.client.start_load(str(lab.config.site_ip), lab.config.haproxy.frontend_port)
    watch = StateWatch(lab)
    config = lab.config
    balancers = LoadBalancerWatch(
        lab,
        None if config.virtual_ip is None else str(config.virtual_ip),
        {host.name: int(host.vm_id or 0) for host in config.load_balancers},
        config.haproxy.frontend_port,
    )
    try:
        apply()
        passed, output, took = up(lab)
    finally:
        counts = load.stop()
        balancers.stop()
        lab.watched = watch.stop()
        lab.watch_most_out = watch.most_out
    lab.figures[f"{name} s"] = round(took, 1)
    if not passed:
        return announce(CheckResult(name, False, f"pulumi up failed after {took:.0f} s: {output}"))
    verdict, seen = judge()
    failed = counts["failed"]
    load_text = f"{counts['total']} req, failed {failed}" + (f" {counts['errors']}" if failed else "")
    ok = verdict and (failed == 0 or not no_failures)
    if rolling:
        listed = counts.get("failures", [])
        inside, outside = judge_failures(balancers.allowed(), listed)
        outside += failed - len(listed)  # failures the client did not list (past its cap) are not excused
        where = "around a VIP move" if config.is_pair else "while the load balancer was out"
        load_text += f" ({inside} {where}, {outside} outside); {describe(balancers)}"
        load_text += explain(balancers, listed, load.started)
        lab.figures[f"{name} failed (at the load balancers, elsewhere)"] = f"{inside}, {outside}"
        ok = verdict and outside == 0
    return announce(CheckResult(name, ok, f"up {took:.0f} s; load {load_text}; {seen}"))


def _answers(lab: Lab) -> list[str]:
    return lab.client.answers(urls(lab)[0], 4 * len(lab.plan["haproxy-lab:webServers"]))


def message_change(lab: Lab) -> CheckResult:
    first = lab.plan["haproxy-lab:webServers"][0]
    old = first["message"]

    def apply() -> None:
        first["message"] = old + MESSAGE_SUFFIX
        lab.write_plan()

    def judge() -> tuple[bool, str]:
        answers = _answers(lab)
        drained = "DRAIN" in lab.watched.get(first["name"], set())
        others = {name: sorted(seen) for name, seen in lab.watched.items() if name != first["name"]}
        untouched = all(seen == ["UP"] for seen in others.values())
        ok = first["message"] in answers and old not in answers and drained and untouched
        return ok, f"answers {sorted(set(answers))}; {first['name']} seen DRAIN {drained}; the others {others}"

    return change(lab, "day2 message", apply, judge)


def _images(lab: Lab) -> dict[str, str]:
    found = {}
    for server in lab.plan["haproxy-lab:webServers"]:
        result = lab.ssh(server["ip"], f"sudo docker inspect -f '{{{{.Config.Image}}}}' {APP_CONTAINER}")
        found[server["name"]] = result.stdout.strip() or f"<{result.stderr.strip()[-80:]}>"
    return found


def app_change(lab: Lab) -> CheckResult:
    before = _images(lab)
    app = lab.workspace.project / "files" / "webapp" / "app.py"

    def apply() -> None:
        app.write_text(app.read_text() + "# changed by ./tools/e2e (day 2: the app changed)\n")

    def judge() -> tuple[bool, str]:
        after = _images(lab)
        changed = all(after[name] != before[name] and not after[name].startswith("<") for name in before)
        drained = all("DRAIN" in lab.watched.get(name, set()) for name in before)
        one_at_a_time = lab.watch_most_out <= 1
        serving = set(_answers(lab)) == set(messages(lab).values())
        seen = f"new image on each {changed}, each seen DRAIN {drained}, at most {lab.watch_most_out} out at once"
        return changed and drained and one_at_a_time and serving, f"{seen}; images {sorted(set(after.values()))}"

    return change(lab, "day2 app", apply, judge)


def _free_ip(lab: Lab) -> str:

    used = {value for _, value in addresses(lab.plan)}
    last = max(lab.plan["haproxy-lab:webServers"], key=lambda server: tuple(map(int, server["ip"].split("."))))
    base = last["ip"].rsplit(".", 1)
    for host in range(int(base[1]) + 1, 250):
        if f"{base[0]}.{host}" not in used:
            return f"{base[0]}.{host}"
    raise ValueError("no free address for an added web server")


def server_added_then_removed(lab: Lab, rows: list[CheckResult]) -> None:
    servers = lab.plan["haproxy-lab:webServers"]
    before = copy.deepcopy(servers)
    vm_id = max(int(host["vmId"]) for host in [lab.plan["haproxy-lab:loadBalancer"], *servers]) + 1
    added: dict[str, Any] = {"name": "WEB-ADDED-E2E", "ip": _free_ip(lab), "message": "Serveur ajouté", "vmId": vm_id}

    def add() -> None:
        servers.append(dict(added))
        lab.write_plan()

    def judge_added() -> tuple[bool, str]:
        answers = _answers(lab)
        up = states(lab).get(added["name"]) == "UP"
        return up and added["message"] in answers, f"{added['name']} UP: {up}; answers {sorted(set(answers))}"

    def remove() -> None:
        servers[:] = before
        lab.write_plan()

    def judge_removed() -> tuple[bool, str]:
        gone = vm_id not in lab.pve.state().vms and vm_id not in lab.machines.guests
        answers = _answers(lab)
        listed = added["name"] in states(lab)
        ok = gone and not listed and added["message"] not in answers
        return ok, f"VM {vm_id} and its guest gone: {gone}; still listed by HAProxy: {listed}"

    rows.append(change(lab, "day2 server added", add, judge_added))
    rows.append(change(lab, "day2 server removed", remove, judge_removed))


def stats_password_change(lab: Lab) -> CheckResult:
    old = lab.stats_password

    def apply() -> None:
        lab.stats_password = old + "-day2"
        lab.set_secret("haproxy-lab:statsPassword", lab.stats_password)

    def judge() -> tuple[bool, str]:
        config = lab.config
        with_new = states(lab)
        with_old, _ = lab.client.curl(f"{urls(lab)[1]};csv", "-u", f"{config.haproxy.stats_user}:{old}")
        ok = bool(with_new) and with_old == 401
        return ok, f"new password: {len(with_new)} servers listed; old password -> {with_old}"

    return change(lab, "day2 stats password", apply, judge)


def vm_id_change(lab: Lab) -> CheckResult:
    server = lab.plan["haproxy-lab:webServers"][-1]
    old_id, new_id = int(server["vmId"]), int(server["vmId"]) + 100

    def apply() -> None:
        server["vmId"] = new_id
        lab.write_plan()

    def judge() -> tuple[bool, str]:
        vms = _vms(lab)
        guest = lab.machines.guests.get(new_id)
        fresh = guest is not None and guest.boots == 1
        answers = _answers(lab)
        ok = old_id not in vms and new_id in vms and fresh and server["message"] in answers
        return ok, f"VM {old_id} -> {new_id}: re-created {new_id in vms and old_id not in vms}, fresh guest {fresh}"

    return change(lab, "day2 vmId", apply, judge)


def ssh_key_rotation(lab: Lab) -> CheckResult:
    old_key = lab.key
    macs_before = {vmid: config.get("net0", "") for vmid, config in _vms(lab).items()}

    def apply() -> None:
        lab.key = new_key(lab.workdir, "admin-rotated")
        lab.plan["haproxy-lab:ssh"]["publicKey"] = lab.key.public
        lab.write_plan()
        lab.set_secret("haproxy-lab:sshPrivateKey", lab.key.private.read_text())

    def judge() -> tuple[bool, str]:
        vms = _vms(lab)
        re_created = all(macs_before.get(vmid) != config.get("net0") for vmid, config in vms.items())
        lb_ip = lab.plan["haproxy-lab:loadBalancer"]["ip"]
        new_ok = lab.ssh(lb_ip, "true").returncode == 0
        old_refused = lab.ssh(lb_ip, "true", key=old_key).returncode != 0
        serving = set(_answers(lab)) == set(messages(lab).values())
        seen = f"every VM re-created {re_created}; new key logs in {new_ok}, old key refused {old_refused}"
        return re_created and new_ok and old_refused and serving, seen + f"; site serves every server {serving}"

    # One VM at a time (issue 17): failed requests only around a VIP move, or while the single load balancer goes.
    return change(lab, "day2 ssh key rotation", apply, judge, rolling=True)


def _addresses_kept(lab: Lab, before: dict[int, dict[str, str]], after: dict[int, dict[str, str]]) -> list[str]:
    """VMs whose cloud-init IP config, cicustom or answering address did not survive (bpg #1701)."""
    lost = []
    for vmid, config in after.items():
        old = before.get(vmid, {})
        if (config.get("ipconfig0"), config.get("cicustom")) != (old.get("ipconfig0"), old.get("cicustom")):
            lost.append(f"{vmid}: ipconfig0/cicustom {old.get('ipconfig0')} -> {config.get('ipconfig0')}")
    for ip in (str(host.ip) for host in lab.config.hosts):
        if lab.ssh(ip, "true").returncode != 0:
            lost.append(f"{ip} does not answer SSH")
    return lost


def cores_change(lab: Lab) -> CheckResult:
    """vm.cores + 1: bpg updates every VM in place and reboots it (issue 17: one at a time, drained first, ready
    after). Each VM keeps its instance, ipconfig0, cicustom and address, and each guest booted once more."""
    vm = lab.plan["haproxy-lab:vm"]
    cores = int(vm["cores"]) + 1
    before = _vms(lab)
    boots = {vmid: guest.boots for vmid, guest in lab.machines.guests.items()}

    def apply() -> None:
        vm["cores"] = cores
        lab.write_plan()

    def judge() -> tuple[bool, str]:
        after = _vms(lab)
        same = set(after) == set(before) and all(after[v].get("net0") == before[v].get("net0") for v in after)
        resized = all(after[vmid].get("cores") == str(cores) for vmid in after)
        rebooted = {vmid: guest.boots - boots.get(vmid, 0) for vmid, guest in lab.machines.guests.items()}
        lost = _addresses_kept(lab, before, after)
        one_at_a_time = lab.watch_most_out <= 1
        serving = set(_answers(lab)) == set(messages(lab).values())
        seen = (
            f"cores {cores} on every VM {resized}, same instances {same}, boots {sorted(rebooted.values())}, "
            f"ipconfig0/cicustom/address kept {not lost} {lost}, at most {lab.watch_most_out} server out at once"
        )
        ok = same and resized and all(n == 1 for n in rebooted.values()) and not lost and one_at_a_time and serving
        return ok, seen + f"; site serves every server {serving}"

    return change(lab, "day2 vm.cores", apply, judge, rolling=True)


CHANGES = ("message", "app", "server", "stats password", "vmId", "vm.cores", "ssh key rotation")


def day2(lab: Lab, rows: list[CheckResult], only: set[str] | None = None) -> None:
    """Each change in turn (all, or those named in `only`: see CHANGES), its row appended once decided."""
    unknown = sorted((only or set()) - set(CHANGES))
    if unknown:
        raise ValueError(f"--day2: unknown change(s) {unknown}; known: {', '.join(CHANGES)}")
    steps = {
        "message": lambda: rows.append(message_change(lab)),
        "app": lambda: rows.append(app_change(lab)),
        "server": lambda: server_added_then_removed(lab, rows),
        "stats password": lambda: rows.append(stats_password_change(lab)),
        "vmId": lambda: rows.append(vm_id_change(lab)),
        "vm.cores": lambda: rows.append(cores_change(lab)),
        "ssh key rotation": lambda: rows.append(ssh_key_rotation(lab)),
    }
    for name in CHANGES:
        if only is None or name in only:
            steps[name]()
