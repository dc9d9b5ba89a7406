"""`python -m e2e.guests cleanup RUN_DIR`: remove what a run of NspawnMachines left (after a kill -9)."""

from __future__ import annotations

import sys
from pathlib import Path

from e2e.guests.record import cleanup


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] != "cleanup":
        print("usage: python -m e2e.guests cleanup RUN_DIR", file=sys.stderr)
        return 2
    left = cleanup(Path(argv[1]))
    for item in left:
        print(f"left: {item}", file=sys.stderr)
    return 1 if left else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
