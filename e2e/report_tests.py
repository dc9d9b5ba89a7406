"""The report's four tests, run as the report runs them, through the load balancer, from the lab's client
namespace: `curl` the site again and again (round robin), the stats page with and without the password,
`docker stop` of the app's container on the first web server over SSH (failover) and `docker start` (recovery).

Each waits on real state (the stats page's CSV), bounded, never a fixed sleep.
"""

from __future__ import annotations

from e2e.lab import Lab
from rehearsal.balance import ORDERED_BALANCES, REQUESTS_PER_SERVER
from rehearsal.checks import in_rotation
from rehearsal.poll import poll_until
from rehearsal.progress import seconds
from rehearsal.results import CheckResult

# The app's container as deploy-webapp.sh names it: compose project `haproxy-lab-web`, service `web`.
APP_CONTAINER = "haproxy-lab-web-web-1"
STATE_TIMEOUT_S = 30.0


def _short(answers: list[str]) -> str:
    shown = ", ".join(answers[:8])
    return shown + (f", ... ({len(answers)} in all)" if len(answers) > 8 else "")


def messages(lab: Lab) -> dict[str, str]:
    """Web server name -> the message it answers."""
    return {server["name"]: server["message"] for server in lab.plan["haproxy-lab:webServers"]}


def urls(lab: Lab) -> tuple[str, str]:
    """The site as the report asks it (plain HTTP: answered unless `tls.redirectHttp`), and the stats page
    where the program serves it (over TLS only when TLS is on)."""
    config = lab.config
    scheme = "http" if config.tls is None else "https"
    return f"http://{config.site_ip}/", f"{scheme}://{config.site_ip}:{config.haproxy.stats_port}/stats"


def states(lab: Lab) -> dict[str, str]:
    config = lab.config
    return lab.client.server_states(urls(lab)[1], config.haproxy.stats_user, lab.stats_password)


def balanced(lab: Lab, answers: list[str], expected: set[str]) -> bool:
    """The balance algorithm's promise to one client: a strict rotation (roundrobin, static-rr), the first
    server (first), one server (source), else every server seen (leastconn, random)."""
    balance = lab.config.haproxy.balance
    if balance in ORDERED_BALANCES:
        return in_rotation(answers, expected)
    if balance == "first":
        return set(answers) == {lab.plan["haproxy-lab:webServers"][0]["message"]}
    if balance == "source":
        return len(set(answers)) == 1 and set(answers) <= expected
    return set(answers) == expected


def round_robin(lab: Lab) -> CheckResult:
    expected = set(messages(lab).values())
    n = len(expected)
    count = 2 * n if lab.config.haproxy.balance in ORDERED_BALANCES else REQUESTS_PER_SERVER * n
    answers = lab.client.answers(urls(lab)[0], count)
    return CheckResult(
        "round-robin", balanced(lab, answers, expected), f"{lab.config.haproxy.balance}: {_short(answers)}"
    )


def stats(lab: Lab) -> CheckResult:
    found = states(lab)
    anonymous, _ = lab.client.curl(f"{urls(lab)[1]};csv")
    all_up = bool(found) and all(found.get(name) == "UP" for name in messages(lab))
    listed = ", ".join(f"{name} {status}" for name, status in found.items())
    return CheckResult("stats", all_up and anonymous == 401, f"{listed or 'no CSV'}; no credentials -> {anonymous}")


def _docker(lab: Lab, verb: str) -> str:
    first = lab.plan["haproxy-lab:webServers"][0]
    result = lab.ssh(first["ip"], f"sudo docker {verb} {APP_CONTAINER}")
    return "" if result.returncode == 0 else f"docker {verb} failed: {result.stderr.strip()[-300:]}"


def failover(lab: Lab) -> CheckResult:
    first = lab.plan["haproxy-lab:webServers"][0]
    error = _docker(lab, "stop")
    others = {message for name, message in messages(lab).items() if name != first["name"]}
    answers = lab.client.answers(urls(lab)[0], max(6, 2 * len(others)))
    down = poll_until(lambda: states(lab).get(first["name"], "").startswith("DOWN"), STATE_TIMEOUT_S, 0.2)
    passed = not error and set(answers) <= others and down is not None
    figures = error or f"{first['name']} stopped: {_short(answers)}; DOWN on the stats page {seconds(down)} after"
    return CheckResult("failover", passed, figures)


def recovery(lab: Lab) -> CheckResult:
    first = lab.plan["haproxy-lab:webServers"][0]
    error = _docker(lab, "start")
    up = poll_until(lambda: states(lab).get(first["name"]) == "UP", STATE_TIMEOUT_S, 0.2)
    expected = set(messages(lab).values())
    n = len(expected)
    answers: list[str] = []
    # Round robin first gives the returning server the turns it missed (docs/haproxy-cfg.md): go on in rounds.
    while len(answers) < 8 * n + 12 and not (len(answers) >= 2 * n and balanced(lab, answers[-2 * n :], expected)):
        answers += lab.client.answers(urls(lab)[0], n)
    passed = not error and up is not None and first["message"] in answers and balanced(lab, answers[-2 * n :], expected)
    figures = error or f"{first['name']} started, UP {seconds(up)} after; {_short(answers)}"
    return CheckResult("recovery", passed, figures)


def report_tests(lab: Lab) -> list[CheckResult]:
    return [round_robin(lab), stats(lab), failover(lab), recovery(lab)]
