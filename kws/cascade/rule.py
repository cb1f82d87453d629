"""The Big/Little decision rule, in numpy alone: what the Pi applies to every clip.

Little answers a clip itself when it is sure, and asks Big when its *score
margin* (top-1 probability minus top-2) is below a threshold. The threshold ships
in the Little model's metadata; it is chosen offline, from both models' answers to
the validation speakers (:mod:`kws.tuning.cascade_replay`).
"""

from __future__ import annotations

import numpy as np

#: Bytes per megabyte in every report (SI, as network costs are quoted).
MEGABYTE = 1_000_000
#: The clip count communication costs are normalised to ("MB per 800 clips").
COST_CLIPS = 800


def score_margin(probabilities: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability: 0 when Little hesitates between two labels, 1 when certain."""
    top_two = np.sort(np.asarray(probabilities, dtype=np.float64), axis=-1)[..., -2:]
    return top_two[..., 1] - top_two[..., 0]


def asks_big(margins: np.ndarray, threshold: float) -> np.ndarray:
    """The rule itself: ask Big exactly when the margin is below the threshold (0 never asks)."""
    return np.asarray(margins) < threshold
