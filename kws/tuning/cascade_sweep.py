"""The offline sweep: every threshold evaluated from one pass of both models, as a table and a plot.

Big is asked about every clip once, with the client's payload; what each clip
would cost in the other payload, and deflated (:mod:`kws.rest.compression`), is
measured by encoding it, so the table and the plot show all four: the same accuracy
(Big answers int8 features as it answers audio, to within a clip or two) at about a
fifteenth of the bytes for features, and deflating takes off another 26 % (features) to 41 % (PCM).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.cascade.run import given_or_shipped, session_header
from kws.data.clips import Clip
from kws.model.runtime import KeywordModel
from kws.reports import format_table
from kws.rest.client import BigClient
from kws.tuning.cascade_replay import (
    Paired,
    PairedPredictions,
    big_input,
    predict_both,
    service_answerer,
    service_metadata,
)

DEFAULT_SWEEP_REPORT = Path("reports/little_sweep.json")
DEFAULT_SWEEP_PLOT = Path("reports/little_sweep.png")
SWEEP_THRESHOLDS = tuple(round(float(t), 2) for t in np.linspace(0.0, 1.0, 21))


def format_sweep_table(rows: Sequence[dict[str, Any]]) -> str:
    """The sweep report's ``rows`` as a table: one line per threshold, MB per 800 clips per way of sending
    (each payload plain and deflated)."""
    kinds = list(rows[0]["mb_per_800_clips"]) if rows else []
    return format_table(
        ["threshold", "accuracy", "big %", "requests", *(f"MB/800 {name.replace('_', ' ')}" for name in kinds)],
        [
            [
                row["threshold"],
                row["accuracy"],
                f"{100 * row['big_fraction']:.1f}",
                row["big_requests"],
                *(f"{row['mb_per_800_clips'][name]:.3f}" for name in kinds),
            ]
            for row in rows
        ],
    )


def sweep_rows(paired: Paired, thresholds: Sequence[float]) -> list[dict[str, Any]]:
    """Each threshold's outcome, its bytes given for both payloads, plain and deflated."""
    by_kind = {name: paired.for_payload(name).sweep(thresholds) for name in paired.kinds}
    rows = []
    for at_threshold in zip(*by_kind.values()):
        outcomes = dict(zip(by_kind, at_threshold))
        row = outcomes["pcm"].to_dict()
        row["communication_bytes"] = {name: outcome.communication_bytes for name, outcome in outcomes.items()}
        row["mb_per_800_clips"] = {name: round(outcome.mb_per_800_clips, 6) for name, outcome in outcomes.items()}
        rows.append(row)
    return rows


def plot_sweep(rows: Sequence[dict[str, Any]], predictions: PairedPredictions, path: Path,
               chosen: float | None) -> None:
    """Accuracy against MB per 800 clips sent to Big, one curve per payload (plain and deflated),
    one point per threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7.5, 4.5))
    accuracy = [row["accuracy"] for row in rows]
    # One colour and marker per payload; deflated is the same curve dashed, shifted left by what deflate saves.
    looks = {"pcm": ("tab:blue", "o"), "features": ("tab:orange", "s"), "mel": ("tab:purple", "D")}
    for payload in rows[0]["mb_per_800_clips"] if rows else ():
        plain = payload.removesuffix("_deflate")
        colour, marker = looks[plain]
        megabytes = [row["mb_per_800_clips"][payload] for row in rows]
        name = f"{plain} payload{', deflated' if payload != plain else ''}"
        axes.plot(megabytes, accuracy, color=colour, marker=marker, linestyle="--" if payload != plain else "-",
                  markersize=4, label=f"cascade, {name}")
        for row, x in zip(rows, megabytes):
            if round(row["threshold"] * 20) % 4 == 0:  # label every 0.2 of threshold, enough to read the curve
                axes.annotate(f"{row['threshold']:g}", (x, row["accuracy"]), textcoords="offset points",
                              xytext=(4, 4), fontsize=7)
            if row["threshold"] == chosen:
                axes.scatter([x], [row["accuracy"]], s=120, facecolors="none", edgecolors="black", zorder=3,
                             label=f"threshold {chosen:.3f}" if payload == "pcm" else None)
    axes.axhline(predictions.big_accuracy, color="tab:green", linestyle=":",
                 label=f"Big alone {predictions.big_accuracy:.3f}")
    axes.axhline(predictions.little_accuracy, color="tab:red", linestyle=":",
                 label=f"Little alone {predictions.little_accuracy:.3f}")
    axes.set_xscale("symlog", linthresh=0.1)
    axes.set_xlim(left=0)
    axes.set_xlabel(f"MB sent to Big per 800 clips (measured on {predictions.samples} clips)")
    axes.set_ylabel("accuracy")
    axes.set_title("Big/Little cascade: accuracy against communication")
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def run_sweep(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, chosen: float | None, plot_path: Path, progress: bool
) -> dict[str, Any]:
    """Ask Big about every clip once, evaluate every threshold offline and draw the plot; the report's
    ``rows`` are what :func:`format_sweep_table` prints."""
    info = service_metadata(big, little, "sweep")
    paired = predict_both(clips, little, service_answerer(big), big_input(info), desc="sweep", progress=progress)
    rows = sweep_rows(paired, [*SWEEP_THRESHOLDS, *([chosen] if chosen is not None else [])])
    plot_sweep(rows, paired.predictions, plot_path, chosen)
    return {
        "mode": "sweep",
        "samples": len(clips),
        "threshold": chosen,
        "payload": big.payload,
        "little_accuracy": round(paired.predictions.little_accuracy, 6),
        "big_accuracy": round(paired.predictions.big_accuracy, 6),
        "plot": str(plot_path),
        "rows": rows,
    }


def sweep_session(clips: Sequence[Clip], little: KeywordModel, big: BigClient, threshold: float | None,
                  plot_path: Path = DEFAULT_SWEEP_PLOT, progress: bool = True) -> dict[str, Any]:
    """The sweep's whole report: the service and both models (as a cascade run reports them), the threshold
    marked on the plot (``threshold``, else the shipped one, if any) and :func:`run_sweep`'s rows."""
    report = session_header(little, big)
    chosen, report["calibration"] = given_or_shipped(little, threshold)
    report.update(run_sweep(clips, little, big, chosen, plot_path, progress))
    return report
