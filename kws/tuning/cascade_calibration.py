"""Choosing the cascade's threshold on labelled clips that were never tested on.

The threshold belongs to the Little model, like its features: at export it is
calibrated on the validation speakers against the Big model Little will be paired
with, and written into ``models/little.json`` as its ``cascade`` section (the rule,
the threshold, Big's name and sha256, and the validation figures it was chosen
from), so a Pi with no labelled clips uses it as it is::

    python calibrate.py cascade --big models/big_embedding \\
        --data-dir ../shared/data/speech_commands --data-dir ../shared/data/speech_commands_extra \\
        --data-dir ../shared/data/speech_commands_more

A user with labelled clips of their own recalibrates against the Big service they run
(``python calibrate.py cascade --data-dir DIR --service URL``). Either way Little and Big
answer every clip once and every candidate threshold is judged offline
(:class:`~kws.tuning.cascade_replay.PairedPredictions`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws.cascade.run import big_identity
from kws.data.clips import DatasetError, select_clips
from kws.model.metadata import metadata_path, write_section
from kws.model.runtime import KeywordModel, load_model
from kws.rest.client import BigClient
from kws.tuning.cascade_replay import (
    DEFAULT_ALPHA,
    BigAnswerer,
    CascadeOutcome,
    Paired,
    big_input,
    model_answerer,
    predict_both,
    service_answerer,
    service_metadata,
)

log = logging.getLogger(__name__)

#: The split thresholds are calibrated on; the test split is never used for it.
CALIBRATION_SPLIT = "validation"
#: How the threshold is chosen, as the ``cascade`` section records it.
RULE = "margin below threshold; threshold = fewest Big requests not shown less accurate than Big " \
    "(one-sided exact McNemar test, alpha {alpha:g}, validation split)"


@dataclass(frozen=True)
class Calibration:
    """A threshold, the rule that chose it and the validation figures it was chosen from."""

    outcome: CascadeOutcome
    paired: Paired
    alpha: float
    big_model: dict[str, str]
    data_dirs: tuple[str, ...]
    split: str = CALIBRATION_SPLIT

    @property
    def threshold(self) -> float:
        return self.outcome.threshold

    def describe(self) -> str:
        """One line for people: the threshold and how it fared on the clips it was chosen on."""
        predictions = self.paired.predictions
        return (f"threshold {self.threshold:.4f}: {self.split} accuracy {self.outcome.accuracy:.4f} (Big "
                f"{predictions.big_accuracy:.4f}, Little {predictions.little_accuracy:.4f}), Big asked "
                f"{100 * self.outcome.big_fraction:.1f}% of {predictions.samples} clips")

    def to_section(self) -> dict[str, Any]:
        """The ``cascade`` section of the Little model's metadata."""
        predictions = self.paired.predictions
        per_payload = {name: self.paired.for_payload(name).evaluate(self.threshold) for name in self.paired.kinds}
        return {
            "rule": RULE.format(alpha=self.alpha),
            "alpha": self.alpha,
            "threshold": self.threshold,
            "big_model": dict(self.big_model),
            "split": self.split,
            "data_dirs": list(self.data_dirs),
            "validation": {
                "samples": predictions.samples,
                "little_accuracy": round(predictions.little_accuracy, 6),
                "big_accuracy": round(predictions.big_accuracy, 6),
                "accuracy": round(self.outcome.accuracy, 6),
                "big_fraction": round(self.outcome.big_fraction, 6),
                "big_requests": self.outcome.big_requests,
                "mcnemar_p": round(predictions.mcnemar_p(self.threshold), 6),
                "bytes_per_request": {
                    name: round(float(np.mean(self.paired.bytes_by_payload[name])), 1) for name in per_payload
                },
                "mb_per_800_clips": {name: round(outcome.mb_per_800_clips, 4) for name, outcome in per_payload.items()},
            },
        }


def calibrate(
    data_dirs: Sequence[Path],
    split: str,
    little: KeywordModel,
    big: BigAnswerer,
    big_model: dict[str, Any],
    alpha: float = DEFAULT_ALPHA,
    progress: bool = True,
) -> Calibration:
    """The shipped rule (:meth:`~kws.tuning.cascade_replay.PairedPredictions.calibrate`) on ``split`` of every
    folder; DatasetError when they hold no such clips."""
    clips = [clip for data_dir in data_dirs for clip in select_clips(data_dir, split, little.labels)]
    if not clips:
        raise DatasetError(f"{', '.join(map(str, data_dirs))}: no {split} clips to calibrate on")
    paired = predict_both(clips, little, big, big_input(big_model), desc=f"calibrating on {split}", progress=progress)
    outcome = paired.predictions.calibrate(alpha)
    folders = tuple(Path(d).name for d in data_dirs)
    calibration = Calibration(outcome, paired, alpha, big_identity(big_model), folders, split)
    log.info("%s", calibration.describe())
    return calibration


def calibrate_export(little_stem: Path, big_stem: Path, data_dirs: Sequence[Path],
                     alpha: float = DEFAULT_ALPHA) -> Calibration:
    """The export step: calibrate the Little model against its Big (in this process) on the validation
    speakers of ``data_dirs`` and write the ``cascade`` section into the Little model's metadata."""
    little, big = load_model(little_stem, prefer="zlib"), load_model(big_stem)
    calibration = calibrate(data_dirs, CALIBRATION_SPLIT, little, model_answerer(big), big.metadata.raw, alpha)
    write_section(metadata_path(little_stem), "cascade", calibration.to_section())
    return calibration


def calibrate_with_service(data_dirs: Sequence[Path], split: str, little: KeywordModel, big: BigClient,
                           alpha: float = DEFAULT_ALPHA, progress: bool = True) -> Calibration:
    """The shipped rule on the user's own labelled clips, against the service's Big (which must answer)."""
    info = service_metadata(big, little, "calibrate")
    return calibrate(data_dirs, split, little, service_answerer(big), info, alpha, progress)
