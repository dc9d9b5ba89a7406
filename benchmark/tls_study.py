"""`python -m benchmark --tls`: what HTTPS costs on this machine, in one run, for each HAProxy build here.

Why: the generated certificate's key type (render/certificates.py) and the claim that TLS does not change the
lab's throughput rest on figures measured together: requests/s through the lab (2 web servers) over plain HTTP
and over HTTPS with keep-alive (wrk, 32 connections), new TLS handshakes per second against a frontend that
answers by itself (`openssl s_time -new`: a full handshake per connection, no resumption) with an RSA 2048 and an
ECDSA P-256 certificate, and HAProxy's own CPU per handshake; beside them the ceiling, `openssl speed`'s
signatures per second on one core (a full handshake costs the server one signature), and which OpenSSL each
HAProxy links (OpenSSL 3.0's handshake cost is a known HAProxy concern).
"""

from __future__ import annotations

import contextlib
import datetime
import os
import re
import shutil
import signal
import statistics
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from benchmark.ceiling import CEILING_HOST, _wait_listening, ceiling_cfg
from benchmark.resources import cpu_seconds
from benchmark.throughput import measure
from plan.model import LabConfig
from rehearsal.local_lab import LocalLab, free_port
from rehearsal.loopback import rehearsal_setup
from render.certificates import KEY_TYPES, haproxy_pem, issue_server, make_ca
from render.haproxy_cfg import TLS_CIPHERS, TLS_CIPHERSUITES

# tools/build-haproxy3.sh's cache (tests/haproxy_binaries.py finds it here too).
HAPROXY3 = Path("/var/cache/haproxy-lab/haproxy-3.0/haproxy")
SPEED_NAMES = {"rsa-2048": "rsa2048", "ecdsa-p256": "ecdsap256"}


def parse_speed(output: str) -> dict[str, float]:
    """Key type -> signatures per second, from `openssl speed rsa2048 ecdsap256`."""
    found: dict[str, float] = {}
    rsa = re.search(r"^rsa\s+2048 bits\s+\S+s\s+\S+s\s+([\d.]+)\s+[\d.]+\s*$", output, re.MULTILINE)
    ecdsa = re.search(r"^\s*256 bits ecdsa \(nistp256\)\s+\S+s\s+\S+s\s+([\d.]+)\s+[\d.]+\s*$", output, re.MULTILINE)
    if rsa:
        found["rsa-2048"] = float(rsa.group(1))
    if ecdsa:
        found["ecdsa-p256"] = float(ecdsa.group(1))
    return found


def parse_s_time(output: str) -> tuple[int, float]:
    """(connections, real seconds) from `openssl s_time -new`'s summary."""
    found = re.search(r"(\d+) connections in (\d+) real seconds", output)
    if not found:
        raise ValueError(f"unexpected s_time output:\n{output}")
    return int(found.group(1)), float(found.group(2))


def linked_openssl(binary: str) -> str:
    """`Built with` and `Running on` OpenSSL versions from `haproxy -vv`."""
    text = subprocess.run([binary, "-vv"], capture_output=True, text=True, timeout=10, check=False).stdout
    built = re.search(r"Built with OpenSSL version : (.+)", text)
    running = re.search(r"Running on OpenSSL version : (.+)", text)
    return f"built with {built.group(1) if built else '?'}, running on {running.group(1) if running else '?'}"


def openssl_speed(seconds: int = 3) -> dict[str, float]:
    """Signatures per second on one core, per key type (the handshake ceiling)."""
    argv = ["openssl", "speed", "-seconds", str(seconds), *SPEED_NAMES.values()]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=20 * seconds + 30, check=True)
    return parse_speed(result.stdout)


def tls_ceiling_cfg(bind: str, pem: Path) -> str:
    """The benchmark's self-answering frontend over TLS, with the lab's TLS settings."""
    cfg = ceiling_cfg(f"{bind} ssl crt {pem} alpn http/1.1")
    lines = (
        f"    ssl-default-bind-ciphers {TLS_CIPHERS}\n"
        f"    ssl-default-bind-ciphersuites {TLS_CIPHERSUITES}\n"
        "    ssl-default-bind-options prefer-client-ciphers ssl-min-ver TLSv1.2 no-tls-tickets\n"
    )
    return cfg.replace("global\n", f"global\n{lines}", 1)


@dataclass(frozen=True)
class Handshakes:
    key_type: str
    per_second: float
    haproxy_cpu_ms: float  # HAProxy's CPU time per handshake


def handshakes(binary: str, key_type: str, seconds: int) -> Handshakes:
    """New TLS handshakes per second against a self-answering HAProxy frontend with a `key_type` certificate."""
    port = free_port(CEILING_HOST)
    with tempfile.TemporaryDirectory(prefix="haproxy-lab-tls-bench-") as workdir:
        now = datetime.datetime.now(datetime.UTC)
        pem = Path(workdir) / "site.pem"
        server = issue_server(make_ca(now, key_type=key_type), ["bench.test"], [CEILING_HOST], now, key_type=key_type)
        pem.write_text(haproxy_pem(server), encoding="ascii")
        cfg = Path(workdir) / "haproxy.cfg"
        cfg.write_text(tls_ceiling_cfg(f"{CEILING_HOST}:{port}", pem), encoding="utf-8")
        with (Path(workdir) / "haproxy.log").open("wb") as log:
            proc = subprocess.Popen(
                [binary, "-db", "-f", str(cfg)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            _wait_listening(CEILING_HOST, port, proc)
            before = cpu_seconds([proc.pid])
            timed = subprocess.run(
                ["openssl", "s_time", "-new", "-connect", f"{CEILING_HOST}:{port}", "-time", str(seconds)],
                capture_output=True,
                text=True,
                timeout=seconds + 60,
                check=True,
            )
            used = cpu_seconds([proc.pid]) - before
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=10)
    count, elapsed = parse_s_time(timed.stdout)
    return Handshakes(key_type, count / elapsed, 1000.0 * used / max(count, 1))


def keepalive_rps(binary: str, plan: LabConfig, seconds: float, rounds: int) -> tuple[float, float]:
    """Requests/s through the lab (2 web servers) over plain HTTP and over HTTPS, both kept alive (wrk): the medians
    of `rounds` rounds on one lab, the two alternating first (other jobs on the machine slow both alike)."""
    workdir = Path(tempfile.mkdtemp(prefix="haproxy-lab-bench-tls-"))
    http: list[float] = []
    https: list[float] = []
    try:
        setup = rehearsal_setup(plan, 2, haproxy_bin=binary, tls_dir=workdir / "tls")
        with LocalLab(setup.lb, setup.servers, workdir, disposable_workdir=True) as lab:
            lab.start()
            if lab.lb.https_port is None:
                raise RuntimeError("the plan has no tls")
            runs = [(http, lab.lb.port, "http"), (https, lab.lb.https_port, "https")]
            for round_index in range(rounds):
                for figures, port, scheme in runs if round_index % 2 == 0 else runs[::-1]:
                    figures.append(measure(lab.lb.host, port, seconds=seconds, scheme=scheme).ok_per_second)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return statistics.median(http), statistics.median(https)


def tls_report(
    binaries: list[tuple[str, str]], plan: LabConfig, *, seconds: int, rounds: int, progress: object
) -> list[str]:
    """The study's lines, measured now: one block per HAProxy build, then the ceiling and the decision."""
    say = progress if callable(progress) else print
    speed = openssl_speed()
    lines = []
    for label, binary in binaries:
        say(f"HAProxy {label}: keep-alive HTTP vs HTTPS through the lab")
        http, https = keepalive_rps(binary, plan, float(seconds), rounds)
        shakes = []
        for key_type in KEY_TYPES:
            say(f"HAProxy {label}: new handshakes, {key_type}")
            shakes.append(handshakes(binary, key_type, seconds))
        lines.append(f"HAProxy {label} ({linked_openssl(binary)})")
        lines.append(
            f"  keep-alive, 32 connections, median of {rounds} rounds: HTTP {http:,.0f} req/s, "
            f"HTTPS {https:,.0f} req/s ({https / http:.0%})"
        )
        for shake in shakes:
            ceiling = speed.get(shake.key_type, 0)
            lines.append(
                f"  new handshakes, {shake.key_type:<10}: {shake.per_second:,.0f}/s (one s_time client), HAProxy "
                f"{shake.haproxy_cpu_ms:.2f} ms CPU each = {1000 / max(shake.haproxy_cpu_ms, 1e-6):,.0f} per CPU-s "
                f"(one core's signing ceiling: {ceiling:,.0f}/s)"
            )
    lines.append(
        "openssl speed (one core): "
        + ", ".join(f"{key_type} {speed.get(key_type, 0):,.0f} sign/s" for key_type in KEY_TYPES)
    )
    return lines
