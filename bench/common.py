"""What the benchmarks' command lines share: the clips folder, checked like every tool checks it, and the log format."""

from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from kws.data.clips import DatasetError, resolve_data_dir

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def add_data_dir_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", type=Path, help="Speech Commands folder (default: $KWS_DATA_DIR or ../shared)")


def parse_bench_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, resolve ``--data-dir`` (a usage error naming it when there are no clips), start logging to stderr."""
    args = parser.parse_args(argv)
    try:
        args.data_dir = resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT)
    return args
