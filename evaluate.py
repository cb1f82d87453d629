"""Measure a shipped keyword-spotting model on real clips: accuracy, confusion, size, latency.

The work is in kws/evaluation/evaluate.py; TensorFlow is never imported. A file that
cannot be used is skipped, with its reason in the report (--strict stops at it), and
Ctrl-C ends the run with the summary and report of the clips classified so far.

Examples:

    python evaluate.py --model models/little                       # test split of $KWS_DATA_DIR or ../shared/data
    python evaluate.py --model models/big.tflite --data-dir DIR --split all --report reports/big.json
    python evaluate.py --model models/little --data-dir DIR --split kws_test_split.txt
"""

from __future__ import annotations

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip at a time, as the Pi

import argparse  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

from kws.data import clips as data  # noqa: E402
from kws.data.clips import Clip, DatasetError  # noqa: E402
from kws.data.splits import SPLIT_NAMES, is_training_only  # noqa: E402
from kws.errors import KwsError  # noqa: E402
from kws.evaluation.evaluate import build_report, evaluate_model, format_summary  # noqa: E402
from kws.model.metadata import ModelError  # noqa: E402
from kws.model.runtime import load_model  # noqa: E402
from kws.reports import write_json_report  # noqa: E402
from kws.util.logs import setup_logging  # noqa: E402

log = logging.getLogger("evaluate")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, metavar="PATH",
        help="model stem (models/little) or one of its files (.json, .tflite, .tflite.zlib)",
    )
    parser.add_argument(
        "--prefer", choices=("zlib", "tflite"), default="zlib",
        help="for a stem, which file to load when the metadata lists both (default: %(default)s, what the Pi ships)",
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR",
        help="folder of <label>/<speaker>_nohash_<n>.<ext> clips, WAV, FLAC or Ogg Opus "
        "(default: $KWS_DATA_DIR, ../shared/data/speech_commands or data/mini_speech_commands)",
    )
    parser.add_argument(
        "--split", default="test",
        help="'train', 'validation', 'test' (speaker-disjoint hash split), 'all', "
        "or a split file of label/name.ext lines, any clip ending (default: %(default)s)",
    )
    parser.add_argument(
        "--clips-per-label", type=int, metavar="N",
        help="evaluate at most N clips of each label, spread over the split (quick checks)",
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    parser.add_argument("--strict", action="store_true",
                        help="stop at the first file that cannot be used (default: skip it, say why in the report)")
    return parser, parser.parse_args(argv)


def check_data_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject a missing --data-dir or an unknown --split before the model is loaded."""
    try:
        args.data_dir = data.resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder (download one with 'python dataset.py download')")
    if args.split not in SPLIT_NAMES and not Path(args.split).is_file():
        parser.error(f"--split {args.split!r} is neither one of {', '.join(SPLIT_NAMES)} nor a split file")
    if args.clips_per_label is not None and args.clips_per_label < 1:
        parser.error("--clips-per-label must be at least 1")


def choose_clips(
    parser: argparse.ArgumentParser, args: argparse.Namespace, labels: Sequence[str]
) -> list[Clip]:
    """The clips to evaluate, in the model's labels; any problem is a usage error naming its flag."""
    try:
        data.list_clips(args.data_dir, labels)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    try:
        clips = data.select_clips(args.data_dir, args.split, labels)
    except DatasetError as error:
        parser.error(f"--split: {error}")
    if not clips and is_training_only(args.data_dir):
        parser.error(f"--split {args.split}: {args.data_dir} is training-only (its speakers are unknown), so it has "
                     "no validation or test clips; use --split train or all")
    if not clips:
        parser.error(f"--split {args.split} holds no clips of {args.data_dir}")
    if args.clips_per_label is not None:
        clips = data.sample_clips(clips, args.clips_per_label)
    return clips


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    setup_logging(logging.WARNING if args.quiet else logging.INFO)
    check_data_flags(parser, args)
    try:
        model = load_model(args.model, prefer=args.prefer)
    except ModelError as error:
        parser.error(f"--model {args.model}: {error}")
    clips = choose_clips(parser, args, model.labels)
    log.info("evaluating %s on %d clips (%s split of %s)", model.name, len(clips), args.split, args.data_dir)
    try:
        evaluation = evaluate_model(model, clips, progress=not args.quiet, strict=args.strict)
    except KwsError as error:  # with --strict, a clip that cannot be used stops the run
        parser.exit(1, f"error: {error.explain()} (without --strict it would be skipped)\n")
    if not evaluation.true_labels:
        parser.exit(1, f"error: none of the {len(clips)} clips could be used: "
                    f"{evaluation.skipped[0]['reason'] if evaluation.skipped else 'interrupted before the first'}\n")
    report = build_report(model, evaluation, args.split, args.data_dir)
    print(format_summary(report))
    if args.report:
        write_json_report(args.report, report)
        log.info("report written to %s", args.report)
    return 130 if evaluation.interrupted else 0


if __name__ == "__main__":
    sys.exit(main())
