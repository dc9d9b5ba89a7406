"""The text of a script from files/scripts, as it runs on a VM: shared snippets inlined.

Why inline rather than source: each script travels alone as `sh -c '<text>'` over SSH (see
remote.py), so there is no file to source on the VM; a line `# haproxy-lab: include lib/<x>.sh`
is replaced here by that file, keeping one copy of shared code (e.g. the apt lock/retry helpers).
"""

from __future__ import annotations

import re

from components.templates import read_file

_INCLUDE = re.compile(r"^# haproxy-lab: include (lib/[a-z0-9-]+\.sh)\n", re.MULTILINE)


def script_text(name: str) -> str:
    """files/scripts/<name> with its includes inlined: exactly what runs, and what is hashed."""

    def inline(match: re.Match[str]) -> str:
        library = read_file(f"scripts/{match.group(1)}")
        if _INCLUDE.search(library):
            raise ValueError(f"scripts/{match.group(1)} includes another file: keep libraries flat")
        return f"# --- {match.group(1)} (inlined) ---\n{library}# --- end of {match.group(1)} ---\n"

    return _INCLUDE.sub(inline, read_file(f"scripts/{name}"))
