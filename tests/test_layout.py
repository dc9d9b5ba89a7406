"""The house stays small and readable: no import circle between our modules, no module over 400 lines, no test
file over 500 (issue 19)."""

from __future__ import annotations

import ast
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
MAX_MODULE_LINES = 400
MAX_TEST_LINES = 500


def python_files() -> list[Path]:
    tracked = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    return [REPO / name for name in tracked.split()]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, known: set[str]) -> set[str]:
    """Our modules that `path` imports at module level or inside functions (a lazy import still closes a circle)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
        found.update(name for name in names if name in known)
    return found


def test_no_import_circle() -> None:
    files = {module_name(path): path for path in python_files() if "files/webapp" not in str(path)}
    graph = {name: imports(path, set(files)) - {name} for name, path in files.items()}
    circles: list[list[str]] = []

    def visit(name: str, trail: list[str]) -> None:
        if name in trail:
            circles.append([*trail[trail.index(name) :], name])
            return
        for imported in sorted(graph.get(name, ())):
            if not circles:
                visit(imported, [*trail, name])

    for name in sorted(graph):
        visit(name, [])
    assert not circles, " -> ".join(circles[0])


def test_no_module_or_test_file_is_too_long() -> None:
    too_long = []
    for path in python_files():
        limit = MAX_TEST_LINES if path.relative_to(REPO).parts[0] == "tests" else MAX_MODULE_LINES
        lines = len(path.read_text(encoding="utf-8").splitlines())
        if lines > limit:
            too_long.append(f"{path.relative_to(REPO)}: {lines} lines (at most {limit})")
    assert not too_long, "\n".join(too_long)
