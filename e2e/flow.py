"""The end-to-end flow on a running lab (e2e/lab.py): up, the report's four tests, no drift, day 2, destroy.

Each step is a row (check, PASS/FAIL, figures); a failed `up` ends the flow (nothing after it could pass).
Figures (wall times, guests' boot, memory, machine load) go to `lab.figures` for the table's footer and JSON.
"""

from __future__ import annotations

import json
import os
import re
import time

from e2e.day2 import StateWatch, day2, up
from e2e.ha import ha_failover
from e2e.lab import STACK, Lab, announce
from e2e.report_tests import report_tests
from e2e.stack import hosts
from plan.model import LabConfig
from rehearsal.results import CheckResult

_DURATION = re.compile(r"([0-9.]+)(min|ms|s)\b")
_UNITS = {"min": 60.0, "s": 1.0, "ms": 0.001}


def startup_seconds(text: str) -> float | None:
    """systemd-analyze's "Startup finished in 1.2s (kernel) + ... = 3.4s" (the total after "="), or, in a
    container, "Startup finished in 2.345s (userspace)"."""
    line = next((line for line in text.splitlines() if line.startswith("Startup finished in")), "")
    total = line.rsplit("=", 1)[1] if "=" in line else line.removeprefix("Startup finished in").split("(")[0]
    found = _DURATION.findall(total)
    return sum(float(number) * _UNITS[unit] for number, unit in found) if found else None


def vm_ids(lab: Lab) -> list[int]:
    return sorted(int(host["vmId"]) for host in hosts(lab.plan))


def up_row(lab: Lab) -> CheckResult:
    passed, output, took = up(lab)
    lab.figures["up s"] = round(took, 1)
    if not passed:
        return CheckResult("up", False, f"pulumi up failed after {took:.0f} s: {output}")
    vms = lab.pve.state().vms
    missing = [vmid for vmid in vm_ids(lab) if vmid not in vms]
    stopped = [vmid for vmid in vm_ids(lab) if not (guest := lab.machines.guests.get(vmid)) or not guest.running]
    outputs = json.loads(lab.workspace.pulumi("stack", "output", "--json", "--show-secrets", "--stack", STACK).stdout)
    config = lab.config
    if config.tls is not None and outputs.get("caCertificate"):
        ca_file = lab.workdir / "lab-ca.pem"
        ca_file.write_text(outputs["caCertificate"])
        lab.client.ca_file = ca_file
    expected = {
        "lbUrl": _site_url(config),
        "statsUrl": f"{'http' if config.tls is None else 'https'}://{config.site_ip}:{config.haproxy.stats_port}/stats",
        "webServers": {server.name: str(server.ip) for server in config.web_servers},
        "statsUser": config.haproxy.stats_user,
        "statsPassword": lab.stats_password,
    }
    wrong = sorted(key for key, value in expected.items() if outputs.get(key) != value)
    passed = not missing and not stopped and not wrong
    figures = f"{len(vms)} VMs in the fake, every guest running and provisioned in {took:.0f} s; outputs right"
    if not passed:
        figures = f"VMs missing {missing}, guests not running {stopped}, outputs wrong {wrong} ({outputs})"
    return CheckResult("up", passed, figures)


def _site_url(config: LabConfig) -> str:
    if config.tls is None:
        port = config.haproxy.frontend_port
        return f"http://{config.site_ip}/" if port == 80 else f"http://{config.site_ip}:{port}/"
    port = config.tls.https_port
    return f"https://{config.site_ip}/" if port == 443 else f"https://{config.site_ip}:{port}/"


def https_row(lab: Lab) -> CheckResult:
    """TLS on: the site over HTTPS verified against the stack's own CA output, HTTP/2 negotiated, and the stats
    page refused in plain HTTP (its password never in clear text)."""
    config = lab.config
    ca = str(lab.client.ca_file)
    answer = lab.client.run(
        "curl", "-s", "-m", "5", "--cacert", ca, "--http2", "-o", "/dev/null", "-w", "%{http_code} %{http_version}",
        _site_url(config),
    ).stdout.split()  # fmt: skip
    status, version = (int(answer[0]), answer[1]) if len(answer) == 2 and answer[0].isdigit() else (0, "?")
    plain, _ = lab.client.curl(
        f"http://{config.site_ip}:{config.haproxy.stats_port}/stats;csv",
        "-u",
        f"{config.haproxy.stats_user}:{lab.stats_password}",
    )
    passed = lab.client.ca_file is not None and status == 200 and version == "2" and plain != 200
    figures = f"HTTPS {status or 'no answer'} verified against caCertificate, HTTP/{version}; stats in plain HTTP -> "
    return CheckResult("https", passed, figures + (str(plain) if plain else "refused"))


def guest_figures(lab: Lab) -> None:
    """Boot time (systemd's own "Startup finished") and memory (PSS) of every guest, the machine's load."""
    boots, memory = [], []
    for guest in lab.machines.guests.values():
        boot = startup_seconds(guest.run(["systemd-analyze"], timeout_s=30).stdout)
        if boot is not None:
            boots.append(boot)
        memory.append(guest.memory_pss_bytes() / 2**20)
    if boots:
        # systemd's "Startup finished": to the default target, cloud-init's packages included.
        lab.figures["guest startup s (min-max)"] = f"{min(boots):.1f}-{max(boots):.1f}"
    lab.figures["guests PSS MiB (total, max)"] = f"{sum(memory):.0f}, {max(memory, default=0):.0f}"
    lab.figures["load average after up"] = " ".join(f"{value:.1f}" for value in os.getloadavg())


def no_drift(lab: Lab) -> list[CheckResult]:
    """Right after up: a preview plans nothing; a refresh finds nothing changed, and the preview after it
    still plans nothing (the perpetual disks[0].speed diff showed only after a refresh)."""
    rows = []
    preview = lab.workspace.pulumi("preview", "--expect-no-changes", "--diff", "--stack", STACK, check=False)
    rows.append(CheckResult("preview: no changes", preview.returncode == 0, _tail(preview.output, preview.returncode)))
    refresh = lab.workspace.pulumi(
        "refresh", "--yes", "--skip-preview", "--expect-no-changes", "--stack", STACK, check=False, timeout=600
    )
    again = lab.workspace.pulumi("preview", "--expect-no-changes", "--diff", "--stack", STACK, check=False)
    passed = refresh.returncode == 0 and again.returncode == 0
    figures = f"refresh: {_tail(refresh.output, refresh.returncode)}; "
    figures += f"preview after it: {_tail(again.output, again.returncode)}"
    rows.append(CheckResult("refresh: no drift", passed, figures))
    return rows


def second_up(lab: Lab) -> CheckResult:
    """A second `pulumi up` with nothing changed (the first to read the stack's `deployed` output back: the
    rolling order appears, components/rolling.py) plans and runs nothing: `--expect-no-changes` fails on any
    step but `same` (a remote command runs only in a create, update or delete), and no server leaves UP on
    the stats page meanwhile (a drain would show)."""
    watch = StateWatch(lab)
    started = time.monotonic()
    try:
        result = lab.workspace.pulumi(
            "up", "--yes", "--skip-preview", "--expect-no-changes", "--stack", STACK, check=False, timeout=900
        )
    finally:
        seen = watch.stop()
    took = time.monotonic() - started
    lab.figures["second up s"] = round(took, 1)
    left_up = {name: sorted(states) for name, states in seen.items() if states != {"UP"}}
    passed = result.returncode == 0 and bool(seen) and not left_up
    figures = f"{took:.0f} s: {_tail(result.output, result.returncode)}; servers seen not UP: {left_up or 'none'}"
    return CheckResult("second up: nothing runs", passed, figures)


def _tail(output: str, code: int) -> str:
    if code == 0:
        return "nothing to do"
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return f"exit {code}: " + " | ".join(lines[-12:])


def destroy_row(lab: Lab) -> CheckResult:
    """`pulumi destroy`; then the fake (which serves this stack alone) holds no VM, firewall, snippet, disk or
    image, and no guest is left."""
    started = time.monotonic()
    result = lab.workspace.pulumi("destroy", "--yes", "--skip-preview", "--stack", STACK, check=False, timeout=900)
    took = time.monotonic() - started
    lab.figures["destroy s"] = round(took, 1)
    state = lab.pve.state()
    held = {
        "vms": sorted(state.vms),
        "firewalls": sorted(state.firewalls),
        "snippets": list(state.snippet_files),
        "volumes": [f"{storage}:{name}" for storage, names in state.volumes.items() for name in names],
    }
    guests = sorted(lab.machines.guests)
    passed = result.returncode == 0 and not any(held.values()) and not guests
    figures = f"{took:.0f} s; the fake holds {held}; guests left {guests}"
    if result.returncode != 0:
        figures = f"exit {result.returncode}: {result.output[-1500:]}; " + figures
    return CheckResult("destroy", passed, figures)


def run_flow(
    lab: Lab, rows: list[CheckResult], *, with_day2: bool = True, destroy: bool = True, only: set[str] | None = None
) -> None:
    """Append each row to `rows` as it is decided (an interrupted run still prints the rows it had)."""
    rows.append(announce(up_row(lab)))
    if rows[-1].passed:
        guest_figures(lab)
        rows.extend(announce(row) for row in report_tests(lab))
        if lab.config.tls is not None:
            rows.append(announce(https_row(lab)))
        if lab.config.is_pair:
            rows.append(announce(ha_failover(lab)))
        rows.extend(announce(row) for row in no_drift(lab))
        rows.append(announce(second_up(lab)))
        if with_day2:
            day2(lab, rows, only)
    if destroy:
        rows.append(announce(destroy_row(lab)))
