"""What every benchmark's command line does alike: find the clips, print the table, write the JSON."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from kws.data.clips import DatasetError, resolve_data_dir
from kws.reports import write_json_report


def add_report_arguments(parser: argparse.ArgumentParser, default_report: Path) -> None:
    """``--data-dir`` (the clips rule of every tool) and ``--report``."""
    parser.add_argument("--data-dir", type=Path, help="Speech Commands folder (default: the usual search)")
    parser.add_argument("--report", type=Path, default=default_report, help="JSON report (default: %(default)s)")


def resolve_data_dir_argument(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Replace ``args.data_dir`` by the folder the clips are in; a usage error naming the flag if none."""
    try:
        args.data_dir = resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")


def finish(table: str, report: dict[str, Any], path: Path) -> int:
    """Print the table (stdout is for reports) and write the JSON report."""
    print(table)
    write_json_report(path, report)
    print(f"report written to {path}")
    return 0
