"""How the command-line tools present results: text tables for people, JSON for machines.

Evaluation, benchmarks and compatibility checks all end in a table on stdout and
an optional JSON report; one formatter keeps them alike and out of each script.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], float_digits: int = 4) -> str:
    """A plain-text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[_format_cell(value, float_digits) for value in row] for row in rows]
    widths = [max(len(row[column]) for row in cells) for column in range(len(headers))]

    def line(row: Sequence[str]) -> str:
        first, *rest = (row[column].ljust(widths[column]) if column == 0 else row[column].rjust(widths[column])
                        for column in range(len(headers)))
        return "  ".join([first, *rest]).rstrip()

    rule = "  ".join("-" * width for width in widths)
    return "\n".join([line(cells[0]), rule, *(line(row) for row in cells[1:])])


def _format_cell(value: Any, float_digits: int) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{float_digits}f}"
    return str(value)


def write_json_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON, creating the folder (``reports/`` is not in git)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2) + "\n")
