"""Waveform and feature augmentation for training, in numpy.

We train on a few thousand clips, a fraction of what keyword-spotting models are
usually given, so each epoch sees every clip slightly changed: shifted in time,
sped up or slowed down, louder or quieter, with noise added, and (for the larger
models) with bands of frames or mel bins masked out (SpecAugment). Everything is
driven by one ``numpy.random.Generator`` so a seed reproduces a run exactly.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """How strongly to perturb each training clip; zero turns a perturbation off."""

    time_shift_ms: float = 100.0
    """Shift the clip by up to this much either way, filling with silence."""
    speed_range: float = 0.1
    """Resample by a factor in [1 - r, 1 + r] (tempo and pitch together)."""
    gain_db: float = 6.0
    """Scale by up to this many dB either way."""
    noise_probability: float = 0.8
    noise_snr_db: tuple[float, float] = (10.0, 40.0)
    """White noise at a signal-to-noise ratio drawn from this range."""
    time_masks: int = 0
    time_mask_frames: int = 0
    frequency_masks: int = 0
    frequency_mask_bins: int = 0

    def to_dict(self) -> dict:
        return {key: value for key, value in self.__dict__.items()}


def shift_in_time(audio: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Shift each clip (rows of ``audio``) by a random number of samples, zero-filled."""
    if max_shift <= 0:
        return audio
    out = np.zeros_like(audio)
    length = audio.shape[1]
    for row, shift in enumerate(rng.integers(-max_shift, max_shift + 1, size=len(audio))):
        if shift >= 0:
            out[row, shift:] = audio[row, : length - shift]
        else:
            out[row, :shift] = audio[row, -shift:]
    return out


def change_speed(audio: np.ndarray, speed_range: float, rng: np.random.Generator) -> np.ndarray:
    """Linear-interpolation resampling by a random factor per clip, kept at the same length."""
    if speed_range <= 0:
        return audio
    length = audio.shape[1]
    positions = np.arange(length, dtype=np.float64)
    out = np.empty_like(audio)
    for row, factor in enumerate(rng.uniform(1 - speed_range, 1 + speed_range, size=len(audio))):
        source = positions * factor
        out[row] = np.interp(source, positions, audio[row], right=0.0)
    return out


def change_gain(audio: np.ndarray, gain_db: float, rng: np.random.Generator) -> np.ndarray:
    if gain_db <= 0:
        return audio
    gains = 10.0 ** (rng.uniform(-gain_db, gain_db, size=(len(audio), 1)) / 20.0)
    return audio * gains.astype(audio.dtype)


def add_noise(
    audio: np.ndarray, probability: float, snr_db: tuple[float, float], rng: np.random.Generator
) -> np.ndarray:
    """White noise scaled to a random SNR relative to each clip's own power."""
    if probability <= 0:
        return audio
    power = np.mean(audio**2, axis=1, keepdims=True) + 1e-10
    snr = rng.uniform(*snr_db, size=(len(audio), 1))
    scale = np.sqrt(power / 10.0 ** (snr / 10.0))
    noisy = rng.random((len(audio), 1)) < probability
    noise = rng.standard_normal(audio.shape).astype(audio.dtype) * scale.astype(audio.dtype)
    return audio + noise * noisy


def augment_audio(audio: np.ndarray, config: AugmentConfig, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """A perturbed copy of a batch of float32 clips in [-1, 1], shape (clips, samples)."""
    out = shift_in_time(audio, int(config.time_shift_ms * sample_rate / 1000), rng)
    out = change_speed(out, config.speed_range, rng)
    out = change_gain(out, config.gain_db, rng)
    out = add_noise(out, config.noise_probability, config.noise_snr_db, rng)
    return np.clip(out, -1.0, 1.0).astype(np.float32)


def mask_features(features: np.ndarray, config: AugmentConfig, rng: np.random.Generator) -> np.ndarray:
    """SpecAugment-style masks: bands of frames and of feature bins set to each clip's mean."""
    if not (config.time_masks or config.frequency_masks):
        return features
    out = features.copy()
    clips, frames, bins = out.shape
    means = out.mean(axis=(1, 2))
    for clip in range(clips):
        for _ in range(config.time_masks):
            width = rng.integers(0, config.time_mask_frames + 1)
            start = rng.integers(0, max(1, frames - width))
            out[clip, start : start + width, :] = means[clip]
        for _ in range(config.frequency_masks):
            width = rng.integers(0, config.frequency_mask_bins + 1)
            start = rng.integers(0, max(1, bins - width))
            out[clip, :, start : start + width] = means[clip]
    return out
