"""Training augmentation: deterministic per seed, and each perturbation does what it says."""

from __future__ import annotations

import numpy as np
import pytest

from kws.training.augment import AugmentConfig, add_noise, augment_audio, change_gain, mask_features, shift_in_time

RATE = 16_000


@pytest.fixture
def tone() -> np.ndarray:
    """Two clips: a 440 Hz tone in the middle third of a second, silence around it."""
    clip = np.zeros(RATE, dtype=np.float32)
    t = np.arange(RATE // 3) / RATE
    clip[RATE // 3 : RATE // 3 + len(t)] = 0.5 * np.sin(2 * np.pi * 440 * t)
    return np.stack([clip, clip])


def test_same_seed_same_clips(tone: np.ndarray) -> None:
    config = AugmentConfig()
    first = augment_audio(tone, config, RATE, np.random.default_rng(3))
    again = augment_audio(tone, config, RATE, np.random.default_rng(3))
    other = augment_audio(tone, config, RATE, np.random.default_rng(4))
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)


def test_shift_moves_the_sound_and_fills_with_silence(tone: np.ndarray) -> None:
    shifted = shift_in_time(tone, 1600, np.random.default_rng(0))
    assert shifted.shape == tone.shape
    for original, moved in zip(tone, shifted):
        lag = np.argmax(np.abs(moved) > 0) - np.argmax(np.abs(original) > 0)
        assert 0 < abs(lag) <= 1600
        np.testing.assert_allclose(np.sum(moved**2), np.sum(original**2), rtol=1e-6)  # nothing cut off


def test_gain_stays_within_its_range(tone: np.ndarray) -> None:
    louder = change_gain(tone, 6.0, np.random.default_rng(1))
    ratio_db = 20 * np.log10(np.abs(louder).max(axis=1) / np.abs(tone).max(axis=1))
    assert np.all(np.abs(ratio_db) <= 6.0 + 1e-4)


def test_noise_has_the_asked_snr(tone: np.ndarray) -> None:
    noisy = add_noise(tone, 1.0, (20.0, 20.0), np.random.default_rng(2))
    noise = noisy - tone
    snr_db = 10 * np.log10(np.mean(tone**2, axis=1) / np.mean(noise**2, axis=1))
    np.testing.assert_allclose(snr_db, 20.0, atol=0.2)


def test_output_stays_in_range(tone: np.ndarray) -> None:
    loud = augment_audio(tone * 1.9, AugmentConfig(gain_db=12.0), RATE, np.random.default_rng(5))
    assert loud.dtype == np.float32 and np.abs(loud).max() <= 1.0


def test_masks_cover_bands_with_the_clip_mean() -> None:
    features = np.random.default_rng(6).normal(size=(4, 49, 40)).astype(np.float32)
    config = AugmentConfig(time_masks=1, time_mask_frames=10, frequency_masks=1, frequency_mask_bins=8)
    masked = mask_features(features, config, np.random.default_rng(7))
    changed = masked != features
    assert changed.any()
    for clip in range(len(features)):
        assert np.allclose(masked[clip][changed[clip]], features[clip].mean())
    assert mask_features(features, AugmentConfig(), np.random.default_rng(7)) is features  # masks off
