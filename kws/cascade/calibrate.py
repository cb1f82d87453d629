"""Choosing the cascade's threshold on labelled clips that were never tested on.

Little and Big answer every clip of the calibration split once; every candidate
threshold is then evaluated offline (:class:`~kws.cascade.rule.PairedPredictions`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kws.audio import read_wav
from kws.cascade import rule
from kws.data.clips import Clip, DatasetError, select_clips
from kws.model.runtime import KeywordModel
from kws.rest.client import BigClient

log = logging.getLogger(__name__)

#: The split thresholds are calibrated on; the test split is never used for it.
CALIBRATION_SPLIT = "validation"
#: Without a threshold or a target accuracy: the most accurate threshold on validation
#: that asks Big about at most this fraction of the clips (the original reports sent 13.75 %).
DEFAULT_MAX_BIG_FRACTION = 0.15


def little_probabilities(model: KeywordModel, samples: np.ndarray) -> np.ndarray:
    """Class probabilities; a model whose metadata says it outputs logits gets a softmax."""
    scores = model.predict_audio(samples)
    return rule.softmax(scores) if model.metadata.raw.get("output") == "logits" else scores


def predict_both(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, desc: str, progress: bool = True
) -> rule.PairedPredictions:
    """Little and Big on every clip, labels as indices into Little's; a BigError if Big cannot answer."""
    big.expect_labels(little.labels)
    rows = []
    for clip in tqdm(clips, desc=desc, unit="clip", disable=not progress):
        samples = read_wav(clip.path)
        probabilities = little_probabilities(little, samples)
        answer = big.predict(samples)
        rows.append(
            (
                little.labels.index(clip.label),
                float(rule.score_margin(probabilities)),
                int(np.argmax(probabilities)),
                little.labels.index(answer.label),
                answer.body_bytes,
            )
        )
    columns = (np.array(column) for column in zip(*rows))
    return rule.PairedPredictions(*columns)


@dataclass(frozen=True)
class Calibration:
    """How a threshold was chosen, and on which clips."""

    threshold: float
    rule: str
    """What the threshold was chosen for: a target accuracy, or a budget of Big requests."""
    outcome: rule.CascadeOutcome
    clips: tuple[Clip, ...]
    predictions: rule.PairedPredictions

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
        raise DatasetError(f"{data_dir} has no {CALIBRATION_SPLIT} clips to calibrate on; pass --threshold T")
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
