"""The Big/Little decision rule and its offline evaluation, in numpy alone.

Little answers a clip itself when it is sure, and asks Big when its *score
margin* (top-1 probability minus top-2) is below a threshold. Given Little's
and Big's predictions for a set of clips, every threshold can be evaluated
offline, which is how the threshold is calibrated (on the validation split) and
how ``little_client.py --sweep`` draws its accuracy/cost curve without asking
Big once per threshold.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

log = logging.getLogger(__name__)

#: Bytes per megabyte in every report (SI, as network costs are quoted).
MEGABYTE = 1_000_000
#: The clip count communication costs are normalised to ("MB per 800 clips").
COST_CLIPS = 800


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, stable for large logits."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exps = np.exp(shifted)
    return exps / np.sum(exps, axis=-1, keepdims=True)


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

    def calibrate_budget(self, max_big_fraction: float) -> CascadeOutcome:
        """The most accurate threshold that sends at most ``max_big_fraction`` of the clips to Big.

        Among equally accurate thresholds the lowest (fewest requests) wins. This is
        the rule to use when Little is much weaker on the calibration clips than on
        the clips it will meet: a target accuracy would then buy far more traffic
        than it needs, while a traffic budget holds whatever the split.
        """
        outcomes = [self.evaluate(threshold) for threshold in self.candidate_thresholds()]
        affordable = [outcome for outcome in outcomes if outcome.big_fraction <= max_big_fraction]
        return max(affordable, key=lambda outcome: (outcome.accuracy, -outcome.big_requests))

    def calibrate(self, target_accuracy: float) -> CascadeOutcome:
        """The lowest threshold (so the fewest Big requests) whose accuracy reaches the target.

        When no threshold reaches it, the most accurate one (fewest requests among
        ties) is returned with a warning, so a run can still go on.
        """
        outcomes = [self.evaluate(threshold) for threshold in self.candidate_thresholds()]
        reaching = [outcome for outcome in outcomes if outcome.accuracy >= target_accuracy]
        if reaching:
            return reaching[0]
        best = max(outcomes, key=lambda outcome: (outcome.accuracy, -outcome.big_requests))
        log.warning(
            "no threshold reaches accuracy %.4f on %d clips; using %.4f (accuracy %.4f)",
            target_accuracy,
            self.samples,
            best.threshold,
            best.accuracy,
        )
        return best
