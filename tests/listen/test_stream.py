"""Incremental features: each hop computes only its new frames, and the window equals the whole-clip features."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from kws.audio import SAMPLE_RATE
from kws.features import FeatureConfig, compute_features
from kws.listen.stream import AudioRing, StreamError, StreamingFeatures, WindowClassifier, check_streamable
from kws.model.runtime import load_model

HOP = 1600


@pytest.fixture(scope="module")
def models(little_model, shipped_model):
    return {"little": little_model, "big": load_model(shipped_model("big"))}


@pytest.mark.parametrize("name", ["little", "big"])
def test_every_window_equals_the_whole_clip_features_of_its_second(sure_stream, models, name) -> None:
    config = models[name].feature_config
    samples = sure_stream.samples[: 12 * SAMPLE_RATE]
    features = StreamingFeatures(config)
    checked = 0
    for end in range(HOP, samples.size + 1, HOP):
        features.push(samples[end - HOP : end])
        assert features.frames == 1 + (end - config.frame_length) // config.frame_step  # only whole frames, once
        assert features.ready == (end >= config.clip_samples)
        if features.ready:
            whole = compute_features(samples[end - config.clip_samples : end], config)
            scale = float(np.abs(whole).max())
            np.testing.assert_allclose(features.window, whole, rtol=0, atol=1e-5 * scale)
            checked += 1
    assert checked == samples.size // HOP - config.clip_samples // HOP + 1


def test_blocks_of_any_size_give_the_same_frames(sure_stream, little_model) -> None:
    """A microphone delivers blocks of its own size: the frames depend on the samples, not on how they came."""
    config = little_model.feature_config
    samples = sure_stream.samples[: 3 * SAMPLE_RATE]
    by_hop, by_odd_blocks = StreamingFeatures(config), StreamingFeatures(config)
    for end in range(HOP, samples.size + 1, HOP):
        by_hop.push(samples[end - HOP : end])
    rng = np.random.default_rng(1)
    position = 0
    while position < samples.size:
        size = int(rng.integers(1, 2500))
        by_odd_blocks.push(samples[position : position + size])
        position += size
    assert by_odd_blocks.frames == by_hop.frames == 1 + (samples.size - config.frame_length) // config.frame_step
    np.testing.assert_allclose(by_odd_blocks.window, by_hop.window, rtol=0, atol=1e-4)


def test_window_probabilities_are_the_clip_predictions(sure_stream, little_model) -> None:
    classifier = WindowClassifier(little_model)
    samples = sure_stream.samples[: 6 * SAMPLE_RATE]
    for end in range(HOP, samples.size + 1, HOP):
        probabilities = classifier.push(samples[end - HOP : end])
        if end < SAMPLE_RATE:
            assert probabilities is None
            continue
        expected = little_model.predict_audio(samples[end - SAMPLE_RATE : end])
        np.testing.assert_allclose(probabilities, expected, atol=1e-3)
        assert int(np.argmax(probabilities)) == int(np.argmax(expected))


def test_the_ring_holds_the_last_second() -> None:
    ring = AudioRing(SAMPLE_RATE)
    samples = np.arange(3 * SAMPLE_RATE, dtype=np.int64).astype(np.int16)
    for end in range(HOP, samples.size + 1, HOP):
        ring.push(samples[end - HOP : end])
    np.testing.assert_array_equal(ring.copy(), samples[-SAMPLE_RATE:])


@pytest.mark.parametrize(
    ("config", "hop", "message"),
    [
        (FeatureConfig(), 1000, "multiple of the model's frame step"),
        (FeatureConfig(), 0, "positive multiple"),
        (FeatureConfig(sample_rate=8000, frame_length=320, frame_step=160, upper_frequency=3800, clip_samples=8000),
         1600, "8000 Hz"),
        (dataclasses.replace(FeatureConfig(), clip_samples=16_100), 1600, "not a whole number of frame steps"),
    ],
)
def test_what_cannot_be_streamed_is_named(config: FeatureConfig, hop: int, message: str) -> None:
    with pytest.raises(StreamError, match=message):
        check_streamable(config, hop)
