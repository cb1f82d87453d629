"""The Little half of the Big/Little cascade: answer locally, ask the Big service when unsure.

For each clip the Little model (``models/little``, loaded from its zlib file as
the Pi does) gives probabilities; when the score margin (top-1 minus top-2) is
below the threshold, the raw clip goes to the Big service as a SenML pack and
Big's label is the answer. When Big cannot be reached, Little's answer stands
and the clip is counted in ``fallbacks``.

The threshold is either given (``--threshold``) or calibrated on the
*validation* split, never the test split: by default as the most accurate
threshold that sends at most ``--max-big-fraction`` (15 %) of the clips to Big,
or, with ``--target-accuracy``, as the lowest threshold whose cascade accuracy
reaches that target.

Examples::

    python little_client.py --service http://127.0.0.1:8080 --data-dir DIR --report reports/cascade.json
    python little_client.py --service http://127.0.0.1:8080 --data-dir DIR --threshold 0.4
    python little_client.py --service http://127.0.0.1:8080 --data-dir DIR --sweep --plot reports/sweep.png
"""

# ruff: noqa: E402 - imports follow the environment line on purpose
from __future__ import annotations

import os

# One clip at a time: OpenBLAS's thread pool only adds hand-offs to its small
# matrix products. Measured: Little's median 9.4 ms with it, 0.9 ms without.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import audio_pack
import cascade
from big_client import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT_S,
    BigAnswer,
    BigClient,
    BigRejected,
    BigUnavailable,
)
from dataset import Clip, DatasetError, read_wav, select_clips
from kws_model import KeywordModel, ModelError, load_model
from reporting import format_table, write_json_report

log = logging.getLogger("little_client")

DEFAULT_SERVICE = "http://127.0.0.1:8080"
#: Without --threshold or --target-accuracy: the most accurate threshold on validation
#: that asks Big about at most this fraction of the clips (the original reports sent 13.75 %).
DEFAULT_MAX_BIG_FRACTION = 0.15
DEFAULT_MODEL = Path("models/little")
DEFAULT_SWEEP_REPORT = Path("reports/little_sweep.json")
DEFAULT_SWEEP_PLOT = Path("reports/little_sweep.png")
#: The split thresholds are calibrated on; the test split is never used for it.
CALIBRATION_SPLIT = "validation"
SWEEP_THRESHOLDS = tuple(round(float(t), 2) for t in np.linspace(0.0, 1.0, 21))


def little_probabilities(model: KeywordModel, samples: np.ndarray) -> np.ndarray:
    """Class probabilities; a model whose metadata says it outputs logits gets a softmax."""
    scores = model.predict_audio(samples)
    return cascade.softmax(scores) if model.metadata.raw.get("output") == "logits" else scores


# --------------------------------------------------------------------------- #
# Both models on every clip (calibration and sweep)
# --------------------------------------------------------------------------- #


def predict_both(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, desc: str, progress: bool = True
) -> cascade.PairedPredictions:
    """Little and Big on every clip, labels as indices into Little's; BigUnavailable if Big cannot answer."""
    rows = []
    for clip in tqdm(clips, desc=desc, unit="clip", disable=not progress):
        samples = read_wav(clip.path)
        probabilities = little_probabilities(little, samples)
        answer = big.predict(samples)
        rows.append(
            (
                little.labels.index(clip.label),
                float(cascade.score_margin(probabilities)),
                int(np.argmax(probabilities)),
                little.labels.index(answer.label),
                answer.body_bytes,
            )
        )
    columns = (np.array(column) for column in zip(*rows))
    return cascade.PairedPredictions(*columns)


@dataclass(frozen=True)
class Calibration:
    """How a threshold was chosen, and on which clips."""

    threshold: float
    rule: str
    """What the threshold was chosen for: a target accuracy, or a budget of Big requests."""
    outcome: cascade.CascadeOutcome
    clips: tuple[Clip, ...]
    predictions: cascade.PairedPredictions

    def to_dict(self) -> dict[str, Any]:
        return {
            "split": CALIBRATION_SPLIT,
            "samples": len(self.clips),
            "rule": self.rule,
            "little_accuracy": round(self.predictions.little_accuracy, 6),
            "big_accuracy": round(self.predictions.big_accuracy, 6),
            "cascade": self.outcome.to_dict(),
        }


def calibrate_threshold(
    data_dir: Path,
    little: KeywordModel,
    big: BigClient,
    target_accuracy: float | None = None,
    max_big_fraction: float | None = None,
    progress: bool = True,
) -> Calibration:
    """A threshold chosen on the validation split, by one of two rules.

    With ``max_big_fraction``: the most accurate threshold that asks Big about at
    most that fraction of the clips. Otherwise: the lowest threshold reaching
    ``target_accuracy`` (default: Big's own accuracy there).
    """
    clips = tuple(select_clips(data_dir, CALIBRATION_SPLIT, little.labels))
    if not clips:
        raise DatasetError(f"{data_dir} has no {CALIBRATION_SPLIT} clips to calibrate on; pass --threshold")
    predictions = predict_both(clips, little, big, desc="calibrating on validation", progress=progress)
    if max_big_fraction is not None:
        outcome = predictions.calibrate_budget(max_big_fraction)
        rule = f"most accurate with at most {max_big_fraction:.1%} of clips sent to Big"
    else:
        target = predictions.big_accuracy if target_accuracy is None else target_accuracy
        outcome = predictions.calibrate(target)
        rule = f"fewest Big requests reaching accuracy {target:.4f}"
    log.info(
        "threshold %.4f (%s): validation accuracy %.4f (Big %.4f, Little %.4f); Big asked %.1f%% of %d clips",
        outcome.threshold,
        rule,
        outcome.accuracy,
        predictions.big_accuracy,
        predictions.little_accuracy,
        100 * outcome.big_fraction,
        len(clips),
    )
    return Calibration(outcome.threshold, rule, outcome, clips, predictions)


# --------------------------------------------------------------------------- #
# The cascade run
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class ClipOutcome:
    """What happened to one clip in a cascade run."""

    clip: str
    label: str
    little: str
    margin: float
    big: str | None
    """Big's label, or None when Big was not asked or did not answer."""
    fallback: bool
    """Big was asked but could not answer, so Little's label stood."""
    little_ms: float
    end_to_end_ms: float
    body_bytes: int
    wire_bytes: int

    @property
    def asked_big(self) -> bool:
        return self.big is not None or self.fallback

    @property
    def prediction(self) -> str:
        return self.big if self.big is not None else self.little


def classify_clip(clip: Clip, little: KeywordModel, big: BigClient, threshold: float) -> ClipOutcome:
    """Little first; Big when Little's margin is below ``threshold`` and Big can answer."""
    samples = read_wav(clip.path)
    started = time.perf_counter()
    probabilities = little_probabilities(little, samples)
    little_seconds = time.perf_counter() - started
    margin = float(cascade.score_margin(probabilities))
    answer: BigAnswer | None = None
    fallback = False
    if cascade.asks_big(margin, threshold):
        try:
            answer = big.predict(samples)
        except BigUnavailable:
            fallback = True
    return ClipOutcome(
        clip=clip.key,
        label=clip.label,
        little=little.labels[int(np.argmax(probabilities))],
        margin=round(margin, 6),
        big=answer.label if answer else None,
        fallback=fallback,
        little_ms=little_seconds * 1000.0,
        end_to_end_ms=(time.perf_counter() - started) * 1000.0,
        body_bytes=answer.body_bytes if answer else 0,
        wire_bytes=answer.wire_bytes if answer else 0,
    )


def run_cascade(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, threshold: float, progress: bool = True
) -> list[ClipOutcome]:
    """Classify every clip; a Big outage only turns requests into fallbacks."""
    outcomes: list[ClipOutcome] = []
    asked = fallbacks = 0
    with tqdm(clips, desc="cascade", unit="clip", disable=not progress) as bar:
        for clip in bar:
            outcome = classify_clip(clip, little, big, threshold)
            outcomes.append(outcome)
            asked += outcome.asked_big
            fallbacks += outcome.fallback
            bar.set_postfix(big=asked, fallbacks=fallbacks, refresh=False)
    if fallbacks:
        log.warning("%d of %d Big requests fell back to Little's answer", fallbacks, asked)
    return outcomes


def summarize(outcomes: Sequence[ClipOutcome], threshold: float) -> dict[str, Any]:
    """The run's report.

    ``accuracy`` is the cascade's, ``little_accuracy`` Little's alone on the same
    clips. ``big_requests`` counts the clips sent to Big (margin below
    ``threshold``), answered or not; ``fallbacks`` those of them Big could not
    answer, where Little's label stood. ``communication_bytes`` sums the request
    bodies (the SenML packs) Big answered; ``wire_bytes`` adds the HTTP heads
    both ways and the response bodies, measured per exchange by
    :func:`big_client.exchange_bytes`. ``mb_per_800_clips`` scales
    ``communication_bytes`` to 800 clips (1 MB = 10^6 bytes). Latencies:
    ``little_*`` is Little's features and inference, ``end_to_end_median`` the
    whole decision including any Big round trip; WAV reading is in neither.
    """
    samples = len(outcomes)
    little_ms = np.array([o.little_ms for o in outcomes])
    communication = sum(o.body_bytes for o in outcomes)
    big_requests = sum(o.asked_big for o in outcomes)
    return {
        "samples": samples,
        "threshold": threshold,
        "accuracy": _mean(o.prediction == o.label for o in outcomes),
        "little_accuracy": _mean(o.little == o.label for o in outcomes),
        "big_requests": big_requests,
        "big_fraction": round(big_requests / samples, 6) if samples else 0.0,
        "fallbacks": sum(o.fallback for o in outcomes),
        "communication_bytes": communication,
        "wire_bytes": sum(o.wire_bytes for o in outcomes),
        "mb_per_800_clips": round(communication / max(samples, 1) * cascade.COST_CLIPS / cascade.MEGABYTE, 4),
        "latency_ms": {
            "little_median": _round(np.median(little_ms)) if samples else None,
            "little_p95": _round(np.percentile(little_ms, 95)) if samples else None,
            "end_to_end_median": _round(np.median([o.end_to_end_ms for o in outcomes])) if samples else None,
        },
        "clips": [
            {**asdict(o), "little_ms": _round(o.little_ms), "end_to_end_ms": _round(o.end_to_end_ms)} for o in outcomes
        ],
    }


def _mean(flags: Any) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 6) if values else 0.0


def _round(value: float) -> float:
    return round(float(value), 3)


# --------------------------------------------------------------------------- #
# Sweep
# --------------------------------------------------------------------------- #


def format_sweep_table(rows: Sequence[cascade.CascadeOutcome]) -> str:
    return format_table(
        ["threshold", "accuracy", "big %", "requests", "MB sent", "MB/800 clips"],
        [
            [
                row.threshold,
                row.accuracy,
                f"{100 * row.big_fraction:.1f}",
                row.big_requests,
                f"{row.communication_bytes / cascade.MEGABYTE:.3f}",
                f"{row.mb_per_800_clips:.3f}",
            ]
            for row in rows
        ],
    )


def plot_sweep(
    rows: Sequence[cascade.CascadeOutcome], predictions: cascade.PairedPredictions, path: Path, chosen: float | None
) -> None:
    """Accuracy against megabytes sent to Big, one point per threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 4.5))
    megabytes = [row.communication_bytes / cascade.MEGABYTE for row in rows]
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


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Classify clips with the Little model and ask the Big service when Little is unsure.",
        epilog="Without --threshold the threshold is calibrated on the validation split, never on the test split.",
    )
    parser.add_argument(
        "--service", metavar="URL", default=DEFAULT_SERVICE, help="Big service base URL (default: %(default)s)"
    )
    parser.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="Speech Commands folder (<label>/<clip>.wav)"
    )
    parser.add_argument(
        "--split",
        default="test",
        metavar="SPLIT",
        help="train, validation, test, all, or a split file (default: %(default)s)",
    )
    parser.add_argument(
        "--model",
        metavar="STEM",
        type=Path,
        default=DEFAULT_MODEL,
        help="Little model stem; its .tflite.zlib is loaded (default: %(default)s)",
    )
    choice = parser.add_mutually_exclusive_group()
    choice.add_argument(
        "--threshold", type=float, metavar="T", help="ask Big when Little's score margin is below this, 0 to 1"
    )
    choice.add_argument(
        "--target-accuracy",
        type=float,
        metavar="A",
        help="calibrate the lowest threshold reaching this validation accuracy, 0 to 1",
    )
    choice.add_argument(
        "--max-big-fraction",
        type=float,
        metavar="F",
        help="calibrate the most accurate threshold sending at most this fraction of clips to Big "
        f"(the default rule, with F = {DEFAULT_MAX_BIG_FRACTION})",
    )
    parser.add_argument(
        "--report",
        metavar="JSON",
        type=Path,
        help=f"write the JSON report here (default: print it; with --sweep: {DEFAULT_SWEEP_REPORT})",
    )
    parser.add_argument(
        "--sweep", action="store_true", help="evaluate a range of thresholds offline (asks Big about every clip once)"
    )
    parser.add_argument(
        "--plot",
        type=Path,
        metavar="PNG",
        help=f"with --sweep: PNG of accuracy against MB sent (default: {DEFAULT_SWEEP_PLOT})",
    )
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=DEFAULT_TIMEOUT_S,
        help="seconds per Big request attempt (default: %(default)s)",
    )
    parser.add_argument(
        "--retries",
        metavar="N",
        type=int,
        default=DEFAULT_RETRIES,
        help="extra attempts on network errors and 502/503/504 (default: %(default)s)",
    )
    parser.add_argument("--device", metavar="ID", help="device id in the SenML base name (default: this host's name)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if args.threshold is not None and not 0.0 <= args.threshold <= 1.0:
        parser.error(f"--threshold must be between 0 and 1 (a score margin), got {args.threshold}")
    if args.max_big_fraction is not None and not 0.0 <= args.max_big_fraction <= 1.0:
        parser.error(f"--max-big-fraction must be between 0 and 1, got {args.max_big_fraction}")
    if args.target_accuracy is not None and not 0.0 < args.target_accuracy <= 1.0:
        parser.error(f"--target-accuracy must be in (0, 1], got {args.target_accuracy}")
    if args.plot and not args.sweep:
        parser.error("--plot draws the sweep: add --sweep")
    if args.timeout <= 0 or args.retries < 0:
        parser.error("--timeout must be positive and --retries at least 0")
    if args.device is not None:
        try:
            audio_pack.check_device_id(args.device)
        except audio_pack.AudioPackError as error:
            parser.error(f"--device: {error}")
    return parser, args


class IncompatibleModels(Exception):
    """Big and Little were trained for different label sets, so Big's answers cannot stand in for Little's."""


def check_labels(little: KeywordModel, big: BigClient) -> dict[str, Any] | None:
    """Big's name and sha256, after checking it knows Little's labels; None when Big is down."""
    try:
        info = big.model_info()
    except BigUnavailable:
        return None
    if set(info["labels"]) != set(little.labels):
        raise IncompatibleModels(f"Big knows labels {info['labels']}, Little {list(little.labels)}")
    return {"name": info["name"], "sha256": info["sha256"]}


def run_sweep(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, chosen: float | None, plot_path: Path, progress: bool
) -> dict[str, Any]:
    """Ask Big about every clip once, evaluate every threshold offline, print the table, draw the plot."""
    predictions = predict_both(clips, little, big, desc="sweep", progress=progress)
    rows = predictions.sweep([*SWEEP_THRESHOLDS, *([chosen] if chosen is not None else [])])
    print(format_sweep_table(rows))
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


def run(args: argparse.Namespace, little: KeywordModel, big: BigClient) -> dict[str, Any]:
    """Everything after the models are loaded; returns the report."""
    clips = select_clips(args.data_dir, args.split, little.labels)
    progress = not args.no_progress
    report: dict[str, Any] = {
        "service": big.service_url,
        "split": args.split,
        "little_model": {"name": little.name, "sha256": little.sha256, "file": str(little.source)},
        "big_model": check_labels(little, big),
        "calibration": None,
    }
    threshold = args.threshold
    if threshold is None and (not args.sweep or args.target_accuracy is not None):
        if args.split == CALIBRATION_SPLIT:
            log.warning("evaluating on the split the threshold is calibrated on flatters the cascade")
        budget = args.max_big_fraction
        if budget is None and args.target_accuracy is None:
            budget = DEFAULT_MAX_BIG_FRACTION
        calibration = calibrate_threshold(args.data_dir, little, big, args.target_accuracy, budget, progress)
        threshold, report["calibration"] = calibration.threshold, calibration.to_dict()
    if args.sweep:
        report.update(run_sweep(clips, little, big, threshold, args.plot or DEFAULT_SWEEP_PLOT, progress))
    else:
        report["mode"] = "cascade"
        report.update(summarize(run_cascade(clips, little, big, threshold, progress), threshold))
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not args.verbose:  # urllib3 warns about every retried attempt; BigClient reports an outage once
        logging.getLogger("urllib3.connectionpool").setLevel(logging.ERROR)
    try:
        little = load_model(args.model, prefer="zlib")
    except ModelError as error:
        parser.exit(2, f"error: --model {args.model}: {error}\n")
    with BigClient(args.service, timeout=args.timeout, retries=args.retries, device=args.device) as big:
        try:
            report = run(args, little, big)
        except DatasetError as error:
            parser.exit(2, f"error: --data-dir/--split: {error}\n")
        except BigUnavailable as error:
            parser.exit(
                2,
                f"error: --service {args.service} is needed to calibrate or sweep but cannot answer ({error}); "
                "start big_service.py or pass --threshold\n",
            )
        except IncompatibleModels as error:
            parser.exit(2, f"error: --service {args.service} serves a model for other words than --model: {error}\n")
        except BigRejected as error:
            parser.exit(2, f"error: --service {args.service} rejected a request: {error}\n")
    report_path = args.report or (DEFAULT_SWEEP_REPORT if args.sweep else None)
    if report_path is None:
        print(json.dumps(report, indent=2))
        return 0
    write_json_report(report_path, report)
    log.info("report written to %s", report_path)
    if not args.sweep:
        print(format_run_summary(report))
    return 0


def format_run_summary(report: dict[str, Any]) -> str:
    """One line a human reads after a run; the JSON report has everything."""
    megabytes = report["communication_bytes"] / cascade.MEGABYTE
    return (
        f"accuracy {report['accuracy']:.4f} (Little alone {report['little_accuracy']:.4f}) "
        f"on {report['samples']} clips; Big asked {report['big_requests']} times "
        f"({100 * report['big_fraction']:.1f}%), {report['fallbacks']} fallbacks; "
        f"{megabytes:.3f} MB sent ({report['mb_per_800_clips']:.3f} MB per 800 clips)"
    )


if __name__ == "__main__":
    sys.exit(main())
