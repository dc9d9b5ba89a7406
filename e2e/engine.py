"""Run the real Pulumi engine (CLI, language host, provider plugins) on a copy of the project.

Used by the tests (tests/engine_harness.py adds pytest's skip/fail) and by the end-to-end run (./tools/e2e).

Each Workspace is a temp dir with: a copy of the project (its .venv a link to the repo's), the stack's state in a
local file backend, PULUMI_HOME and a HOME of its own, and secrets encrypted with a passphrase. The engine is the
one tools/build-pulumi.sh caches, or the one installed the ordinary way (find_engine; docs/engine.md says which
pieces each case uses); its plugins are found as ambient plugins on PATH. Nothing is ever pointed at a
non-loopback address: tests set proxmoxve:endpoint to the fake Proxmox node (e2e/pve_running.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rehearsal.watchdog import kill_sessions

REPO = Path(__file__).resolve().parent.parent
VERSIONS_FILE = REPO / "tools" / "pulumi-engine" / "versions.env"
PASSPHRASE = "engine-tests-passphrase"  # noqa: S105 (a throwaway stack's, not a secret)
STACK = "dev"
PLUGINS = (
    "pulumi-language-python",
    "pulumi-resource-proxmoxve",
    "pulumi-resource-command",
    "pulumi-resource-pulumi-python",
)
# What the pulumi CLI's own release ships beside it: the Python language host and the dynamic-provider plugin.
BUNDLED_WITH_CLI = ("pulumi-language-python", "pulumi-resource-pulumi-python")
# Set to 1, the command plugin (our stand-in) runs remote commands on test addresses (docs/engine.md).
EXECUTE_ENV = "HAPROXY_LAB_COMMAND_EXECUTE"


def versions() -> dict[str, str]:
    """tools/pulumi-engine/versions.env as a dict (NAME=value lines)."""
    pins = {}
    for line in VERSIONS_FILE.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            pins[name] = value
    return pins


@dataclass(frozen=True)
class Engine:
    """Where each piece of the engine comes from: the directories put first on PATH (plugins on PATH are the
    engine's ambient plugins), and each binary's path, for the tests' messages and docs/engine.md."""

    path: tuple[Path, ...]
    pieces: dict[str, Path]

    @property
    def how(self) -> str:
        """ "built" (tools/build-pulumi.sh's cache), "installed" (the ordinary way) or "mixed"."""
        kinds = {"built" if piece.parent == built_dir() else "installed" for piece in self.pieces.values()}
        return kinds.pop() if len(kinds) == 1 else "mixed"


def built_dir() -> Path:
    """Where tools/build-pulumi.sh caches the binaries it builds."""
    cache = Path(os.environ.get("HAPROXY_LAB_CACHE", "/var/cache/haproxy-lab"))
    return Path(os.environ.get("PULUMI_ENGINE_DIR", cache / f"pulumi-{versions()['PULUMI_VERSION']}")) / "bin"


def _installed_pieces(pins: dict[str, str]) -> dict[str, Path]:
    """The engine installed the ordinary way: the pulumi CLI on PATH at the pinned version, the Python language
    host it bundles beside it, the plugins `pulumi plugin install` put in Pulumi's plugin cache."""
    found: dict[str, Path] = {}
    cli = shutil.which("pulumi")
    if cli is not None:
        version = subprocess.run([cli, "version"], capture_output=True, text=True, check=False, timeout=60)
        if version.stdout.strip() == f"v{pins['PULUMI_VERSION']}":
            found["pulumi"] = Path(cli)
            for bundled in BUNDLED_WITH_CLI:
                if (Path(cli).parent / bundled).is_file():
                    found[bundled] = Path(cli).parent / bundled
    cache = Path(os.environ.get("PULUMI_HOME", Path.home() / ".pulumi")) / "plugins"
    for plugin, pin in (("proxmoxve", "PROXMOXVE_PY_VERSION"), ("command", "COMMAND_PY_VERSION")):
        binary = cache / f"resource-{plugin}-v{pins[pin]}" / f"pulumi-resource-{plugin}"
        if binary.is_file():
            found[f"pulumi-resource-{plugin}"] = binary
    return found


def find_engine() -> Engine | None:
    """The engine the tests run: each piece built by tools/build-pulumi.sh if it is there, else installed the
    ordinary way; None if a piece is missing from both."""
    built = built_dir()
    installed = _installed_pieces(versions())
    pieces: dict[str, Path] = {}
    for name in ("pulumi", *PLUGINS):
        if (built / name).is_file():
            pieces[name] = built / name
        elif name in installed:
            pieces[name] = installed[name]
        else:
            return None
    return Engine(tuple(dict.fromkeys(piece.parent for piece in pieces.values())), pieces)


def kill_session(session: int) -> None:
    """SIGKILL every process of a session (the CLI, its plugins and the program, each in its own group)."""
    kill_sessions({session})


class EngineError(RuntimeError):
    """A pulumi command that failed or did not end in time (the message carries the end of its output)."""


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr

    def json(self) -> Any:
        return json.loads(self.stdout)


class Workspace:
    """A project copy (the repository's, or `source`), a file backend and a PULUMI_HOME in `root`, and
    the engine on PATH. The command plugin plans only, unless `execute_commands` (see docs/engine.md);
    `prefix` runs the CLI under a wrapper (e.g. in a network namespace)."""

    def __init__(
        self,
        root: Path,
        engine: Engine,
        source: Path = REPO,
        *,
        stack: str = STACK,
        execute_commands: bool = False,
        prefix: tuple[str, ...] = (),
    ) -> None:
        self.root = root
        self.stack = stack
        self.project = root / "project"
        self.state = root / "state"
        self.prefix = prefix
        # Told each pulumi command's session id as it starts (./tools/e2e tells its kill -9 guard).
        self.on_session: Callable[[int], None] = lambda _session: None
        self.state.mkdir(parents=True)
        (root / "user-home").mkdir()
        shutil.copytree(
            source,
            self.project,
            ignore=shutil.ignore_patterns(
                ".git", ".venv", "__pycache__", ".*_cache", "tests", "rehearsal", "benchmark", "build", "Pulumi.*.yaml"
            ),
        )
        (self.project / ".venv").symlink_to((REPO / ".venv").resolve())
        inherited = {
            k: v for k, v in os.environ.items() if not k.startswith(("PULUMI_", "PROXMOX_VE_")) and k != EXECUTE_ENV
        }
        self.env = {
            **inherited,
            **({EXECUTE_ENV: "1"} if execute_commands else {}),
            "PATH": os.pathsep.join([*map(str, engine.path), os.environ.get("PATH", "")]),
            "PULUMI_HOME": str(root / "home"),
            "HOME": str(root / "user-home"),  # the proxmoxve plugin writes ~/.ssh/known_hosts: never the real one
            "PULUMI_BACKEND_URL": f"file://{self.state}",
            "PULUMI_CONFIG_PASSPHRASE": PASSPHRASE,
            "PULUMI_SKIP_UPDATE_CHECK": "true",
            "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
            "PULUMI_SKIP_CONFIRMATIONS": "true",
            "NO_COLOR": "1",
            "PULUMI_DEBUG_COMMANDS": "true",  # enables `--event-log` (tests/engine_state.py reads planned outputs)
        }

    @property
    def stack_file(self) -> Path:
        return self.project / f"Pulumi.{self.stack}.yaml"

    def pulumi(self, *args: str, stdin: str | None = None, check: bool = True, timeout: int = 240) -> Result:
        # A session of its own: past the timeout, the CLI goes with its plugins and the program (killing
        # the CLI alone would leave them running, e.g. a plugin still dialing; each has its own group).
        with subprocess.Popen(
            [*self.prefix, "pulumi", *args, "--non-interactive"],
            cwd=self.project,
            env=self.env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        ) as proc:
            self.on_session(proc.pid)
            try:
                stdout, stderr = proc.communicate(stdin, timeout=timeout)
            except subprocess.TimeoutExpired:
                kill_session(proc.pid)
                stdout, stderr = proc.communicate()
                message = f"pulumi {' '.join(args)} did not end in {timeout} s:\n{(stdout + stderr)[-6000:]}"
                raise EngineError(message) from None
            except BaseException:  # Ctrl-C, SIGTERM: the CLI and its plugins go too
                kill_session(proc.pid)
                raise
        result = Result(proc.returncode, stdout, stderr)
        if check and proc.returncode != 0:
            raise EngineError(f"pulumi {' '.join(args)} exited {proc.returncode}:\n{result.output[-6000:]}")
        return result

    def init_stack(
        self, endpoint: str, config: dict[str, Any] | None = None, *, secrets: Mapping[str, str] | None = None
    ) -> None:
        """The dev stack's plan (Pulumi.dev.yaml), `config` on top, the endpoint on loopback, `secrets` set."""
        if not endpoint.startswith(("https://127.0.0.1:", "ftp://127.0.0.1:")):
            raise ValueError(f"proxmoxve:endpoint must be on loopback, got {endpoint}")
        self.pulumi("stack", "init", self.stack)  # writes the passphrase's salt into the stack file
        salt = yaml.safe_load(self.stack_file.read_text())
        plan = yaml.safe_load((REPO / "Pulumi.dev.yaml").read_text())["config"]
        plan.update(config or {})
        plan["proxmoxve:endpoint"] = endpoint
        self.stack_file.write_text(yaml.safe_dump({**salt, "config": plan}, sort_keys=False))
        pairs = (secrets or {}).items()
        self.pulumi("config", "set-all", *(arg for key, value in pairs for arg in ("--secret", f"{key}={value}")))

    def set_config(self, key: str, value: Any, *, secret: bool = False) -> None:
        if secret:
            self.pulumi("config", "set", "--secret", key, stdin=str(value))
            return
        doc = yaml.safe_load(self.stack_file.read_text())
        doc["config"][key] = value
        self.stack_file.write_text(yaml.safe_dump(doc, sort_keys=False))

    def preview(self, *extra: str, check: bool = True) -> Result:
        return self.pulumi("preview", "--json", "--stack", self.stack, *extra, check=check)
