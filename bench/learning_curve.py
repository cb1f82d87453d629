"""Learning curve: how a recipe's accuracy grows with the number of training clips.

We have about 4 500 training clips, fewer than the 6 400 of the course's split. This
trains one recipe on growing random parts of the training speakers' clips (the
validation and test splits stay whole) and reports validation and test accuracy
for each, so one can see whether more data would still help::

    python -m bench.learning_curve --recipe ensemble_3 \\
        --data-dir ../shared/data/speech_commands --data-dir ../shared/data/speech_commands_extra \\
        --data-dir ../shared/data/speech_commands_more

Needs TensorFlow (it trains). The models go to a temporary folder, never to models/;
a recipe that learns from a teacher (``distillation``) finds it in ``--teacher-dir``.
Writes the JSON report and a PNG of accuracy against training clips beside it.
"""

# ruff: noqa: E402 - imports follow a sys.path line on purpose
from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

from kws.reports import format_table, write_json_report
from kws.training.pipeline import train_recipe
from kws.training.recipes import RECIPES
from kws.util.logs import setup_logging

log = logging.getLogger("learning_curve")


def learning_curve(
    recipe_name: str,
    data_dirs: Sequence[Path],
    fractions: Sequence[float],
    seed: int,
    other_dir: Path | None = None,
    teacher_dir: Path = Path("models"),
) -> list[dict[str, Any]]:
    """Train the recipe once per fraction; one row of accuracies per run."""
    rows = []
    distillation = RECIPES[recipe_name].distillation
    with tempfile.TemporaryDirectory(prefix="learning-curve-") as scratch:
        if distillation is not None:  # the teacher is looked up beside the student
            teacher_files = list(teacher_dir.glob(f"{distillation.teacher}.*"))
            if not teacher_files:
                raise FileNotFoundError(f"{recipe_name} learns from {distillation.teacher}: not in {teacher_dir}")
            for path in teacher_files:
                shutil.copyfile(path, Path(scratch) / path.name)
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


def plot_learning_curve(recipe_name: str, rows: Sequence[dict[str, Any]], path: Path) -> Path:
    """Accuracy against training clips, one line per figure: a curve still rising wants more data."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    clips = [row["train_clips"] for row in rows]
    figure, axes = plt.subplots(figsize=(6.4, 4.2))
    lines = {"validation_accuracy": "validation, all clips", "test_accuracy": "test, all clips",
             "test_keywords": "test, keyword clips", "test_non_keywords_rejected": "test non-keywords rejected"}
    for key, label in lines.items():
        values = [row.get(key) for row in rows]
        if all(value is not None for value in values):
            axes.plot(clips, [100 * value for value in values], marker="o", label=label)
    axes.set_xlabel("training clips")
    axes.set_ylabel("%")
    axes.set_title(f"learning curve: {recipe_name}")
    axes.grid(alpha=0.3)
    axes.legend()
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)
    return path


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
    parser.add_argument("--teacher-dir", type=Path, default=Path("models"), metavar="DIR",
                        help="where a distilled recipe's teacher model is (default: %(default)s)")
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
    setup_logging(logging.INFO)
    other_dir = args.other_dir or args.data_dir[0].parent / "speech_commands_other"
    available_other = other_dir if other_dir.is_dir() else None
    rows = learning_curve(args.recipe, args.data_dir, args.fractions, args.seed, available_other, args.teacher_dir)
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
    plot = plot_learning_curve(args.recipe, rows, args.report.with_suffix(".png"))
    print(f"report written to {args.report}, plot to {plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
