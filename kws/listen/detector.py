"""From window posteriors to detections: smoothing, a threshold, and quiet after each detection.

A stream is mostly silence, noise and other words, and one spoken keyword fills
several consecutive windows. So the posteriors of the last few windows are averaged
(:class:`Smoother`), the most probable label is detected when it is a *keyword* and its
smoothed probability reaches the threshold, and for ``suppression_s`` after a detection
nothing else is (:class:`Trigger`). Labels such as ``_silence_`` and ``_unknown_`` (any
label written ``_like_this_``) take part in the average but are never detected.

Time is counted in samples, so that a quiet time of 1 s after a detection ends on
exactly the hop it should whatever the floating point of ``0.1 * n``.
:func:`replay` feeds the same two classes from stored posteriors, for calibration and
for the benchmark's DET curve: the detections are the ones a live run makes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.data.clips import is_keyword
from kws.listen.stream import StreamError


def keyword_indices(labels: Sequence[str]) -> np.ndarray:
    """Positions of the keyword labels; an error when a model has none."""
    indices = np.array([index for index, label in enumerate(labels) if is_keyword(label)], dtype=np.int64)
    if indices.size == 0:
        raise StreamError(f"no keyword among the labels {list(labels)}")
    return indices


class Smoother:
    """The mean of the last ``windows`` posteriors; nothing until that many have been seen."""

    def __init__(self, windows: int) -> None:
        self._recent: deque[np.ndarray] = deque(maxlen=windows)

    def push(self, probabilities: np.ndarray) -> np.ndarray | None:
        self._recent.append(np.asarray(probabilities, dtype=np.float32))
        if len(self._recent) < self._recent.maxlen:
            return None
        return np.mean(np.stack(self._recent), axis=0)


@dataclass(frozen=True)
class Candidate:
    """A detection as Little makes it."""

    end: int
    """The window's end, in samples from the stream's start: the moment of detection."""
    index: int
    """The keyword's position in the model's labels."""
    score: float
    """Its smoothed probability."""

    @property
    def time_s(self) -> float:
        return self.end / SAMPLE_RATE


class Trigger:
    """Detect the most probable label when it is a keyword at or above ``threshold``, then stay quiet
    for ``suppression`` samples. (A keyword above a low threshold while ``_unknown_`` is likelier is not
    detected: the model says it is something else.)

    A call below the threshold changes nothing, which is what lets :func:`replay` skip such hops.
    """

    def __init__(self, keywords: np.ndarray, threshold: float, suppression: int) -> None:
        self.keywords = keywords
        self._keywords = frozenset(int(index) for index in keywords)
        self.threshold = threshold
        self.suppression = suppression
        self._quiet_until = -1

    def update(self, end: int, smoothed: np.ndarray) -> Candidate | None:
        index = int(np.argmax(smoothed))
        score = float(smoothed[index])
        if score < self.threshold or end < self._quiet_until or index not in self._keywords:
            return None
        self._quiet_until = end + self.suppression
        return Candidate(end, index, score)


class Detector:
    """Smoother and trigger together: one call per window."""

    def __init__(self, labels: Sequence[str], windows: int, threshold: float, suppression: int) -> None:
        self.smoother = Smoother(windows)
        self.trigger = Trigger(keyword_indices(labels), threshold, suppression)

    def step(self, end: int, probabilities: np.ndarray) -> Candidate | None:
        smoothed = self.smoother.push(probabilities)
        return None if smoothed is None else self.trigger.update(end, smoothed)


def smoothed_track(ends: np.ndarray, probabilities: np.ndarray, windows: int) -> tuple[np.ndarray, np.ndarray]:
    """Every smoothed posterior a live :class:`Smoother` gives for these windows, with its window's end."""
    smoother = Smoother(windows)
    rows = [(end, smoothed) for end, row in zip(ends, probabilities) if (smoothed := smoother.push(row)) is not None]
    if not rows:
        return np.zeros(0, dtype=np.int64), np.zeros((0, probabilities.shape[1]), dtype=np.float32)
    return np.array([end for end, _ in rows], dtype=np.int64), np.stack([row for _, row in rows])


def replay(
    ends: np.ndarray, smoothed: np.ndarray, labels: Sequence[str], threshold: float, suppression: int
) -> list[Candidate]:
    """The detections a live :class:`Trigger` makes on a smoothed track, visiting only the hops at the threshold."""
    keywords = keyword_indices(labels)
    trigger = Trigger(keywords, threshold, suppression)
    best = smoothed[:, keywords].max(axis=1) if len(smoothed) else np.zeros(0)
    found = (trigger.update(int(ends[row]), smoothed[row]) for row in np.flatnonzero(best >= threshold))
    return [candidate for candidate in found if candidate is not None]
