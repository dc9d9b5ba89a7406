"""The HA pair's row (stacks with `loadBalancer.standby`): the virtual IP on one load balancer, the site
answering there; that one's HAProxy killed (SIGKILL, restarts masked so it stays dead): the other holds the
VIP and the site answers again; then HAProxy is started again and the VIP stays on a single holder.
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
    """Whichever load balancer holds the VIP (the first election is a race: nopreempt), its HAProxy is killed;
    the other must take the VIP and the site answer there."""
    config = lab.config
    if config.virtual_ip is None:
        return CheckResult("ha failover", False, "not a pair")
    vip = str(config.virtual_ip)
    pair = [str(host.ip) for host in config.load_balancers]
    holders: list[str] = []

    def one_holder() -> bool:
        holders[:] = [ip for ip in pair if holds(lab, ip, vip)]
        return len(holders) == 1

    if poll_until(one_holder, VIP_TIMEOUT_S, 0.2) is None:
        return CheckResult("ha failover", False, f"VIP {vip} not held by exactly one load balancer: {holders}")
    active = holders[0]
    (standby,) = (ip for ip in pair if ip != active)
    serving = set(lab.client.answers(urls(lab)[0], 4)) <= set(messages(lab).values())
    killed = lab.ssh(active, KILL)
    moved = poll_until(lambda: holds(lab, standby, vip) and not holds(lab, active, vip), VIP_TIMEOUT_S, 0.1)
    after = lab.client.answers(urls(lab)[0], 2 * len(messages(lab)))
    serving_after = set(after) == set(messages(lab).values())
    started = lab.ssh(active, START)
    single = poll_until(lambda: holds(lab, active, vip) != holds(lab, standby, vip), VIP_TIMEOUT_S, 0.2)
    passed = serving and killed.returncode == 0 and moved is not None and serving_after
    passed = passed and started.returncode == 0 and single is not None
    figures = (
        f"VIP {vip} on {active}; its HAProxy killed ({killed.returncode}): {standby} holds the VIP after "
        f"{seconds(moved)}, site answers {sorted(set(after))}; HAProxy started again, one holder {single is not None}"
    )
    return CheckResult("ha failover", passed, figures)
