"""Get the Speech Commands clips and see how they split.

The work is in :mod:`kws.data`; this script is its command line::

    python dataset.py download                    # fetch mini_speech_commands.zip into data/
    python dataset.py summary                     # clips per label and split ($KWS_DATA_DIR or ../shared)
    python dataset.py summary --data-dir DIR
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from kws.data.clips import DEFAULT_DATA_DIR, DEFAULT_LABELS, DatasetError, list_clips, resolve_data_dir
from kws.data.download import MINI_SPEECH_COMMANDS_URL, download
from kws.data.splits import partition_of
from kws.reports import format_table


def summarise(data_dir: Path) -> dict[str, Counter]:
    """Clip counts per split and label."""
    counts: dict[str, Counter] = {name: Counter() for name in ("train", "validation", "test")}
    for clip in list_clips(data_dir):
        counts[partition_of(clip.speaker)][clip.label] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download the Speech Commands clips, or count them per split.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("download", help="download and extract mini_speech_commands.zip")
    fetch.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where the label folders go (default: %(default)s)"
    )
    fetch.add_argument(
        "--url", default=MINI_SPEECH_COMMANDS_URL, help="archive to fetch, e.g. a local mirror (default: %(default)s)"
    )
    summary = commands.add_parser("summary", help="count clips per label in each speaker-disjoint split")
    summary.add_argument(
        "--data-dir", type=Path, help="dataset folder (default: $KWS_DATA_DIR, ../shared/data/speech_commands, "
        f"or {DEFAULT_DATA_DIR})"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        if args.command == "download":
            print(f"clips are in {download(args.data_dir, args.url)}")
            return 0
        counts = summarise(resolve_data_dir(args.data_dir))
    except DatasetError as error:
        parser.exit(2, f"error: --data-dir: {error}\n")
    rows = [[label, *(counts[name][label] for name in counts)] for label in DEFAULT_LABELS]
    rows.append(["total", *(sum(c.values()) for c in counts.values())])
    print(format_table(["label", *counts], rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
