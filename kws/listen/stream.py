"""Features of a stream, one hop at a time: only the new frames are computed.

A window is the model's clip (1 s) ending at the latest hop. Consecutive windows share
all but ``hop / frame_step`` of their STFT frames, so each hop frames, transforms and
filters only the samples that complete new frames, and the window's features are the
last ``num_frames`` rows kept so far. For a hop that is a whole number of frame steps,
the window equals :func:`kws.features.compute_features` of the same second of audio
(``tests/listen/test_stream.py`` holds them equal), because the frames are the same
frames: every window starts on the frame grid.
"""

from __future__ import annotations

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.errors import KwsError
from kws.features import FeatureConfig, features_from_prepared
from kws.model.runtime import KeywordModel


class StreamError(KwsError, ValueError):
    """A model or hop the stream cannot work with (the message names which and why)."""


def check_streamable(config: FeatureConfig, hop_samples: int) -> None:
    """Windows must start on the model's frame grid, so that their frames can be shared."""
    step_ms = 1000 * config.frame_step / config.sample_rate
    if config.sample_rate != SAMPLE_RATE:
        raise StreamError(
            f"the model's features are at {config.sample_rate} Hz; streams are {SAMPLE_RATE} Hz and are not resampled"
        )
    if hop_samples <= 0 or hop_samples % config.frame_step:
        raise StreamError(
            f"the hop ({1000 * hop_samples / SAMPLE_RATE:g} ms) must be a positive multiple of the model's "
            f"frame step ({step_ms:g} ms)"
        )
    if config.clip_samples % config.frame_step:
        raise StreamError(f"the model's clip ({config.clip_samples} samples) is not a whole number of frame steps")


class StreamingFeatures:
    """The latest window's features, kept up to date with the new frames of each block of samples."""

    def __init__(self, config: FeatureConfig) -> None:
        self.config = config
        self._pending = np.zeros(0, dtype=np.float32)
        """Samples from the start of the next frame not computed yet."""
        self._window = np.zeros(config.shape, dtype=np.float32)
        self.frames = 0

    @property
    def ready(self) -> bool:
        """Whether a whole window has been heard."""
        return self.frames >= self.config.num_frames

    @property
    def window(self) -> np.ndarray:
        """The features of the latest window, shape ``config.shape`` (valid once :attr:`ready`)."""
        return self._window

    def push(self, samples: np.ndarray) -> int:
        """Add int16 samples; returns how many new frames they completed."""
        scaled = np.asarray(samples).astype(np.float32) / 32768.0  # as kws.features.prepare_audio scales int16
        audio = np.concatenate([self._pending, scaled]) if self._pending.size else scaled
        config = self.config
        if audio.size < config.frame_length:
            self._pending = audio
            return 0
        new = features_from_prepared(audio, config)
        count = new.shape[0]
        self._pending = audio[count * config.frame_step :]
        rows = config.num_frames
        if count >= rows:
            self._window[:] = new[-rows:]
        else:
            self._window[:-count] = self._window[count:]
            self._window[-count:] = new
        self.frames += count
        return count


class AudioRing:
    """The last ``length`` samples, for the window Big is asked about."""

    def __init__(self, length: int) -> None:
        self._buffer = np.zeros(length, dtype=np.int16)

    def push(self, samples: np.ndarray) -> None:
        count = min(samples.size, self._buffer.size)
        if count < self._buffer.size:
            self._buffer[:-count] = self._buffer[count:]
        self._buffer[-count:] = samples[-count:]

    def copy(self) -> np.ndarray:
        return self._buffer.copy()


def window_probabilities(model: KeywordModel, features: np.ndarray) -> np.ndarray:
    """Class probabilities of one window."""
    return model.predict_features(features)


class WindowClassifier:
    """A stream's windows through the model: samples in, the latest window's probabilities out."""

    def __init__(self, model: KeywordModel) -> None:
        self.model = model
        self.features = StreamingFeatures(model.feature_config)

    def push(self, samples: np.ndarray) -> np.ndarray | None:
        """Probabilities of the window ending with these samples; None until a whole window has been heard."""
        self.features.push(samples)
        return window_probabilities(self.model, self.features.window) if self.features.ready else None


def hop_probabilities(model: KeywordModel, samples: np.ndarray, hop_samples: int) -> tuple[np.ndarray, np.ndarray]:
    """Little's probabilities for every window of a recording, the way a listener computes them.

    Returns (window end in samples, probabilities): one row per hop from the first
    whole window on. Calibration and the benchmark replay detections from these.
    """
    check_streamable(model.feature_config, hop_samples)
    classifier = WindowClassifier(model)
    ends, rows = [], []
    for end in range(hop_samples, samples.size + 1, hop_samples):
        probabilities = classifier.push(samples[end - hop_samples : end])
        if probabilities is not None:
            ends.append(end)
            rows.append(probabilities)
    return np.asarray(ends, dtype=np.int64), np.asarray(rows, dtype=np.float32).reshape(len(rows), len(model.labels))
