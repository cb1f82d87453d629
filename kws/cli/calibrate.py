"""Offline work on what ships with the Little model, one subcommand each: its cascade threshold, the
sweep of every threshold, its always-listening parameters.

    python calibrate.py cascade --data-dir MY_LABELLED_DIR --service http://big:8080   # against the service
    python calibrate.py cascade --big models/big_embedding --data-dir ../shared/data/speech_commands   # Big in-process
    python calibrate.py sweep --data-dir ../shared/data/speech_commands --plot reports/little_sweep.png
    python calibrate.py listen --model models/little --big models/big_embedding \
        --data-dir ../shared/data/speech_commands

``cascade`` and ``listen`` write their section into the Little model's metadata (the
``.json`` beside the model loaded), ``--write-metadata JSON`` a copy elsewhere beside the
model's files, ``--dry-run`` nothing; ``sweep`` writes a table, a JSON report and a plot. The
work is in :mod:`kws.tuning`; ``train.py`` runs both calibrations itself after exporting a
model. None of this runs on the Pi: ``little_client.py`` only applies what is chosen here.

Installed with pip this program is the command ``kws-calibrate`` (same subcommands).
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

from kws.util.threads import one_blas_thread

one_blas_thread()

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kws.cascade.run import IncompatibleModels, big_identity, model_record, session_header
from kws.cli.big_client_flags import add_big_client_arguments, big_client_settings
from kws.data.clips import resolve_data_dir, select_clips
from kws.errors import KwsError, blame
from kws.listen.params import SECTION as LISTEN_SECTION
from kws.model.installed import SERVICE_MODEL
from kws.model.metadata import copy_with_section, metadata_path, write_section
from kws.model.runtime import KeywordModel, load_model
from kws.reports import write_json_report
from kws.rest.client import BigClient, BigClientSettings, BigError
from kws.tuning import cascade_calibration, cascade_sweep, listen_calibration, stream_synthesis
from kws.tuning.cascade_replay import DEFAULT_ALPHA, model_answerer
from kws.util.logs import progress_wanted, setup_logging

log = logging.getLogger(__name__)

DATA_DIR_HELP = "labelled Speech Commands folder; repeat for several (default: $KWS_DATA_DIR, else " \
    "../shared/data/speech_commands beside the checkout, else data/mini_speech_commands)"


def add_model_arguments(parser: argparse.ArgumentParser, writes: str | None) -> None:
    """The flags every subcommand has: the Little model, the labelled clips, and where the results go."""
    parser.add_argument("--model", type=Path, default=Path("models/little"), metavar="STEM",
                        help="the Little model (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, action="append", metavar="DIR", help=DATA_DIR_HELP)
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    if writes is not None:
        parser.add_argument("--write-metadata", type=Path, metavar="JSON",
                            help=f"write a copy of the model's metadata with the new {writes} section here, in the "
                            "folder of the model's files (default: the model's own metadata, updated in place)")
        parser.add_argument("--dry-run", action="store_true", help="print the choice, write no metadata")


def add_service_arguments(parser: argparse.ArgumentParser) -> None:
    """The flags of the subcommands that ask Big about every clip: its service, and no progress bars."""
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    add_big_client_arguments(parser)


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace,
                                                     BigClientSettings | None]:
    parser = argparse.ArgumentParser(
        description="Choose, offline, what ships with the Little model (its cascade threshold and its listening "
        "parameters), or judge every threshold; the Pi's little_client.py only applies them.",
        epilog="Run python calibrate.py COMMAND --help for a command's flags.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    cascade = commands.add_parser(
        "cascade", help="choose the cascade threshold on labelled clips, against Big",
        description="Choose the cascade threshold on the validation speakers of labelled clips: Little and Big "
        "answer every clip once, and the threshold is the lowest at which the cascade is not shown less accurate "
        "than Big (one-sided exact McNemar test). Big is the service at --service, or with --big a model run here.",
    )
    add_model_arguments(cascade, writes="cascade")
    cascade.add_argument("--split", default=cascade_calibration.CALIBRATION_SPLIT, metavar="SPLIT",
                         help="the split of each --data-dir to choose on; never test, whose figures would then "
                         "flatter the threshold (default: %(default)s)")
    cascade.add_argument("--big", type=Path, metavar="STEM",
                         help="calibrate against this Big model, run here (the export step; the Big service's "
                         "flags are then unused) (default: the service at --service)")
    cascade.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, metavar="A",
                         help="level of the test (default: %(default)s)")
    cascade.add_argument("--report", type=Path, metavar="JSON", help="also write the report as JSON here")
    add_service_arguments(cascade)

    sweep = commands.add_parser(
        "sweep", help="judge 21 thresholds on labelled clips: accuracy against MB sent, as a table, JSON and a plot",
        description="Judge 21 thresholds (and --threshold, or the shipped one) on labelled clips, asking Big "
        "about every clip once: accuracy, Big requests and MB per 800 clips for each payload, plain and deflated.",
    )
    add_model_arguments(sweep, writes=None)
    sweep.add_argument("--split", default="test", metavar="SPLIT",
                       help="of each --data-dir: train, validation, test, all, or a split file (default: %(default)s)")
    sweep.add_argument("--threshold", type=float, metavar="T",
                       help="a threshold to add and mark on the plot (default: the shipped one)")
    sweep.add_argument("--plot", type=Path, default=cascade_sweep.DEFAULT_SWEEP_PLOT, metavar="PNG",
                       help="where the plot goes (default: %(default)s)")
    sweep.add_argument("--report", type=Path, default=cascade_sweep.DEFAULT_SWEEP_REPORT, metavar="JSON",
                       help="where the JSON report goes (default: %(default)s)")
    add_service_arguments(sweep)

    listen = commands.add_parser(
        "listen", help="choose the always-listening parameters on validation streams",
        description="Choose the always-listening parameters on two streams (a quiet and a noisy room) built from "
        "the validation speakers, Little and Big (run here) hearing every window once.",
        epilog="Streams are built from the validation split only; the benchmark (bench/bench_stream.py) judges "
        "the result on the test split.",
    )
    add_model_arguments(listen, writes="listen")
    listen.add_argument("--big", type=Path, default=Path("models") / SERVICE_MODEL, metavar="STEM",
                        help="the Big model that confirms, run here (default: %(default)s)")
    listen.add_argument("--other-dir", type=Path, metavar="DIR",
                        help="other words and _background_noise_ (default: speech_commands_other beside the first "
                        "--data-dir)")
    listen.add_argument("--noise-minutes", type=float, default=listen_calibration.DEFAULT_NOISE_MINUTES, metavar="M",
                        help="minutes of noise alone per room (default: %(default)s)")
    listen.add_argument("--seed", type=int, default=0, help="seed of the streams (default: %(default)s)")
    listen.add_argument("--report", type=Path, metavar="JSON", help="also write the section as JSON here")

    args = parser.parse_args(argv)
    big = big_client_settings(parser, args) if args.command in ("cascade", "sweep") else None
    if args.command == "sweep" and args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1 (a score margin), got {args.threshold}")
    if args.command == "cascade" and not 0.0 < args.alpha < 1.0:
        parser.error(f"--alpha must be between 0 and 1, got {args.alpha}")
    if getattr(args, "dry_run", False) and args.write_metadata is not None:
        parser.error("--dry-run writes nothing and --write-metadata writes a copy: give one")
    if args.command == "listen" and args.noise_minutes <= 0:
        parser.error("--noise-minutes must be positive")
    return parser, args, big


def main(argv: Sequence[str] | None = None) -> int:
    parser, args, big = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    if not args.verbose:  # urllib3 warns about every retried attempt
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    command = {"cascade": calibrate_cascade, "sweep": sweep_thresholds, "listen": calibrate_listening}[args.command]
    try:
        return command(args, big, sys.argv[1:] if argv is None else list(argv))
    except KwsError as error:
        parser.exit(error.exit_code, f"error: {error.explain()}\n")
    except KeyboardInterrupt:  # before anything was written: calibrations write at the end
        parser.exit(130, "interrupted: nothing written\n")


def data_dirs_of(args: argparse.Namespace) -> list[Path]:
    with blame("--data-dir"):
        return list(args.data_dir or [resolve_data_dir(None)])


def load_little(args: argparse.Namespace) -> KeywordModel:
    with blame(f"--model {args.model}"):
        return load_model(args.model, prefer="zlib")


def write(little: KeywordModel, args: argparse.Namespace, section_name: str, section: dict[str, Any]) -> None:
    """The section into the model's own metadata, or a copy (``--write-metadata``), or nowhere (``--dry-run``)."""
    if args.dry_run:
        print("dry run: metadata not written")
        return
    if args.write_metadata is None:
        target = metadata_path(little.source)
        write_section(target, section_name, section)
    else:
        target = args.write_metadata
        with blame("--write-metadata"):
            copy_with_section(little.metadata.raw, target, section_name, section)
    print(f"{section_name} section written to {target}")


def calibrate_cascade(args: argparse.Namespace, big_settings: BigClientSettings, _: Sequence[str]) -> int:
    """``cascade``: the threshold against the service's Big, or an in-process one (``--big``)."""
    little, data_dirs = load_little(args), data_dirs_of(args)
    progress = progress_wanted(not args.no_progress)
    with blame("--data-dir/--split"):
        if args.big is not None:
            with blame(f"--big {args.big}"):
                big = load_model(args.big)
            calibration = cascade_calibration.calibrate(data_dirs, args.split, little, model_answerer(big),
                                                        big.metadata.raw, args.alpha, progress)
            report = {"service": None, "little_model": model_record(little),
                      "big_model": big_identity(big.metadata.raw)}
        else:
            with BigClient.from_settings(big_settings) as client, \
                    blame(f"--service {args.service}", BigError, IncompatibleModels):
                report = session_header(little, client)
                calibration = cascade_calibration.calibrate_with_service(data_dirs, args.split, little, client,
                                                                         args.alpha, progress)
    report["calibration"] = section = calibration.to_section()
    print(calibration.describe())
    write(little, args, "cascade", section)
    if args.report is not None:
        write_json_report(args.report, report)
        print(f"report written to {args.report}")
    return 0


def sweep_thresholds(args: argparse.Namespace, big_settings: BigClientSettings, _: Sequence[str]) -> int:
    """``sweep``: every threshold's accuracy and bytes from one pass of both models over labelled clips."""
    little, data_dirs = load_little(args), data_dirs_of(args)
    with blame("--data-dir/--split"):
        clips = [clip for data_dir in data_dirs for clip in select_clips(data_dir, args.split, little.labels)]
    with BigClient.from_settings(big_settings) as client, \
            blame(f"--service {args.service}", BigError, IncompatibleModels):
        report = cascade_sweep.sweep_session(clips, little, client, args.threshold, args.plot,
                                             progress_wanted(not args.no_progress))
    print(cascade_sweep.format_sweep_table(report["rows"]) + f"\nsweep plot written to {report['plot']}")
    write_json_report(args.report, report)
    print(f"report written to {args.report}")
    return 0


def calibrate_listening(args: argparse.Namespace, _: None, given: Sequence[str]) -> int:
    """``listen``: the stream parameters on validation streams, with Big in this process."""
    little, data_dirs = load_little(args), data_dirs_of(args)
    with blame(f"--big {args.big}"):
        big = load_model(args.big, prefer="tflite")
    other_dir = args.other_dir or stream_synthesis.other_words_dir(data_dirs[0])
    with blame("--data-dir/--other-dir"):
        section = listen_calibration.calibrate_listening(
            little, big, data_dirs, other_dir, 60 * args.noise_minutes, args.seed,
            command=[*listen_calibration.COMMAND, *given[1:]],
        )
    print(listen_calibration.format_section(section))
    if args.report is not None:
        write_json_report(args.report, section)
    write(little, args, LISTEN_SECTION, section)
    return 0


if __name__ == "__main__":
    sys.exit(main())
