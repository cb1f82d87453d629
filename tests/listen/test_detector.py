"""Smoothing, threshold and quiet time; filler labels are never detected; the replay is the live detector."""

from __future__ import annotations

import numpy as np
import pytest

from kws.audio import SAMPLE_RATE
from kws.listen.detector import Detector, Smoother, Trigger, is_keyword, keyword_indices, replay, smoothed_track
from kws.listen.listener import Listener
from kws.listen.params import ListenParams
from kws.listen.source import ArraySource
from kws.listen.stream import hop_probabilities

LABELS = ("_silence_", "_unknown_", "yes", "no")
HOP = 1600


def one_hot(index: int, value: float = 1.0) -> np.ndarray:
    row = np.full(len(LABELS), (1.0 - value) / (len(LABELS) - 1), dtype=np.float32)
    row[index] = value
    return row


def test_filler_labels_are_not_keywords() -> None:
    assert [is_keyword(label) for label in LABELS] == [False, False, True, True]
    assert keyword_indices(LABELS).tolist() == [2, 3]
    assert is_keyword("_") and is_keyword("up_")
    with pytest.raises(ValueError, match="no keyword"):
        keyword_indices(("_silence_", "_unknown_"))


def test_silence_or_unknown_winning_is_never_a_detection() -> None:
    detector = Detector(LABELS, windows=1, threshold=0.3, suppression=SAMPLE_RATE)
    assert detector.step(HOP, one_hot(0, 0.99)) is None  # _silence_ at 0.99: each keyword gets 0.0033
    assert detector.step(2 * HOP, one_hot(1, 0.99)) is None
    assert detector.step(3 * HOP, np.array([0.4, 0.1, 0.35, 0.15], dtype=np.float32)) is None  # likelier silence
    found = detector.step(4 * HOP, np.array([0.3, 0.1, 0.45, 0.15], dtype=np.float32))
    assert found is not None and LABELS[found.index] == "yes" and found.score == pytest.approx(0.45)


def test_the_smoother_waits_for_its_windows_and_averages_them() -> None:
    smoother = Smoother(3)
    assert smoother.push(one_hot(2)) is None and smoother.push(one_hot(3)) is None
    np.testing.assert_allclose(smoother.push(one_hot(2)), (2 * one_hot(2) + one_hot(3)) / 3, rtol=1e-6)
    np.testing.assert_allclose(smoother.push(one_hot(0)), (one_hot(3) + one_hot(2) + one_hot(0)) / 3, rtol=1e-6)


def test_nothing_is_detected_during_the_quiet_time_and_exactly_after_it() -> None:
    trigger = Trigger(keyword_indices(LABELS), threshold=0.9, suppression=SAMPLE_RATE)
    sure = one_hot(2, 0.95)
    fired = [end for end in range(HOP, 31 * HOP, HOP) if trigger.update(end, sure) is not None]
    assert fired == [HOP, HOP + SAMPLE_RATE, HOP + 2 * SAMPLE_RATE]  # 0.1 s, 1.1 s, 2.1 s: 1 s apart exactly
    assert Trigger(keyword_indices(LABELS), 0.96, SAMPLE_RATE).update(HOP, sure) is None


def test_replay_makes_the_live_detections(sure_stream, little_model) -> None:
    """Calibration and the DET curve replay stored posteriors: they must be what a live run detects."""
    params = ListenParams(smoothing_windows=2, threshold=0.6, suppression_s=0.7)
    stats = Listener(little_model, params).run(ArraySource(sure_stream.samples))
    ends, probabilities = hop_probabilities(little_model, sure_stream.samples, params.hop_samples)
    track_ends, smoothed = smoothed_track(ends, probabilities, params.smoothing_windows)
    replayed = replay(track_ends, smoothed, little_model.labels, params.threshold, params.suppression_samples)
    live = [(trace.candidate.end, trace.candidate.index) for trace in stats.traces]
    assert live and [(candidate.end, candidate.index) for candidate in replayed] == live
    assert [c.score for c in replayed] == pytest.approx([trace.candidate.score for trace in stats.traces], abs=1e-6)
