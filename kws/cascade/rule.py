"""The Big/Little decision rule and its offline evaluation, in numpy alone.

Little answers a clip itself when it is sure, and asks Big when its *score
margin* (top-1 probability minus top-2) is below a threshold. Given Little's
and Big's predictions for a set of clips, every threshold can be evaluated
offline, which is how the threshold is calibrated (on the validation split, at export: it ships in
the Little model's metadata) and
how ``little_client.py --sweep`` draws its accuracy/cost curve without asking
Big once per threshold.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Bytes per megabyte in every report (SI, as network costs are quoted).
MEGABYTE = 1_000_000
#: The clip count communication costs are normalised to ("MB per 800 clips").
COST_CLIPS = 800
#: The shipped rule's level: the cascade must not be shown less accurate than Big at 5 %.
DEFAULT_ALPHA = 0.05
RULE = "margin below threshold; threshold = fewest Big requests not shown less accurate than Big " \
    "(one-sided exact McNemar test, alpha {alpha:g}, validation split)"


def score_margin(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability: 0 when Little hesitates between two labels, 1 when certain."""
    top_two = np.sort(np.asarray(probabilities, dtype=np.float64), axis=-1)[..., -2:]
    return top_two[..., 1] - top_two[..., 0]


def asks_big(margins: np.ndarray, threshold: float) -> np.ndarray:
    """The rule itself: ask Big exactly when the margin is below the threshold (0 never asks)."""
    return np.asarray(margins) < threshold


@dataclass(frozen=True)
class CascadeOutcome:
    """What one threshold gives on a set of clips."""

    threshold: float
    accuracy: float
    big_fraction: float
    big_requests: int
    communication_bytes: int
    mb_per_800_clips: float

    def to_dict(self) -> dict[str, float | int]:
        """For JSON reports: fractions to 6 decimals like every other figure; the threshold exact."""
        rounded = {"accuracy", "big_fraction", "mb_per_800_clips"}
        return {name: round(value, 6) if name in rounded else value for name, value in asdict(self).items()}


@dataclass(frozen=True)
class PairedPredictions:
    """Little's and Big's predictions for the same clips: all a threshold needs to be judged.

    Every array has one entry per clip; labels are indices into one label list.
    """

    true_labels: np.ndarray
    margins: np.ndarray
    little: np.ndarray
    big: np.ndarray
    request_bytes: np.ndarray
    """Size of the request body each clip would cost if sent to Big."""

    @property
    def samples(self) -> int:
        return len(self.true_labels)

    @property
    def little_accuracy(self) -> float:
        return float(np.mean(self.little == self.true_labels)) if self.samples else 0.0

    @property
    def big_accuracy(self) -> float:
        return float(np.mean(self.big == self.true_labels)) if self.samples else 0.0

    def evaluate(self, threshold: float) -> CascadeOutcome:
        """Accuracy and Big traffic of the cascade at ``threshold``."""
        asked = asks_big(self.margins, threshold)
        predictions = np.where(asked, self.big, self.little)
        sent_bytes = int(np.sum(self.request_bytes[asked]))
        return CascadeOutcome(
            threshold=float(threshold),
            accuracy=float(np.mean(predictions == self.true_labels)) if self.samples else 0.0,
            big_fraction=float(np.mean(asked)) if self.samples else 0.0,
            big_requests=int(np.sum(asked)),
            communication_bytes=sent_bytes,
            mb_per_800_clips=sent_bytes / max(self.samples, 1) * COST_CLIPS / MEGABYTE,
        )

    def sweep(self, thresholds: Sequence[float]) -> list[CascadeOutcome]:
        """The cascade at each distinct threshold, in increasing order."""
        return [self.evaluate(threshold) for threshold in sorted(set(thresholds))]

    def candidate_thresholds(self) -> np.ndarray:
        """Every threshold that makes a different decision on these clips: 0, each midpoint
        between neighbouring distinct margins, and just above the largest.

        Midpoints rather than values just above a margin, so that a clip of another
        split whose margin lies between two calibration clips' is not decided by a hair.
        """
        distinct = np.unique(np.asarray(self.margins, dtype=np.float64))
        midpoints = (distinct[:-1] + distinct[1:]) / 2
        return np.concatenate([[0.0], midpoints, [np.nextafter(distinct[-1], np.inf)]])

    def mcnemar_p(self, threshold: float) -> float:
        """One-sided exact McNemar p-value of "the cascade at ``threshold`` is less accurate than Big".

        Only the clips where the two disagree carry information: ``b`` that Big gets
        right and the cascade wrong, ``c`` the other way round. Under "as accurate",
        each such clip is a fair coin, so p = P(Binomial(b + c, 1/2) >= b).
        """
        predictions = np.where(asks_big(self.margins, threshold), self.big, self.little)
        big_only = int(np.sum((self.big == self.true_labels) & (predictions != self.true_labels)))
        cascade_only = int(np.sum((predictions == self.true_labels) & (self.big != self.true_labels)))
        disagreements = big_only + cascade_only
        tail = sum(math.comb(disagreements, k) for k in range(big_only, disagreements + 1))
        return tail / 2**disagreements if disagreements else 1.0

    def calibrate(self, alpha: float = DEFAULT_ALPHA) -> CascadeOutcome:
        """The lowest threshold (so the fewest Big requests) at which the cascade is not shown to be
        less accurate than Big: one-sided exact McNemar test at level ``alpha`` on these clips.

        A point estimate ("reaches Big's accuracy on validation") would ride on a
        handful of clips; this rule asks Big as little as the evidence allows while
        the evidence cannot tell the cascade from Big. Always returns a threshold:
        the one just above the largest margin sends every clip to Big.
        """
        for threshold in self.candidate_thresholds():
            if self.mcnemar_p(threshold) >= alpha:
                return self.evaluate(threshold)
        return self.evaluate(self.candidate_thresholds()[-1])
