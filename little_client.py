"""The Little half of the Big/Little cascade: answer on the Pi, ask the Big service when unsure.

For each clip the Little model (``models/little``, loaded from its zlib file as
the Pi does) gives probabilities; when the score margin (top-1 minus top-2) is
below the threshold, the clip goes to the Big service as a SenML pack and Big's
label is the answer. When Big cannot be reached, Little's answer stands and the
clip is counted in ``fallbacks``. The work is in :mod:`kws.cascade`.

The threshold is either given (``--threshold``) or calibrated on the
*validation* split, never the test split: by default as the most accurate
threshold that sends at most ``--max-big-fraction`` (15 %) of the clips to Big,
or, with ``--target-accuracy``, as the lowest threshold whose cascade accuracy
reaches that target.

Examples::

    python little_client.py --service http://127.0.0.1:8080 --report reports/cascade.json
    python little_client.py --service http://127.0.0.1:8080 --data-dir DIR --threshold 0.4
    python little_client.py --service http://127.0.0.1:8080 --sweep --plot reports/sweep.png
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
from kws.cascade.calibrate import DEFAULT_MAX_BIG_FRACTION
from kws.cascade.run import IncompatibleModels, SessionSettings, format_run_summary, run_session
from kws.cascade.sweep import DEFAULT_SWEEP_PLOT, DEFAULT_SWEEP_REPORT, format_sweep_table
from kws.data.clips import DatasetError, resolve_data_dir
from kws.model.metadata import ModelError
from kws.model.runtime import load_model
from kws.reports import write_json_report
from kws.rest.client import BigBadAnswer, BigRejected, BigUnavailable
from kws.rest.options import add_big_client_arguments, big_client_from_args, check_big_client_arguments

log = logging.getLogger("little_client")

DEFAULT_MODEL = Path("models/little")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Classify clips with the Little model and ask the Big service when Little is unsure.",
        epilog="Without --threshold the threshold is calibrated on the validation split, never on the test split.",
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR",
        help="Speech Commands folder, <label>/<clip>.wav (default: $KWS_DATA_DIR or ../shared/data/speech_commands)",
    )
    parser.add_argument(
        "--split", default="test", metavar="SPLIT",
        help="train, validation, test, all, or a split file (default: %(default)s)",
    )
    parser.add_argument(
        "--model", metavar="STEM", type=Path, default=DEFAULT_MODEL,
        help="Little model stem; its .tflite.zlib is loaded (default: %(default)s)",
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--threshold", type=float, metavar="T", help="ask Big when Little's score margin is below this, 0 to 1"
    )
    choice.add_argument(
        "--target-accuracy", type=float, metavar="A",
        help="calibrate the lowest threshold reaching this validation accuracy, 0 to 1",
    )
    choice.add_argument(
        "--max-big-fraction", type=float, metavar="F",
        help="calibrate the most accurate threshold sending at most this fraction of clips to Big "
        f"(the default rule, with F = {DEFAULT_MAX_BIG_FRACTION})",
    )
    parser.add_argument(
        "--report", metavar="JSON", type=Path,
        help=f"write the JSON report here (default: none; with --sweep: {DEFAULT_SWEEP_REPORT})",
    )
    parser.add_argument(
        "--sweep", action="store_true", help="evaluate a range of thresholds offline (asks Big about every clip once)"
    )
    parser.add_argument(
        "--plot", type=Path, metavar="PNG",
        help=f"with --sweep: PNG of accuracy against MB sent (default: {DEFAULT_SWEEP_PLOT})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    add_big_client_arguments(parser)
    args = parser.parse_args(argv)
    check_big_client_arguments(parser, args)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1 (a score margin), got {args.threshold}")
    if args.max_big_fraction is not None and not 0.0 <= args.max_big_fraction <= 1.0:
        parser.error(f"--max-big-fraction must be between 0 and 1, got {args.max_big_fraction}")
    if args.target_accuracy is not None and not 0.0 < args.target_accuracy <= 1.0:
        parser.error(f"--target-accuracy must be in (0, 1], got {args.target_accuracy}")
    if args.plot and not args.sweep:
        parser.error("--plot draws the sweep: add --sweep")
    return parser, args


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    if not args.verbose:  # urllib3 warns about every retried attempt; BigClient reports an outage once
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.exit(2, f"error: --data-dir: {error}\n")
    try:
        little = load_model(args.model, prefer="zlib")
    except ModelError as error:
        parser.exit(2, f"error: --model {args.model}: {error}\n")
    settings = SessionSettings(
        split=args.split, threshold=args.threshold, target_accuracy=args.target_accuracy,
        max_big_fraction=args.max_big_fraction, sweep=args.sweep, plot_path=args.plot, progress=not args.no_progress,
    )
    with big_client_from_args(args) as big:
        try:
            report = run_session(data_dir, little, big, settings)
        except (DatasetError, AudioError) as error:
            parser.exit(2, f"error: --data-dir/--split: {error}\n")
        except BigUnavailable as error:
            parser.exit(
                2,
                f"error: --service {args.service} is needed to calibrate or sweep but cannot answer ({error}); "
                "start big_service.py or pass --threshold T\n",
            )
        except IncompatibleModels as error:
            parser.exit(2, f"error: --service {args.service} serves a model for other words than --model: {error}\n")
        except BigRejected as error:
            parser.exit(2, f"error: --service {args.service} rejected a request: {error}\n")
        except BigBadAnswer as error:
            parser.exit(2, f"error: --service {args.service} does not answer as a Big service: {error}\n")
    if args.sweep:
        print(format_sweep_table(report["rows"]))
        print(f"sweep plot written to {report['plot']}")
    else:
        print(format_run_summary(report))
    report_path = args.report or (DEFAULT_SWEEP_REPORT if args.sweep else None)
    if report_path is not None:
        write_json_report(report_path, report)
        print(f"report written to {report_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
