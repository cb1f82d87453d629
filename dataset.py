"""Get the Speech Commands clips and see how they split.

The work is in :mod:`kws.data`; this script is its command line::

    python dataset.py download                    # fetch mini_speech_commands.zip into data/
    python dataset.py download --full             # Speech Commands v0.02 (2.3 GB) into data/speech_commands{,_other}
    python dataset.py summary                     # clips per label and split ($KWS_DATA_DIR or ../shared)
    python dataset.py summary --data-dir DIR
"""

from __future__ import annotations

import argparse
import logging
import re
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from kws.data.clips import DEFAULT_DATA_DIR, DEFAULT_LABELS, DatasetError, resolve_data_dir, select_clips
from kws.data.download import (
    DEFAULT_FULL_DATA_DIR,
    FULL_SPEECH_COMMANDS_SHA256,
    FULL_SPEECH_COMMANDS_URL,
    MINI_SPEECH_COMMANDS_SHA256,
    MINI_SPEECH_COMMANDS_URL,
    download,
    download_full,
)
from kws.data.splits import is_training_only
from kws.reports import format_table
from kws.util.logs import setup_logging


def sha256_hex(text: str) -> str:
    """An --sha256 value: 64 hexadecimal digits."""
    if not re.fullmatch(r"[0-9a-fA-F]{64}", text):
        raise argparse.ArgumentTypeError(f"expected 64 hexadecimal digits, got {text!r}")
    return text.lower()


def summarise(data_dir: Path) -> dict[str, Counter]:
    """Clip counts per split and label (a training-only folder has all of its clips in 'train')."""
    splits = ("train", "validation", "test")
    return {name: Counter(clip.label for clip in select_clips(data_dir, name)) for name in splits}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Download the Speech Commands clips, or count them per split.")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("download", help="download and extract mini_speech_commands.zip (or, with --full, "
                                "the full Speech Commands v0.02)")
    fetch.add_argument("--full", action="store_true", help="the full v0.02 (105 829 clips, 35 words, 2.3 GB): keywords "
                       f"in DIR, other words and noise recordings in DIR_other (DIR default: {DEFAULT_FULL_DATA_DIR})")
    fetch.add_argument("--data-dir", type=Path, metavar="DIR",
                       help=f"where the label folders go (default: {DEFAULT_DATA_DIR})")
    fetch.add_argument("--url", help=f"archive to fetch, e.g. a local mirror (default: {MINI_SPEECH_COMMANDS_URL}, "
                       f"with --full {FULL_SPEECH_COMMANDS_URL})")
    fetch.add_argument("--sha256", metavar="HEX", type=sha256_hex,
                       help="the archive's SHA-256, checked before anything is kept (default: the official "
                       "archive's, pinned; give it for a mirror of another file)")
    summary = commands.add_parser("summary", help="count clips per label in each speaker-disjoint split")
    summary.add_argument(
        "--data-dir", type=Path, help="dataset folder (default: $KWS_DATA_DIR, ../shared/data/speech_commands, "
        f"or {DEFAULT_DATA_DIR})"
    )
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    try:
        if args.command == "download" and args.full:
            target = args.data_dir or DEFAULT_FULL_DATA_DIR
            keywords, others = download_full(target, args.url or FULL_SPEECH_COMMANDS_URL,
                                             sha256=args.sha256 or FULL_SPEECH_COMMANDS_SHA256)
            print(f"keywords are in {keywords}, other words and noise recordings in {others}")
            return 0
        if args.command == "download":
            folder = download(args.data_dir or DEFAULT_DATA_DIR, args.url or MINI_SPEECH_COMMANDS_URL,
                              sha256=args.sha256 or MINI_SPEECH_COMMANDS_SHA256)
            print(f"clips are in {folder}")
            return 0
        data_dir = resolve_data_dir(args.data_dir)
        counts = summarise(data_dir)
    except DatasetError as error:
        parser.exit(2, f"error: --data-dir: {error}\n")
    rows = [[label, *(counts[name][label] for name in counts)] for label in DEFAULT_LABELS]
    rows.append(["total", *(sum(c.values()) for c in counts.values())])
    print(format_table(["label", *counts], rows))
    if is_training_only(data_dir):
        print(f"{data_dir} is training-only: its speakers are unknown, so every clip is in 'train'")
    return 0


if __name__ == "__main__":
    sys.exit(main())
