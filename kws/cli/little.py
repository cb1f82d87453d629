"""The Little half of the Big/Little cascade: answer on the Pi, ask the Big service when unsure.

Each clip goes through the Little model (``models/little``, its zlib file, as the
Pi loads it); when the score margin (top-1 minus top-2) is below the threshold
that ships in the model's metadata, Big answers instead, sent Big's own features
(or the clip). Big unreachable: Little's answer stands and is counted. No labels
are needed; accuracy is reported where clips have them. The work is in
:mod:`kws.cascade`; ``--listen SOURCE`` spots keywords on a stream instead, Big
confirming (:mod:`kws.listen`). Choosing the threshold, or judging every threshold,
is offline work: ``calibrate.py`` (:mod:`kws.cli.calibrate`)::

    python little_client.py recordings/                 # any WAV files or folders, labelled or not
    python little_client.py --data-dir DIR --split test --report reports/cascade.json
    arecord -f S16_LE -r 16000 -c 1 -t raw | python little_client.py --listen -   # always listening

Installed with pip this program is the command ``kws-little`` (same flags); from a
checkout it is ``python little_client.py``. Logs go to stderr, one line each (without the
time when stderr is the systemd journal, which stamps lines itself: :mod:`kws.util.logs`).
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip at a time

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kws.cascade.run import IncompatibleModels, NoThreshold, SessionSettings, format_run_summary, run_session
from kws.cli.big_client_flags import add_big_client_arguments, big_client_settings
from kws.cli.listen_mode import add_listen_arguments, run_listen, wants_listen
from kws.data.clips import clips_from_paths, resolve_data_dir, select_clips
from kws.errors import KwsError, blame
from kws.model.runtime import load_model
from kws.reports import write_json_report
from kws.rest.client import BigClient, BigClientSettings, BigError
from kws.util.logs import progress_wanted, setup_logging

#: Flags this program had for offline work, and the command that does it now.
MOVED_FLAGS = {
    "--calibrate": "calibrate.py cascade --data-dir DIR", "--calibrate-split": "calibrate.py cascade --split SPLIT",
    "--write-metadata": "calibrate.py cascade --write-metadata JSON", "--sweep": "calibrate.py sweep",
    "--plot": "calibrate.py sweep --plot PNG",
}


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace, BigClientSettings]:
    parser = argparse.ArgumentParser(
        description="Classify clips with the Little model and ask the Big service when Little is unsure.",
        epilog="The threshold ships in the Little model's metadata (its 'cascade' section, calibrated at export "
        "on validation speakers); --threshold overrides it. To choose one on your own labelled clips, or to judge "
        "every threshold: python calibrate.py --help.",
    )
    parser.add_argument("inputs", nargs="*", type=Path, metavar="CLIP_OR_DIR",
                        help="clip files (WAV, FLAC, Ogg Opus) or folders of them, labelled or not "
                        "(default: --split of --data-dir)")
    parser.add_argument("--data-dir", type=Path, metavar="DIR",
                        help="labelled Speech Commands folder (default: $KWS_DATA_DIR, else "
                        "../shared/data/speech_commands beside the checkout, else data/mini_speech_commands)")
    parser.add_argument("--split", default="test", metavar="SPLIT",
                        help="of --data-dir: train, validation, test, all, or a split file (default: %(default)s)")
    parser.add_argument("--model", metavar="STEM", type=Path, default=Path("models/little"),
                        help="Little model stem; its .tflite.zlib is loaded (default: %(default)s, from the current "
                        "folder or else the one installed with the package)")
    parser.add_argument("--threshold", type=float, metavar="T",
                        help="ask Big when Little's margin is below T, 0 to 1 (default: the shipped one)")
    parser.add_argument("--report", metavar="JSON", type=Path, help="write the JSON report here (default: none)")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (there are none when stderr is not a terminal)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_big_client_arguments(parser)
    add_listen_arguments(parser)
    args, unknown = parser.parse_known_args(argv)
    for flag in (argument.split("=", 1)[0] for argument in unknown):
        if flag in MOVED_FLAGS:
            parser.error(f"{flag} is offline work, done by: python {MOVED_FLAGS[flag]} (python calibrate.py --help)")
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    big = big_client_settings(parser, args)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1 (a score margin), got {args.threshold}")
    return parser, args, big


def main(argv: Sequence[str] | None = None) -> int:
    parser, args, big = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # urllib3 warns about every retried attempt; BigClient reports an outage once
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    if wants_listen(args):
        return run_listen(parser, args, big)
    try:
        return run_clips(args, big)
    except KwsError as error:
        parser.exit(error.exit_code, f"error: {error.explain()}\n")


def run_clips(args: argparse.Namespace, big_settings: BigClientSettings) -> int:
    """The cascade over the clips the flags name; prints the summary, writes the report; the exit status."""
    with blame(f"--model {args.model}"):
        little = load_model(args.model, prefer="zlib")
    with blame("CLIP_OR_DIR" if args.inputs else "--data-dir/--split"):
        if args.inputs:
            clips = clips_from_paths(args.inputs, little.labels)
        else:
            clips = select_clips(resolve_data_dir(args.data_dir), args.split, little.labels)
    settings = SessionSettings(threshold=args.threshold, progress=progress_wanted(not args.no_progress))
    with BigClient.from_settings(big_settings) as big, blame(f"--model {args.model}", NoThreshold), \
            blame(f"--service {args.service}", BigError, IncompatibleModels):
        report = run_session(clips, little, big, settings)
    print(format_run_summary(report))
    if args.report is not None:
        write_json_report(args.report, report)
        print(f"report written to {args.report}")
    return 130 if report.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
