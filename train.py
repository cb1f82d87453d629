"""Train, prune, quantize and export the keyword-spotting models.

Each shipped model is a named recipe (``kws/training/recipes.py``), so
``python train.py --recipe little`` rebuilds it::

    python train.py --all --data-dir ../shared/data/speech_commands \\
                          --data-dir ../shared/data/speech_commands_extra \\
                          --data-dir ../shared/data/speech_commands_more

Every ``--data-dir`` is split by speaker (``kws.data.splits``): models train on the
'train' speakers of all folders, stop early on 'validation', and the 'test'
speakers are only ever measured, never tuned to. A training-only folder (one whose
speakers are unknown, as ``speech_commands_more``'s are, or any ``--training-only-dir``)
gives every clip to training and none to validation or test. With no ``--data-dir``,
the folder every tool finds is used with its companions beside it
(:data:`COMPANION_FOLDERS`). Labels are balanced by inverse-frequency class weights,
recorded in each model's metadata with the clips per label it saw. For each recipe this writes
``models/<name>.tflite`` (and ``.tflite.zlib`` when the recipe compresses) plus
``models/<name>.json``, the metadata every client reads. TensorFlow is needed here
and nowhere else.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kws.data.clips import DatasetError, holds_clips, resolve_data_dir
from kws.reports import format_table
from kws.training.calibration import PAIRED, calibrate_pair
from kws.training.recipes import RECIPES, missing_teachers, training_order
from kws.util.logs import setup_logging

#: Folders that join the one every tool finds (``resolve_data_dir``) when no --data-dir is given,
#: where they sit beside it: more speakers, and yes/no clips for training only (``../shared/data``).
COMPANION_FOLDERS = ("speech_commands_extra", "speech_commands_more")


def default_data_dirs() -> list[Path]:
    """The located dataset folder and those of :data:`COMPANION_FOLDERS` that hold clips beside it."""
    first = resolve_data_dir(None)
    companions = [first.parent / name for name in COMPANION_FOLDERS if first.name != name]
    return [first, *(folder for folder in companions if holds_clips(folder))]


def format_results(results: Sequence[dict[str, Any]]) -> str:
    """One row per trained model: architecture, parameters, accuracy and sizes."""
    return format_table(
        ["model", "arch", "params", "val acc", "test acc", "test keywords", "non-keywords rejected", "bytes", "zlib",
         "clips"],
        [
            [
                meta["name"],
                meta["architecture"]["type"],
                meta["architecture"]["parameters"],
                meta["accuracy"]["validation"],
                meta["accuracy"]["test"],
                meta["accuracy"].get("test_keywords"),
                meta["accuracy"].get("test_non_keywords_rejected"),
                meta["sizes"]["tflite"],
                meta["sizes"].get("tflite_zlib"),
                meta["training"]["train_clips"],
            ]
            for meta in results
        ],
    )


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Train the shipped keyword-spotting models from their recipes.",
        epilog="Recipes: " + ", ".join(f"{name} ({recipe.description})" for name, recipe in RECIPES.items()),
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="recipe to train (repeatable)")
    which.add_argument("--all", action="store_true", help="train every recipe")
    parser.add_argument(
        "--data-dir",
        type=Path,
        action="append",
        metavar="DIR",
        help="dataset folder in Speech Commands layout (WAV, FLAC or Ogg Opus clips); repeat to train on several "
        "(default: $KWS_DATA_DIR, ../shared/data/speech_commands or data/mini_speech_commands, with "
        f"{' and '.join(COMPANION_FOLDERS)} where they sit beside it)",
    )
    parser.add_argument(
        "--training-only-dir",
        type=Path,
        action="append",
        default=[],
        metavar="DIR",
        help="a dataset folder whose clips all go to training, none to validation or test (its speakers are "
        "unknown, so they could be measured voices); repeatable. Folders named speech_commands_more, or "
        "holding a TRAINING_ONLY file, are training-only as --data-dir too",
    )
    parser.add_argument(
        "--other-dir",
        type=Path,
        metavar="DIR",
        help="other words and noise recordings (speech_commands_other), for recipes that learn _silence_ and "
        "_unknown_ or mix in recorded noise (default: speech_commands_other beside the first --data-dir)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("models"), metavar="DIR", help="where models go (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=1234, help="random seed for weights, augmentation and order")
    parser.add_argument("--epochs", type=int, metavar="N", help="override every recipe's maximum epochs")
    parser.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        metavar="F",
        help="train on this random part of the training clips, 0 to 1 (learning curves; default: all)",
    )
    parser.add_argument("--report", type=Path, metavar="JSON", help="also write the models' metadata here as a list")
    parser.add_argument(
        "--no-calibrate", action="store_true",
        help=f"after training {PAIRED[0]} or {PAIRED[1]}, do not calibrate the Little model's cascade threshold "
        "and stream parameters against Big (the export step; about 4 minutes)",
    )
    args = parser.parse_args(argv)
    if not 0 < args.train_fraction <= 1:
        parser.error(f"--train-fraction must be in (0, 1], got {args.train_fraction}")
    return parser, args


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    setup_logging(logging.INFO)
    try:
        data_dirs = args.data_dir or default_data_dirs()
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    for data_dir in data_dirs:
        if not data_dir.is_dir():
            parser.error(f"--data-dir {data_dir} does not exist (run 'python dataset.py download' for the default)")
    for data_dir in args.training_only_dir:
        if not holds_clips(data_dir):
            parser.error(f"--training-only-dir {data_dir} holds no <label>/<clip> files")
    data_dirs = [*data_dirs, *(d for d in args.training_only_dir if d not in data_dirs)]
    other_dir = args.other_dir or data_dirs[0].parent / "speech_commands_other"
    names = training_order(sorted(RECIPES) if args.all else args.recipe)
    for name, teacher in missing_teachers(names, args.output_dir):
        parser.error(f"--recipe {name} learns from {teacher}: train it too (--recipe {teacher}) "
                     f"or put it in --output-dir {args.output_dir}")
    needs_other = [n for n in names if RECIPES[n].non_keywords]
    if needs_other and not other_dir.is_dir():
        parser.error(f"--other-dir {other_dir} does not exist (recipes {', '.join(needs_other)} need it)")
    from kws.training.embedding_head import train_embedding_head  # TensorFlow loads here, after the arguments
    from kws.training.pipeline import train_recipe  # are checked

    results = []
    for name in names:
        recipe = RECIPES[name]
        if args.epochs:
            recipe = dataclasses.replace(recipe, epochs=args.epochs, prune_epochs=min(recipe.prune_epochs, args.epochs))
        logging.getLogger("train").info("training %s: %s", name, recipe.description)
        available_other = other_dir if other_dir.is_dir() else None
        trainer = train_embedding_head if recipe.front_end is not None else train_recipe
        results.append(
            trainer(name, recipe, data_dirs, args.output_dir, args.seed, args.train_fraction, available_other,
                    args.training_only_dir)
        )
    print(format_results(results))
    trained = {meta["name"] for meta in results}
    if not args.no_calibrate and trained & set(PAIRED) and all(
        (args.output_dir / f"{name}.json").is_file() for name in PAIRED
    ):
        calibrate_pair(args.output_dir, data_dirs)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
