"""The offline sweep: every threshold evaluated from one pass of both models, as a table and a plot."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.cascade import rule
from kws.cascade.calibrate import predict_both
from kws.data.clips import Clip
from kws.model.runtime import KeywordModel
from kws.reports import format_table
from kws.rest.client import BigClient

DEFAULT_SWEEP_REPORT = Path("reports/little_sweep.json")
DEFAULT_SWEEP_PLOT = Path("reports/little_sweep.png")
SWEEP_THRESHOLDS = tuple(round(float(t), 2) for t in np.linspace(0.0, 1.0, 21))


def format_sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    """The sweep report's ``rows`` (:meth:`~kws.cascade.rule.CascadeOutcome.to_dict`) as a table."""
    return format_table(
        ["threshold", "accuracy", "big %", "requests", "MB sent", "MB/800 clips"],
        [
            [
                row["threshold"],
                row["accuracy"],
                f"{100 * row['big_fraction']:.1f}",
                row["big_requests"],
                f"{row['communication_bytes'] / rule.MEGABYTE:.3f}",
                f"{row['mb_per_800_clips']:.3f}",
            ]
            for row in rows
        ],
    )


def plot_sweep(
    rows: Sequence[rule.CascadeOutcome], predictions: rule.PairedPredictions, path: Path, chosen: float | None
) -> None:
    """Accuracy against megabytes sent to Big, one point per threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    megabytes = [row.communication_bytes / rule.MEGABYTE for row in rows]
    axes.plot(megabytes, [row.accuracy for row in rows], marker="o", label="cascade")
    axes.axhline(
        predictions.big_accuracy, color="tab:green", linestyle="--", label=f"Big alone {predictions.big_accuracy:.3f}"
    )
    axes.axhline(
        predictions.little_accuracy,
        color="tab:red",
        linestyle=":",
        label=f"Little alone {predictions.little_accuracy:.3f}",
    )
    for row, x in zip(rows, megabytes):
        if round(row.threshold * 20) % 4 == 0:  # label every 0.2 of threshold, enough to read the curve
            axes.annotate(
                f"{row.threshold:g}", (x, row.accuracy), textcoords="offset points", xytext=(4, 4), fontsize=7
            )
        if row.threshold == chosen:
            axes.scatter(
                [x],
                [row.accuracy],
                s=120,
                facecolors="none",
                edgecolors="black",
                zorder=3,
                label=f"threshold {chosen:.3f}",
            )
    axes.set_xlabel(f"MB sent to Big ({predictions.samples} clips)")
    axes.set_ylabel("accuracy")
    axes.set_title("Big/Little cascade: accuracy against communication")
    axes.grid(alpha=0.3)
    axes.legend(loc="best")
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_sweep(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, chosen: float | None, plot_path: Path, progress: bool
) -> dict[str, Any]:
    """Ask Big about every clip once, evaluate every threshold offline and draw the plot; the report's
    ``rows`` are what :func:`format_sweep_table` prints."""
    predictions = predict_both(clips, little, big, desc="sweep", progress=progress)
    rows = predictions.sweep([*SWEEP_THRESHOLDS, *([chosen] if chosen is not None else [])])
    plot_sweep(rows, predictions, plot_path, chosen)
    return {
        "mode": "sweep",
        "samples": len(clips),
        "threshold": chosen,
        "little_accuracy": round(predictions.little_accuracy, 6),
        "big_accuracy": round(predictions.big_accuracy, 6),
        "plot": str(plot_path),
        "rows": [row.to_dict() for row in rows],
    }
