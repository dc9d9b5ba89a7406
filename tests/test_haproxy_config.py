"""haproxy.cfg rendering: content required by the lab, safe quoting, refusals, and `haproxy -c` on 2.6 and 3.0.

Why run real HAProxy: string checks cannot prove the config parses the same on every version the VMs may
run, nor that a hostile password still authenticates exactly as typed.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from plan.model import LabConfig
from plan.parse import parse_lab_config
from plan.values import BALANCE_ALGORITHMS
from rehearsal.local_lab import free_port
from rehearsal.stats import basic_auth_header
from render.haproxy_cfg import (
    Backend,
    HaproxySettings,
    quote_haproxy_word,
    render_haproxy_cfg,
    render_lab_haproxy_cfg,
)
from render.shipping import CONFIG_TRAILER
from tests.haproxy_binaries import all_haproxies, checkable_cfg, haproxy26
from tests.http_probe import get_when_listening
from tests.plans import dev_raw, ha_raw, lab_with_servers

PASSWORD = "s3cret-Pass"
StartHaproxy = Callable[[str, str], int]  # (binary, password) -> stats port
HOSTILE_PASSWORDS = [
    "with spaces  inside",
    "#starts-with-hash",
    "ends-with-hash#",
    "it's",
    "'",
    "''",
    'say "hi"',
    '"',
    "$HOME",
    "${HOME}",
    '"$HOME"',
    "back\\slash",
    "\\",
    "\\'",
    "\\x41",
    "\\n",
    "a:b:c",
    "tab-free ünïcødé ✓",
    "a'b\"c#d$e\\f g",
]


def loopback_settings(password: str = PASSWORD, **changes: object) -> HaproxySettings:
    """A rehearsal-style (unpackaged) variant; the ports are placeholders unless a test starts HAProxy."""
    base = HaproxySettings(
        frontend_bind="127.0.0.30:18080",
        stats_bind="127.0.0.30:18404",
        servers=[Backend("WEB1-SAM", "127.0.0.31:18081"), Backend("WEB2-SAM", "127.0.0.32:18082")],
        balance="roundrobin",
        health_host="haproxy-sam.mvgroup.local",
        stats_user="admin",
        stats_password=password,
        client_cidr="127.0.0.0/8",
        admin_cidr="127.0.0.0/8",
        packaged=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def haproxy_check(binary: str, cfg: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    path = checkable_cfg(cfg, tmp_path)
    return subprocess.run([binary, "-c", "-f", str(path)], capture_output=True, text=True, timeout=30, check=False)


def assert_valid_everywhere(cfg: str, tmp_path: Path) -> None:
    for label, binary in all_haproxies():
        result = haproxy_check(binary, cfg, tmp_path)
        assert result.returncode == 0, f"HAProxy {label} rejects the config:\n{result.stdout}{result.stderr}"


# --- content -------------------------------------------------------------------------------------------------


def test_dev_stack_renders_the_vm_config(dev: LabConfig) -> None:
    cfg = render_lab_haproxy_cfg(dev, PASSWORD)
    lines = [line.strip() for line in cfg.splitlines()]
    assert "bind *:80" in lines
    assert "bind *:443 ssl crt /etc/haproxy/tls/site.pem alpn h2,http/1.1" in lines
    assert "bind *:8404 ssl crt /etc/haproxy/tls/site.pem alpn h2,http/1.1" in lines
    plain = [line.strip() for line in render_lab_haproxy_cfg(dataclasses.replace(dev, tls=None), PASSWORD).splitlines()]
    assert "bind *:8404" in plain
    assert not [line for line in plain if "ssl" in line or ":443" in line]
    assert "server WEB1-SAM 10.0.0.31:80" in lines
    assert "server WEB2-SAM 10.0.0.32:80" in lines
    assert "balance roundrobin" in lines
    assert "http-check send meth GET uri '/healthz' ver HTTP/1.1 hdr Host haproxy-sam.mvgroup.local" in lines
    assert "http-check expect status 200" in lines
    assert "option httpchk" in lines
    for global_line in (
        "log /dev/log local0",
        "chroot /var/lib/haproxy",
        "user haproxy",
        "group haproxy",
        "stats socket /run/haproxy/admin.sock mode 660 level admin",
    ):
        assert global_line in lines
    assert "stats uri /stats" in lines
    assert f"stats auth 'admin:{PASSWORD}'" in lines
    assert "acl admin_network src 10.0.0.0/16" in lines
    assert "http-request use-service prometheus-exporter if { path /metrics }" in lines
    assert "tcp-request connection reject if !{ src 10.0.0.0/16 }" in lines


def test_failover_settings_are_present(dev: LabConfig) -> None:
    cfg = render_lab_haproxy_cfg(dev, PASSWORD)
    lines = [line.strip() for line in cfg.splitlines()]
    assert "option redispatch 1" in lines
    assert "retries 3" in lines
    assert "retry-on conn-failure empty-response response-timeout 0rtt-rejected 502 503 504" in lines
    assert "http-request disable-l7-retry unless METH_GET" in lines
    for timeout in ("connect", "server", "client", "http-request", "queue", "check"):
        assert any(line.startswith(f"timeout {timeout} ") for line in lines), timeout
    default_server = next(line for line in lines if line.startswith("default-server "))
    for word in ("check", "inter 500ms", "fastinter 250ms", "fall 2", "rise 2", "observe layer7", "on-error"):
        assert word in default_server


def test_last_line_is_the_trailer(dev: LabConfig) -> None:
    for cfg in (render_lab_haproxy_cfg(dev, PASSWORD), render_haproxy_cfg(loopback_settings())):
        assert cfg.endswith("\n")
        assert cfg.splitlines()[-1] == CONFIG_TRAILER


def test_stats_admin_is_never_open_to_everybody(dev: LabConfig) -> None:
    for cfg in (render_lab_haproxy_cfg(dev, PASSWORD), render_haproxy_cfg(loopback_settings())):
        stats_admin = [line.strip() for line in cfg.splitlines() if line.strip().startswith("stats admin")]
        assert stats_admin == ["stats admin if stats_user_ok"]
        assert "acl stats_user_ok http_auth(stats_users)" in cfg
        directives = [line for line in cfg.splitlines() if not line.strip().startswith("#")]
        assert not any("if TRUE" in line for line in directives)


def test_never_the_old_httpchk_form(dev: LabConfig) -> None:
    cfg = render_lab_haproxy_cfg(dev, PASSWORD)
    directives = [line.strip() for line in cfg.splitlines() if not line.strip().startswith("#")]
    assert not any(line.startswith("option httpchk ") for line in directives)
    assert not any("\\r\\n" in line for line in directives)


@pytest.mark.parametrize("count", [1, 3, 10])
def test_one_server_line_per_web_server(dev: LabConfig, count: int, tmp_path: Path) -> None:
    lab = lab_with_servers(count)
    cfg = render_lab_haproxy_cfg(lab, PASSWORD)
    server_lines = [line.strip() for line in cfg.splitlines() if line.strip().startswith("server ")]
    assert server_lines == [f"server WEB{i + 1}-SAM 10.0.0.{31 + i}:80" for i in range(count)]
    assert_valid_everywhere(cfg, tmp_path)


@pytest.mark.parametrize("balance", BALANCE_ALGORITHMS)
def test_every_balance_algorithm_renders_and_parses(dev: LabConfig, balance: str, tmp_path: Path) -> None:
    lab = dataclasses.replace(dev, haproxy=dataclasses.replace(dev.haproxy, balance=balance))
    cfg = render_lab_haproxy_cfg(lab, PASSWORD)
    assert f"    balance {balance}\n" in cfg
    assert_valid_everywhere(cfg, tmp_path)


def test_dev_stack_and_rehearsal_variants_pass_haproxy_check(dev: LabConfig, tmp_path: Path) -> None:
    assert_valid_everywhere(render_lab_haproxy_cfg(dev, PASSWORD), tmp_path)
    assert_valid_everywhere(render_haproxy_cfg(loopback_settings()), tmp_path)
    socket_variant = loopback_settings(stats_socket=str(tmp_path / "admin.sock"), log_target="stdout")
    assert_valid_everywhere(render_haproxy_cfg(socket_variant), tmp_path)


# --- quoting -------------------------------------------------------------------------------------------------


def test_quote_wraps_in_single_quotes_and_escapes_single_quotes() -> None:
    assert quote_haproxy_word("plain") == "'plain'"
    assert quote_haproxy_word("it's") == "'it'\\''s'"
    assert quote_haproxy_word('a"b#c$d\\e f') == "'a\"b#c$d\\e f'"


@pytest.mark.parametrize("bad", ["", "line\nbreak", "carriage\rreturn", "tab\tinside", "nul\x00", "del\x7f"])
def test_quote_refuses_empty_and_control_characters(bad: str) -> None:
    with pytest.raises(ValueError, match=r"empty|control character"):
        quote_haproxy_word(bad)


@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_hostile_passwords_keep_the_config_valid(dev: LabConfig, password: str, tmp_path: Path) -> None:
    cfg = render_lab_haproxy_cfg(dev, password)
    assert cfg.splitlines()[-1] == CONFIG_TRAILER
    assert_valid_everywhere(cfg, tmp_path)


# --- refusals ------------------------------------------------------------------------------------------------


def test_quoting_is_the_last_net_for_a_line_break(dev: LabConfig) -> None:
    """The plan refuses control characters; should one reach the renderer, quoting still refuses it."""
    with pytest.raises(ValueError, match="control character"):
        render_lab_haproxy_cfg(dev, "two\nlines")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"servers": []}, "no web servers"),
        ({"servers": [Backend("a b", "127.0.0.31:80")]}, "server name"),
        ({"servers": [Backend("WEB1", "127.0.0.31:80"), Backend("web1", "127.0.0.32:80")]}, "unique"),
        ({"servers": [Backend("WEB1", "*:80")]}, "address"),
        ({"frontend_bind": "localhost"}, "frontend bind"),
        ({"stats_bind": "127.0.0.30:18080"}, "share"),
        ({"health_host": "bad host"}, "Host"),
        ({"log_target": "stderr format raw"}, "log target"),
        ({"stats_socket": "admin.sock"}, "stats socket"),  # HAProxy would read it as host:port
        ({"stats_socket": "/run/a b.sock"}, "stats socket"),
    ],
)
def test_other_bad_settings_are_refused(change: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        render_haproxy_cfg(dataclasses.replace(loopback_settings(), **change))  # type: ignore[arg-type]


# --- a real HAProxy reads the password back exactly ------------------------------------------------------------


@pytest.fixture
def run_haproxy(tmp_path: Path) -> Iterator[StartHaproxy]:
    """Start HAProxy on a rendered loopback config; every process started is killed at teardown."""
    procs: list[subprocess.Popen[bytes]] = []

    def start(binary: str, password: str) -> int:
        stats_port = free_port("127.0.0.30")
        settings = loopback_settings(
            password, frontend_bind=f"127.0.0.30:{free_port('127.0.0.30')}", stats_bind=f"127.0.0.30:{stats_port}"
        )
        cfg = tmp_path / f"haproxy-{len(procs)}.cfg"
        cfg.write_text(render_haproxy_cfg(settings), encoding="utf-8")
        log = (tmp_path / f"haproxy-{len(procs)}.log").open("wb")
        procs.append(subprocess.Popen([binary, "-db", "-f", str(cfg)], stdout=log, stderr=log, start_new_session=True))
        log.close()
        return stats_port

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def stats_status(port: int, user: str | None, password: str | None, path: str = "/stats;csv") -> int:
    """Status of one stats request (bounded retries while HAProxy starts listening)."""
    headers = {} if user is None or password is None else {"Authorization": basic_auth_header(user, password)}
    return get_when_listening("127.0.0.30", port, path, headers=headers)[0]


@pytest.mark.slow
@pytest.mark.parametrize("password", HOSTILE_PASSWORDS)
def test_hostile_password_authenticates_exactly_as_written(run_haproxy: StartHaproxy, password: str) -> None:
    for _label, binary in all_haproxies():
        port = run_haproxy(binary, password)
        assert stats_status(port, "admin", password) == 200
        assert stats_status(port, "admin", password, "/metrics") == 200
        assert stats_status(port, "admin", password + "x") == 401
        assert stats_status(port, None, None) == 401
        assert stats_status(port, None, None, "/metrics") == 401


@pytest.mark.slow
@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(password=st.text(st.characters(blacklist_categories=("Cc", "Cs")), min_size=1, max_size=40))
def test_any_printable_password_round_trips(run_haproxy: StartHaproxy, password: str) -> None:
    port = run_haproxy(haproxy26(), password)
    assert stats_status(port, "admin", password) == 200
    assert stats_status(port, "admin", password[:-1] or "x" + password) == 401


def test_config_id_names_the_whole_content(dev: LabConfig) -> None:
    """apply-haproxy-cfg.sh proves a reload by reading this id back: any change must change it."""

    def config_id(text: str) -> str:
        lines = [line.split() for line in text.splitlines() if "HAPROXY_LAB_CONFIG_ID" in line and "setenv" in line]
        assert len(lines) == 1
        assert lines[0][:2] == ["setenv", "HAPROXY_LAB_CONFIG_ID"]
        return lines[0][2]

    base = config_id(render_lab_haproxy_cfg(dev, PASSWORD))
    assert len(base) == 16
    assert int(base, 16) != 0
    assert config_id(render_lab_haproxy_cfg(dev, PASSWORD)) == base
    assert config_id(render_lab_haproxy_cfg(dev, PASSWORD + "x")) != base
    assert config_id(render_lab_haproxy_cfg(lab_with_servers(3), PASSWORD)) != base
    rehearsal = loopback_settings()
    assert config_id(render_haproxy_cfg(rehearsal)) != config_id(
        render_haproxy_cfg(dataclasses.replace(rehearsal, balance="leastconn"))
    )


@pytest.mark.parametrize(
    "tls",
    [None, {}, {"redirectHttp": True}, {"redirectHttp": True, "httpsPort": 8443}],
    ids=["tls-off", "tls-on", "redirect-443", "redirect-8443"],
)
def test_every_tls_variant_of_both_stacks_passes_haproxy_check(tls: dict[str, object] | None, tmp_path: Path) -> None:
    for raw in (dev_raw(), ha_raw()):
        raw.pop("tls")
        if tls is not None:
            raw["tls"] = tls
        cfg = render_lab_haproxy_cfg(parse_lab_config(raw), PASSWORD)
        assert ("ssl crt" in cfg) == (tls is not None)
        assert ("redirect" in cfg) == bool(tls and tls.get("redirectHttp"))
        assert_valid_everywhere(cfg, tmp_path)
