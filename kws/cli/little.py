"""The Little half of the Big/Little cascade: answer on the Pi, ask the Big service when unsure.

Each clip goes through the Little model (``models/little``, its zlib file, as the
Pi loads it); when the score margin (top-1 minus top-2) is below the threshold
that ships in the model's metadata, Big answers instead, sent Big's own features
(or the clip). Big unreachable: Little's answer stands and is counted. No labels
are needed; accuracy is reported where clips have them. The work is in
:mod:`kws.cascade`; ``--listen SOURCE`` spots keywords on a stream instead, Big
confirming (:mod:`kws.listen`)::

    python little_client.py recordings/                 # any WAV files or folders, labelled or not
    python little_client.py --data-dir DIR --split test --report reports/cascade.json
    python little_client.py --calibrate MY_LABELLED_DIR --write-metadata models/little-mine.json
    python little_client.py --sweep --plot reports/sweep.png
    arecord -f S16_LE -r 16000 -c 1 -t raw | python little_client.py --listen -   # always listening

Installed with pip this program is the command ``kws-little`` (same flags); from a
checkout it is ``python little_client.py``. Logs go to stderr, one line each (without the
time when stderr is the systemd journal, which stamps lines itself: :mod:`kws.util.logs`).
"""

# ruff: noqa: E402 - imports follow the environment line on purpose
from __future__ import annotations

import os

# One clip at a time: OpenBLAS's thread pool only adds hand-offs to its small
# matrix products. Measured: Little's median 9.4 ms with it, 0.9 ms without.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from kws.audio import AudioError
from kws.cascade.run import IncompatibleModels, NoThreshold, SessionSettings, format_run_summary, run_session
from kws.data.clips import DatasetError, clips_from_paths, resolve_data_dir, select_clips
from kws.listen.options import add_listen_arguments, run_listen, wants_listen
from kws.model.metadata import ModelError, copy_with_section
from kws.model.runtime import load_model
from kws.reports import write_json_report
from kws.rest.client import BigBadAnswer, BigRejected, BigUnavailable
from kws.rest.options import add_big_client_arguments, big_client_from_args, check_big_client_arguments
from kws.tuning.cascade_sweep import DEFAULT_SWEEP_PLOT, DEFAULT_SWEEP_REPORT, format_sweep_table
from kws.util.logs import progress_wanted, setup_logging


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Classify clips with the Little model and ask the Big service when Little is unsure.",
        epilog="The threshold ships in the Little model's metadata (its 'cascade' section, calibrated at export "
        "on validation speakers); --threshold or --calibrate override it.",
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
    parser.add_argument("--calibrate", type=Path, action="append", metavar="DIR",
                        help="recalibrate the threshold on the --calibrate-split of this labelled folder (repeatable)")
    parser.add_argument("--calibrate-split", default="validation", metavar="SPLIT",
                        help="the split of --calibrate to use (default: %(default)s)")
    parser.add_argument("--write-metadata", type=Path, metavar="JSON",
                        help="with --calibrate: a copy of the model's metadata with the new threshold, beside it")
    parser.add_argument("--sweep", action="store_true", help="judge 21 thresholds offline (asks Big about every clip)")
    parser.add_argument("--plot", type=Path, metavar="PNG", help=f"the sweep's plot (default: {DEFAULT_SWEEP_PLOT})")
    parser.add_argument("--report", metavar="JSON", type=Path,
                        help=f"write the JSON report here (default: none; with --sweep: {DEFAULT_SWEEP_REPORT})")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bars (there are none when stderr is not a terminal)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_big_client_arguments(parser)
    add_listen_arguments(parser)
    args = parser.parse_args(argv)
    check_big_client_arguments(parser, args)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1 (a score margin), got {args.threshold}")
    if args.threshold is not None and args.calibrate:
        parser.error("--threshold and --calibrate both choose the threshold: give one")
    if args.write_metadata and not args.calibrate:
        parser.error("--write-metadata writes what --calibrate finds: add --calibrate DIR")
    if args.plot and not args.sweep:
        parser.error("--plot draws the sweep: add --sweep")
    return parser, args


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # urllib3 warns about every retried attempt; BigClient reports an outage once
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    if wants_listen(args):
        return run_listen(parser, args)
    try:
        little = load_model(args.model, prefer="zlib")
    except ModelError as error:
        parser.exit(2, f"error: --model {args.model}: {error}\n")
    try:
        if args.inputs:
            clips = clips_from_paths(args.inputs, little.labels)
        else:
            clips = select_clips(resolve_data_dir(args.data_dir), args.split, little.labels)
    except DatasetError as error:
        parser.exit(2, f"error: {'CLIP_OR_DIR' if args.inputs else '--data-dir/--split'}: {error}\n")
    settings = SessionSettings(threshold=args.threshold, calibrate_dirs=tuple(args.calibrate or ()),
                               calibrate_split=args.calibrate_split, sweep=args.sweep, plot_path=args.plot,
                               progress=progress_wanted(not args.no_progress))
    with big_client_from_args(args) as big:
        try:
            report = run_session(clips, little, big, settings)
        except (DatasetError, AudioError) as error:
            parser.exit(2, f"error: {error}\n")
        except NoThreshold as error:
            parser.exit(2, f"error: --model: {error}; pass --threshold T or --calibrate DIR\n")
        except BigUnavailable as error:
            parser.exit(2, f"error: --service {args.service} is needed to calibrate or sweep but cannot answer "
                           f"({error}); start big_service.py\n")
        except IncompatibleModels as error:
            parser.exit(2, f"error: --service {args.service} serves a model for other words than --model: {error}\n")
        except BigRejected as error:
            parser.exit(2, f"error: --service {args.service} rejected a request: {error}\n")
        except BigBadAnswer as error:
            parser.exit(2, f"error: --service {args.service} does not answer as a Big service: {error}\n")
    if args.write_metadata:
        try:
            copy_with_section(little.metadata.raw, args.write_metadata, "cascade", report["calibration"])
        except (ModelError, OSError) as error:
            parser.exit(2, f"error: --write-metadata: {error}\n")
        print(f"metadata with threshold {report['threshold']:.4f} written to {args.write_metadata}")
    print(format_sweep_table(report["rows"]) + f"\nsweep plot written to {report['plot']}" if args.sweep
          else format_run_summary(report))
    report_path = args.report or (DEFAULT_SWEEP_REPORT if args.sweep else None)
    if report_path is not None:
        write_json_report(report_path, report)
        print(f"report written to {report_path}")
    return 130 if report.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
