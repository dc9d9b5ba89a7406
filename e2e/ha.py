"""The HA pair's row (stacks with `loadBalancer.standby`): the virtual IP on the active, the site answering
there; the active's HAProxy killed (SIGKILL, restarts masked so it stays dead): the standby holds the VIP and
the site answers again; then the active's HAProxy is started again and the VIP stays on a single holder.
"""

from __future__ import annotations

from e2e.lab import Lab
from e2e.report_tests import messages, urls
from rehearsal.poll import poll_until
from rehearsal.progress import seconds
from rehearsal.results import CheckResult

VIP_TIMEOUT_S = 30.0
KILL = "sudo sh -c 'systemctl mask --runtime haproxy && systemctl kill -s KILL haproxy'"
START = "sudo sh -c 'systemctl unmask --runtime haproxy && systemctl start haproxy'"


def holds(lab: Lab, ip: str, vip: str) -> bool:
    result = lab.ssh(ip, "ip -o -4 addr show", timeout=30)
    return f" {vip}/" in result.stdout


def ha_failover(lab: Lab) -> CheckResult:
    config = lab.config
    if config.virtual_ip is None:
        return CheckResult("ha failover", False, "not a pair")
    vip = str(config.virtual_ip)
    active, standby = (str(host.ip) for host in config.load_balancers)
    before = poll_until(lambda: holds(lab, active, vip) and not holds(lab, standby, vip), VIP_TIMEOUT_S, 0.2)
    serving = set(lab.client.answers(urls(lab)[0], 4)) <= set(messages(lab).values())
    killed = lab.ssh(active, KILL)
    moved = poll_until(lambda: holds(lab, standby, vip) and not holds(lab, active, vip), VIP_TIMEOUT_S, 0.1)
    after = lab.client.answers(urls(lab)[0], 2 * len(messages(lab)))
    serving_after = set(after) == set(messages(lab).values())
    started = lab.ssh(active, START)
    single = poll_until(lambda: holds(lab, active, vip) != holds(lab, standby, vip), VIP_TIMEOUT_S, 0.2)
    passed = (
        (before is not None and serving and killed.returncode == 0 and moved is not None and serving_after)
        and started.returncode == 0
        and single is not None
    )
    figures = (
        f"VIP {vip} on the active: {before is not None}; active's HAProxy killed ({killed.returncode}): the standby "
        f"holds the VIP after {seconds(moved)}, site answers {sorted(set(after))}; HAProxy started again, one holder"
        f" {single is not None}"
    )
    return CheckResult("ha failover", passed, figures)
