"""Where the golden guest image is: tools/build-guest-image.sh builds it once per recipe and says where."""

from __future__ import annotations

import subprocess
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "tools" / "build-guest-image.sh"


def golden_image(build: bool = True) -> Path:
    """The image directory (its `rootfs` and `ready` stamp), built first when `build` and missing (minutes)."""
    argv = ["sh", str(BUILD_SCRIPT)] if build else ["sh", str(BUILD_SCRIPT), "--print-dir"]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{BUILD_SCRIPT.name} failed:\n{result.stderr.strip()}")
    directory = Path(result.stdout.strip().splitlines()[-1])
    if build and not (directory / "ready").exists():
        raise RuntimeError(f"{directory} has no ready stamp after {BUILD_SCRIPT.name}")
    return directory


def image_facts(directory: Path) -> dict[str, str]:
    """The `key=value` lines the build wrote: suite, the base image's real Python, build time, size."""
    facts: dict[str, str] = {}
    for line in (directory / "ready").read_text().splitlines():
        key, _, value = line.partition("=")
        facts[key] = value
    return facts
