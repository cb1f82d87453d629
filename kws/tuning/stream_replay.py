"""A labelled stream heard once, then judged under many parameters: for calibration and the DET curve.

Little (and Big, for the cascade) go over every window of the stream once, the way a
listener computes them (:func:`~kws.listen.stream.hop_probabilities`); every parameter
set is then replayed from those posteriors with the listener's own classes
(:func:`~kws.listen.detector.replay`, :func:`~kws.listen.confirm.judge`,
:func:`~kws.listen.listener.settle`), so what is chosen here is what a live run does.
Big is the in-process Big model here; over HTTP it gets the same window and, its
features being equal, gives the same answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from kws.listen.confirm import Verdict, judge
from kws.listen.detector import Candidate, replay, smoothed_track
from kws.listen.listener import Trace, settle
from kws.listen.params import ListenParams
from kws.listen.stream import hop_probabilities
from kws.model.runtime import KeywordModel
from kws.tuning.stream_scoring import StreamScore, score
from kws.tuning.stream_synthesis import SyntheticStream


@dataclass
class Track:
    """One stream's posteriors: Little's for every window, and Big's when the cascade is to be judged."""

    stream: SyntheticStream
    labels: tuple[str, ...]
    ends: np.ndarray
    probabilities: np.ndarray
    big_labels: tuple[str, ...] = ()
    big_rows: dict[int, np.ndarray] = field(default_factory=dict)
    """Big's probabilities for the window ending at each sample (computed when first asked, for a Big on the
    pretrained front end: see :func:`make_track`)."""
    big: KeywordModel | None = field(default=None, repr=False)
    """A Big asked only about the windows a detection needs, with the clip the listener would send it."""
    big_window_samples: int = 0
    _smoothed: dict[int, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)
    _verdicts: dict[tuple[int, str, float], Verdict] = field(default_factory=dict, repr=False)
    _candidates: dict[tuple[int, float, int], list[Candidate]] = field(default_factory=dict, repr=False)

    def smoothed(self, windows: int) -> tuple[np.ndarray, np.ndarray]:
        if windows not in self._smoothed:
            self._smoothed[windows] = smoothed_track(self.ends, self.probabilities, windows)
        return self._smoothed[windows]

    def candidates(self, params: ListenParams) -> list[Candidate]:
        """Little's detections under ``params``."""
        key = (params.smoothing_windows, params.threshold, params.suppression_samples)
        if key not in self._candidates:
            ends, smoothed = self.smoothed(params.smoothing_windows)
            self._candidates[key] = replay(ends, smoothed, self.labels, params.threshold, params.suppression_samples)
        return self._candidates[key]

    def big_row(self, end: int) -> np.ndarray:
        """Big's probabilities for the window ending at sample ``end``."""
        if end not in self.big_rows and self.big is not None:
            clip = self.stream.samples[max(0, end - self.big_window_samples) : end]
            self.big_rows[end] = self.big.predict_audio(clip).astype(np.float64)
        return self.big_rows[end]

    def verdict(self, end: int, little_label: str, min_score: float) -> Verdict:
        key = (end, little_label, min_score)
        if key not in self._verdicts:
            self._verdicts[key] = judge(little_label, self.big_labels, self.big_row(end), min_score)
        return self._verdicts[key]


def make_track(stream: SyntheticStream, little: KeywordModel, big: KeywordModel | None, hop_samples: int) -> Track:
    ends, probabilities = hop_probabilities(little, stream.samples, hop_samples)
    track = Track(stream, tuple(little.labels), ends, probabilities)
    if big is not None:
        track.big_labels = tuple(big.labels)
        if big.metadata.front_end is not None:
            # Its window costs 15-20 ms, a thousand times a features Big's streaming hop: asked only where a
            # detection needs it, with the window of Little's clip length that the listener sends (kws.listen).
            track.big, track.big_window_samples = big, little.feature_config.clip_samples
        else:
            big_ends, big_probabilities = hop_probabilities(big, stream.samples, hop_samples)
            track.big_rows = {int(end): row.astype(np.float64) for end, row in zip(big_ends, big_probabilities)}
    return track


@dataclass(frozen=True)
class Outcome:
    """What one parameter set gives on a set of tracks."""

    score: StreamScore
    little_detections: int
    big_requests: int

    @property
    def big_fraction(self) -> float:
        return self.big_requests / self.little_detections if self.little_detections else 0.0


def judge_tracks(tracks: Sequence[Track], params: ListenParams, with_big: bool) -> Outcome:
    """Score ``params`` on every track: Little alone, or with Big confirming the uncertain band."""
    total = StreamScore()
    little_count = requests = 0
    for track in tracks:
        detections = []
        candidates = track.candidates(params)
        little_count += len(candidates)
        for candidate in candidates:
            label = track.labels[candidate.index]
            asked = with_big and params.asks_big(candidate.score)
            trace = Trace(candidate, label, asked)
            if asked:
                trace.verdict = track.verdict(candidate.end, label, params.big_min_score)
                requests += 1
            reported = settle(trace)
            if reported is not None:
                detections.append((candidate.end, reported.label))
        total = total.plus(score(track.stream, detections))
    return Outcome(total, little_count, requests)
