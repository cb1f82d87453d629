"""A cascade run over clips: Little first, Big when Little is unsure, and the run's report."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kws.audio import read_wav
from kws.cascade import rule
from kws.cascade.calibrate import (
    CALIBRATION_SPLIT,
    DEFAULT_MAX_BIG_FRACTION,
    calibrate_threshold,
    little_probabilities,
)
from kws.cascade.sweep import DEFAULT_SWEEP_PLOT, run_sweep
from kws.data.clips import Clip, select_clips
from kws.model.runtime import KeywordModel
from kws.rest.client import BigAnswer, BigClient, BigError, BigUnavailable

log = logging.getLogger(__name__)


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
    """Big was asked but gave no usable answer, so Little's label stood."""
    fallback_reason: str | None
    """Why (one of :data:`kws.rest.client.FAILURE_REASONS`), for a fallback."""
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
    margin = float(rule.score_margin(probabilities))
    answer: BigAnswer | None = None
    fallback_reason = None
    if rule.asks_big(margin, threshold):
        try:
            answer = big.predict(samples)
        except BigError as error:  # down, refusing, slow or talking nonsense: Little's answer stands
            fallback_reason = error.reason
    return ClipOutcome(
        clip=clip.key,
        label=clip.label,
        little=little.labels[int(np.argmax(probabilities))],
        margin=round(margin, 6),
        big=answer.label if answer else None,
        fallback=fallback_reason is not None,
        fallback_reason=fallback_reason,
        little_ms=little_seconds * 1000.0,
        end_to_end_ms=(time.perf_counter() - started) * 1000.0,
        body_bytes=answer.body_bytes if answer else 0,
        wire_bytes=answer.wire_bytes if answer else 0,
    )


def run_cascade(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, threshold: float, progress: bool = True
) -> list[ClipOutcome]:
    """Classify every clip; a Big outage or a bad answer only turns requests into fallbacks."""
    big.expect_labels(little.labels)
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
        reasons = ", ".join(f"{reason} {count}" for reason, count in fallback_reasons(outcomes).items())
        # The outage itself was a warning when it began; this is the tally (the report has it too).
        log.info("%d of %d Big requests fell back to Little's answer (%s)", fallbacks, asked, reasons)
    return outcomes


def fallback_reasons(outcomes: Sequence[ClipOutcome]) -> dict[str, int]:
    """How many fallbacks had each reason, most frequent first."""
    return dict(Counter(o.fallback_reason for o in outcomes if o.fallback_reason).most_common())


def summarize(outcomes: Sequence[ClipOutcome], threshold: float) -> dict[str, Any]:
    """The run's report.

    ``accuracy`` is the cascade's, ``little_accuracy`` Little's alone on the same
    clips. ``big_requests`` counts the clips sent to Big (margin below
    ``threshold``), answered or not; ``fallbacks`` those of them Big could not
    answer, where Little's label stood, and ``fallback_reasons`` counts them by
    reason (``timeout``, ``circuit_open``, ``bad_scores``, ...: see
    :data:`kws.rest.client.FAILURE_REASONS`). ``communication_bytes`` sums the request
    bodies (the SenML packs) Big answered; ``wire_bytes`` adds the HTTP heads
    both ways and the response bodies, measured per exchange by
    :func:`kws.rest.client.exchange_bytes`. ``mb_per_800_clips`` scales
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
        "fallback_reasons": fallback_reasons(outcomes),
        "communication_bytes": communication,
        "wire_bytes": sum(o.wire_bytes for o in outcomes),
        "mb_per_800_clips": round(communication / max(samples, 1) * rule.COST_CLIPS / rule.MEGABYTE, 4),
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


class IncompatibleModels(Exception):
    """Big and Little were trained for different label sets, so Big's answers cannot stand in for Little's."""


def check_labels(little: KeywordModel, big: BigClient) -> dict[str, Any] | None:
    """Big's name and sha256, after checking it knows Little's labels; None when Big is down.

    Metadata that is not a model's (BigBadAnswer) is raised: the URL names something else.
    """
    big.expect_labels(little.labels)
    try:
        info = big.model_info()
    except BigUnavailable:
        return None
    if set(info["labels"]) != set(little.labels):
        raise IncompatibleModels(f"Big knows labels {info['labels']}, Little {list(little.labels)}")
    return {"name": info["name"], "sha256": info["sha256"]}


def format_run_summary(report: dict[str, Any]) -> str:
    """One line a human reads after a run; the JSON report has everything."""
    megabytes = report["communication_bytes"] / rule.MEGABYTE
    reasons = ", ".join(f"{reason} {count}" for reason, count in report.get("fallback_reasons", {}).items())
    return (
        f"accuracy {report['accuracy']:.4f} (Little alone {report['little_accuracy']:.4f}) "
        f"on {report['samples']} clips; Big asked {report['big_requests']} times "
        f"({100 * report['big_fraction']:.1f}%), {report['fallbacks']} fallbacks{f' ({reasons})' if reasons else ''}; "
        f"{megabytes:.3f} MB sent ({report['mb_per_800_clips']:.3f} MB per 800 clips)"
    )


@dataclass(frozen=True)
class SessionSettings:
    """How a Little client session chooses its threshold and what it runs."""

    split: str = "test"
    threshold: float | None = None
    """A fixed threshold; None calibrates one on the validation split."""
    target_accuracy: float | None = None
    max_big_fraction: float | None = None
    sweep: bool = False
    plot_path: Path | None = None
    progress: bool = True


def run_session(data_dir: Path, little: KeywordModel, big: BigClient, settings: SessionSettings) -> dict[str, Any]:
    """A whole Little client session: check Big's labels, choose the threshold, run the cascade
    (or the sweep) over ``data_dir``'s split, and return the report."""
    clips = select_clips(data_dir, settings.split, little.labels)
    report: dict[str, Any] = {
        "service": big.service_url,
        "split": settings.split,
        "little_model": {"name": little.name, "sha256": little.sha256, "file": str(little.source)},
        "big_model": check_labels(little, big),
        "calibration": None,
    }
    threshold = settings.threshold
    if threshold is None and (not settings.sweep or settings.target_accuracy is not None):
        if settings.split == CALIBRATION_SPLIT:
            log.warning("evaluating on the split the threshold is calibrated on flatters the cascade")
        budget = settings.max_big_fraction
        if budget is None and settings.target_accuracy is None:
            budget = DEFAULT_MAX_BIG_FRACTION
        calibration = calibrate_threshold(
            data_dir, little, big, settings.target_accuracy, budget, settings.progress
        )
        threshold, report["calibration"] = calibration.threshold, calibration.to_dict()
    if settings.sweep:
        plot_path = settings.plot_path or DEFAULT_SWEEP_PLOT
        report.update(run_sweep(clips, little, big, threshold, plot_path, settings.progress))
    else:
        report["mode"] = "cascade"
        report.update(summarize(run_cascade(clips, little, big, threshold, settings.progress), threshold))
    return report
