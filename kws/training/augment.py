"""Waveform and feature augmentation for training, in numpy.

We train on a few thousand clips, a fraction of what keyword-spotting models are
usually given, so each epoch sees every clip slightly changed: shifted in time,
sped up or slowed down, louder or quieter, with noise added, and (for the larger
models) with bands of frames or mel bins masked out (SpecAugment). Everything is
driven by one ``numpy.random.Generator`` so a seed reproduces a run exactly.

Recipes trained for real microphones in real rooms also get what a Pi hears: another
voice (pitch), a room's reverberation, recorded background noise, a microphone's
band limits, a DC offset and clipping. Those changes are made by libraries
(:mod:`kws.training.acoustics`); this module only draws their parameters.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kws.training import acoustics
from kws.training.non_keywords import NoiseBank

#: Seed of the rooms training reverberates in (the bench's rooms have another).
TRAINING_ROOMS_SEED = 1


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
    min_gain_db: float | None = None
    """Lower end of the gain range when it is not ``-gain_db`` (a talker far from the microphone)."""
    pitch_probability: float = 0.0
    pitch_semitones: float = 0.0
    """Shift the pitch by up to this many semitones either way (another voice, same tempo)."""
    room_probability: float = 0.0
    """Reverberate in a random simulated room (small, medium or large)."""
    background_probability: float = 0.0
    background_snr_db: tuple[float, float] = (0.0, 30.0)
    """Recorded background noise (the training part of the noise recordings) at this SNR."""
    band_limit_probability: float = 0.0
    highpass_hz: tuple[float, float] = (50.0, 450.0)
    lowpass_hz: tuple[float, float] = (3_000.0, 7_500.0)
    """A microphone's band: a high-pass and a low-pass cut-off drawn from these ranges."""
    dc_offset_probability: float = 0.0
    dc_offset_max: float = 0.1
    clipping_probability: float = 0.0
    clipping_percent_max: float = 20.0
    """Flatten up to this percentage of the loudest samples (an overdriven input)."""

    def to_dict(self) -> dict:
        """Every field, except the microphone-and-room ones left at their defaults (off): the
        metadata of models trained before they existed keep saying what it said."""
        defaults = AugmentConfig.__dataclass_fields__
        plain = {"time_shift_ms", "speed_range", "gain_db", "noise_probability", "noise_snr_db", "time_masks",
                 "time_mask_frames", "frequency_masks", "frequency_mask_bins"}
        return {
            key: value
            for key, value in self.__dict__.items()
            if key in plain or value != defaults[key].default
        }

    @property
    def changes_acoustics(self) -> bool:
        """Whether any of the microphone-and-room changes is on."""
        return any(
            probability > 0
            for probability in (
                self.pitch_probability,
                self.room_probability,
                self.background_probability,
                self.band_limit_probability,
                self.dc_offset_probability,
                self.clipping_probability,
            )
        )


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


def change_gain(
    audio: np.ndarray, gain_db: float, rng: np.random.Generator, min_gain_db: float | None = None
) -> np.ndarray:
    """Scale each clip by a random gain in [``min_gain_db`` (default ``-gain_db``), ``gain_db``] dB."""
    low = -gain_db if min_gain_db is None else min_gain_db
    if gain_db <= 0 and low >= 0:
        return audio
    gains = 10.0 ** (rng.uniform(low, gain_db, size=(len(audio), 1)) / 20.0)
    return audio * gains.astype(audio.dtype)


def change_acoustics(
    audio: np.ndarray, config: AugmentConfig, rng: np.random.Generator, noise: NoiseBank | None
) -> np.ndarray:
    """Voice, room, background and microphone, clip by clip, in the order sound meets them.

    The talker's voice (pitch), the room (reverberation), the noise in the room, then the
    microphone: its band limits, a DC offset, clipping. Every parameter is drawn from
    ``rng``. Background noise needs ``noise`` (the training part of the recordings).
    """
    if not config.changes_acoustics:
        return audio
    if config.background_probability > 0 and noise is None:
        raise ValueError("background noise augmentation needs the noise recordings (a NoiseBank)")
    rooms = acoustics.RoomBank.make(TRAINING_ROOMS_SEED) if config.room_probability > 0 else None
    out = np.empty_like(audio)
    for row, clip in enumerate(audio):
        if rng.random() < config.pitch_probability:
            clip = acoustics.pitch_shift(clip, float(rng.uniform(-config.pitch_semitones, config.pitch_semitones)))
        if rooms is not None and rng.random() < config.room_probability:
            clip = acoustics.reverberate(clip, rooms.pick(rng))
        if noise is not None and rng.random() < config.background_probability:
            clip = noise.mix(clip, float(rng.uniform(*config.background_snr_db)), rng)
        if rng.random() < config.band_limit_probability:
            low = float(rng.uniform(*config.highpass_hz)) if rng.random() < 0.8 else None
            high = float(rng.uniform(*config.lowpass_hz)) if rng.random() < 0.6 else None
            clip = acoustics.band_limit(clip, low, high)
        if rng.random() < config.dc_offset_probability:
            clip = clip + np.float32(rng.uniform(-config.dc_offset_max, config.dc_offset_max))
        if rng.random() < config.clipping_probability:
            clip = acoustics.clip_distortion(clip, float(rng.uniform(1.0, config.clipping_percent_max)))
        out[row] = clip
    return out


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


def augment_audio(
    audio: np.ndarray,
    config: AugmentConfig,
    sample_rate: int,
    rng: np.random.Generator,
    noise: NoiseBank | None = None,
) -> np.ndarray:
    """A perturbed copy of a batch of float32 clips in [-1, 1], shape (clips, samples).

    The microphone-and-room changes (:func:`change_acoustics`) come between speed and
    gain; with them off the result is exactly what it was before they existed.
    """
    out = shift_in_time(audio, int(config.time_shift_ms * sample_rate / 1000), rng)
    out = change_speed(out, config.speed_range, rng)
    out = change_acoustics(out, config, rng, noise)
    out = change_gain(out, config.gain_db, rng, config.min_gain_db)
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
