"""The rehearsal's one result row (a check or a drill: name, verdict, figures) and the one table printer,
for the loopback lab's checks and the HA pair's drills alike."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

FIGURES_WIDTH = 88


@dataclass(frozen=True)
class CheckResult:
    """One row of the rehearsal table."""

    name: str
    passed: bool
    figures: str

    @property
    def result(self) -> str:
        return "PASS" if self.passed else "FAIL"


def format_table(rows: Sequence[CheckResult]) -> str:
    """The rows as an aligned text table, long figures wrapped under their column."""
    name_width = max([len("check"), *(len(row.name) for row in rows)])
    header = f"{'#':>2}  {'check':<{name_width}}  result  figures"
    lines = [header, "-" * (len(header) + FIGURES_WIDTH - len("figures"))]
    indent = " " * (2 + 2 + name_width + 2 + 6 + 2)
    for number, row in enumerate(rows, start=1):
        wrapped = textwrap.wrap(row.figures, FIGURES_WIDTH) or [""]
        lines.append(f"{number:>2}  {row.name:<{name_width}}  {row.result:<6}  {wrapped[0]}")
        lines.extend(indent + more for more in wrapped[1:])
    return "\n".join(lines)
