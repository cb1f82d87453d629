"""What the benchmarks' command lines share: the clips folder (checked like every tool checks it),
the report's path, the log format, and how a run ends (the table on stdout, the JSON on disk)."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kws.data.clips import DatasetError, resolve_data_dir
from kws.reports import write_json_report
from kws.util.logs import setup_logging


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="Speech Commands folder (default: $KWS_DATA_DIR, else "
                        "../shared/data/speech_commands beside the checkout, else data/mini_speech_commands)")


def parse_bench_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, resolve ``--data-dir`` (a usage error naming it when there are no clips), start logging to stderr."""
    args = parser.parse_args(argv)
    try:
        args.data_dir = resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    setup_logging(logging.INFO)
    return args


def add_report_arguments(parser: argparse.ArgumentParser, default_report: Path) -> None:
    """``--data-dir`` (the clips rule of every tool) and ``--report``."""
    add_data_dir_argument(parser)
    parser.add_argument("--report", type=Path, default=default_report, help="JSON report (default: %(default)s)")


def finish(table: str, report: dict[str, Any], path: Path) -> int:
    """Print the table (stdout is for reports) and write the JSON report."""
    print(table)
    write_json_report(path, report)
    print(f"report written to {path}")
    return 0
