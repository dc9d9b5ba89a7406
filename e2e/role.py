"""The Proxmox role the README tells users to create, read from the README itself (its single source).

The README's "Proxmox side" section has `pveum role add HaproxyLab -privs "..."` lines, each after a
comment naming the PVE versions it is for (`# PVE 9:`, `# PVE 8.4 or 9:`). The tests give the fake
Proxmox API a token holding exactly that role, so a privilege the program needs and the README omits
fails them; the README's "Not needed:" sentence lists privileges it tells users to leave out.
"""

from __future__ import annotations

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"
ROLE = "HaproxyLab"

_VERSIONS = re.compile(r"^\s*#\s*PVE ([0-9.]+(?:(?:,| or| and) [0-9.]+)*)\s*(?:\(.*\))?:\s*$")
_ROLE_LINE = re.compile(r'^\s*pveum role add (\S+) -privs "([^"]*)"\s*$')


def readme_roles(text: str | None = None) -> dict[int, frozenset[str]]:
    """PVE major version -> the privileges of the HaproxyLab role on it, as the README lists them."""
    text = README.read_text() if text is None else text
    roles: dict[int, frozenset[str]] = {}
    versions: list[int] = []
    for number, line in enumerate(text.splitlines(), 1):
        heading = _VERSIONS.match(line)
        if heading:
            versions = [int(version.split(".")[0]) for version in re.findall(r"[0-9.]+", heading.group(1))]
            continue
        found = _ROLE_LINE.match(line)
        if not found or found.group(1) != ROLE:
            continue
        if not versions:
            raise ValueError(f"README line {number}: a `pveum role add {ROLE}` line needs a `# PVE <n>:` line above it")
        privileges = found.group(2).split()
        if len(set(privileges)) != len(privileges) or not privileges:
            raise ValueError(f"README line {number}: the {ROLE} role is empty or repeats a privilege")
        for version in versions:
            if version in roles:
                raise ValueError(f"README line {number}: a second {ROLE} role for PVE {version}")
            roles[version] = frozenset(privileges)
        versions = []
    if not roles:
        raise ValueError(f'the README has no `pveum role add {ROLE} -privs "..."` line')
    return roles


def readme_role(version: int = 9) -> frozenset[str]:
    """The privileges of the README's role for this PVE major version."""
    roles = readme_roles()
    if version not in roles:
        raise ValueError(f"the README has no {ROLE} role for PVE {version} (it has: {sorted(roles)})")
    return roles[version]


def readme_not_needed(text: str | None = None) -> frozenset[str]:
    """The privileges the README's "Not needed:" sentence names (in backquotes)."""
    text = README.read_text() if text is None else text
    found = re.search(r"Not\s+needed:(.*?)(?:\.\s*$|\.\n)", text, re.MULTILINE | re.DOTALL)
    if found is None:
        raise ValueError("the README has no `Not needed:` sentence after its role")
    return frozenset(re.findall(r"`([A-Z][A-Za-z]+(?:\.[A-Za-z]+)+)`", found.group(1)))
