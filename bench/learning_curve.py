"""Learning curve: how a recipe's accuracy grows with the number of training clips.

We have about 4 500 training clips, fewer than the 6 400 of the course's split. This
trains one recipe on growing random parts of the training speakers' clips (the
validation and test splits stay whole) and reports validation and test accuracy
for each, so one can see whether more data would still help::

    python -m bench.learning_curve --recipe ensemble_3 \\
        --data-dir ../shared/data/speech_commands --data-dir ../shared/data/speech_commands_extra

Needs TensorFlow (it trains). The models go to a temporary folder, never to models/.
"""

# ruff: noqa: E402 - imports follow a sys.path line on purpose
from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from kws.reports import format_table, write_json_report
from kws.training.pipeline import train_recipe
from kws.training.recipes import RECIPES

log = logging.getLogger("learning_curve")


def learning_curve(
    recipe_name: str, data_dirs: Sequence[Path], fractions: Sequence[float], seed: int, other_dir: Path | None = None
) -> list[dict[str, Any]]:
    """Train the recipe once per fraction; one row of accuracies per run."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="learning-curve-") as scratch:
        for fraction in fractions:
            log.info("training %s on %.0f %% of the training clips", recipe_name, 100 * fraction)
            metadata = train_recipe(
                f"{recipe_name}_{fraction:.2f}", RECIPES[recipe_name], data_dirs, Path(scratch), seed, fraction,
                other_dir,
            )
            rows.append(
                {
                    "fraction": fraction,
                    "train_clips": metadata["training"]["train_clips"],
                    "validation_accuracy": metadata["accuracy"]["validation"],
                    "test_accuracy": metadata["accuracy"]["test"],
                    "test_by_data_dir": metadata["accuracy"]["test_by_data_dir"],
                    "test_keywords": metadata["accuracy"].get("test_keywords"),
                    "test_non_keywords_rejected": metadata["accuracy"].get("test_non_keywords_rejected"),
                    "epochs_run": metadata["training"]["epochs_run"],
                }
            )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipe", choices=sorted(RECIPES), default="ensemble_3", help="recipe to train")
    parser.add_argument(
        "--data-dir", type=Path, action="append", required=True, help="dataset folder (repeat for several)"
    )
    parser.add_argument(
        "--fractions",
        type=float,
        nargs="+",
        default=[0.25, 0.5, 0.75, 1.0],
        help="parts of the training clips to train on (default: %(default)s)",
    )
    parser.add_argument("--other-dir", type=Path, help="speech_commands_other (other words, noise recordings), for "
                        "recipes that learn _silence_ and _unknown_ (default: beside the first --data-dir)")
    parser.add_argument("--seed", type=int, default=1234, help="seed for weights, subsets and augmentation")
    parser.add_argument(
        "--report",
        type=Path,
        default=Path("reports/learning_curve.json"),
        help="JSON report (default: %(default)s)",
    )
    args = parser.parse_args(argv)
    if any(not 0 < fraction <= 1 for fraction in args.fractions):
        parser.error("--fractions must lie in (0, 1]")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    other_dir = args.other_dir or args.data_dir[0].parent / "speech_commands_other"
    available_other = other_dir if other_dir.is_dir() else None
    rows = learning_curve(args.recipe, args.data_dir, args.fractions, args.seed, available_other)
    print(
        format_table(
            ["fraction", "train clips", "val acc", "test acc", "test keywords", "non-keywords rejected", "epochs"],
            [
                [r["fraction"], r["train_clips"], r["validation_accuracy"], r["test_accuracy"], r["test_keywords"],
                 r["test_non_keywords_rejected"], r["epochs_run"]]
                for r in rows
            ],
        )
    )
    write_json_report(args.report, {"recipe": args.recipe, "seed": args.seed, "runs": rows})
    print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
