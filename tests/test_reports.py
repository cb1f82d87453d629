"""kws.reports: the tables and JSON files the command-line tools end with."""

from __future__ import annotations

import json
from pathlib import Path

from kws.reports import format_table, write_json_report


def test_table_aligns_columns_and_formats_cells() -> None:
    table = format_table(["label", "clips", "accuracy"], [["down", 34, 0.5], ["stop", 7, None]], float_digits=2)
    assert table.splitlines() == [
        "label  clips  accuracy",
        "-----  -----  --------",
        "down      34      0.50",
        "stop       7         -",
    ]


def test_json_report_creates_its_folder(tmp_path: Path) -> None:
    path = tmp_path / "reports" / "nested" / "r.json"
    write_json_report(path, {"accuracy": 0.5, "labels": ["yes"]})
    assert json.loads(path.read_text()) == {"accuracy": 0.5, "labels": ["yes"]}
