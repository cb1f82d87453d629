"""The numpy feature pipeline equals TensorFlow's ``tf.signal`` pipeline within 1e-4.

Models are trained and judged on features the Pi computes without TensorFlow, so
any drift between :mod:`kws.features` and :mod:`kws.training.tf_reference` would be
an accuracy loss nobody sees in training. Checked on real clips for every
FeatureConfig a shipped model uses, plus configs that exercise other code paths,
and block by block so a failure points at the part that broke.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="TensorFlow is not installed (CI installs it)")

from conftest import MODELS_DIR

from kws import features as preprocessing
from kws.audio import SAMPLE_RATE, read_clip
from kws.data.clips import list_clips, sample_clips
from kws.features import FeatureConfig
from kws.model.runtime import ModelMetadata
from kws.training import tf_reference

tf_reference.limit_threads(1)

RTOL = 1e-4

#: Configs of our own, each reaching a path the shipped ones might not.
OWN_CONFIGS = {
    "mfcc-default": FeatureConfig(),
    "mfcc-4k-10": FeatureConfig(upper_frequency=4_000.0, num_coefficients=10),
    "log-mel-7k6": FeatureConfig(
        frame_length=480, frame_step=160, fft_length=512, upper_frequency=7_600.0, num_coefficients=0
    ),
    "mfcc-8khz-resampled": FeatureConfig(
        sample_rate=8_000, frame_length=256, frame_step=128, clip_samples=8_000, upper_frequency=4_000.0,
        num_coefficients=13,
    ),
    "log-mel-frame-400": FeatureConfig(frame_length=400, frame_step=160, num_mel_bins=32, num_coefficients=0),
    "mfcc-fft-1024": FeatureConfig(frame_length=400, frame_step=200, fft_length=1024, num_mel_bins=64,
                                   upper_frequency=8_000.0, num_coefficients=20),
    "mfcc-mean-normalized": FeatureConfig(normalization="mean"),
    "log-mel-mean-normalized": FeatureConfig(num_coefficients=0, normalization="mean"),
}


def shipped_configs() -> dict[str, FeatureConfig]:
    """Each distinct FeatureConfig of the shipped models, named after the models using it."""
    users: dict[FeatureConfig, list[str]] = {}
    for path in sorted(MODELS_DIR.glob("*.json")):
        config = ModelMetadata.read(path).feature_config
        if config is not None:  # a head on the pretrained front end: tests/frontend holds its mel to the graph
            users.setdefault(config, []).append(path.stem)
    return {"model-" + "+".join(names): config for config, names in users.items()}


ALL_CONFIGS = {**shipped_configs(), **OWN_CONFIGS}


def assert_close_to_reference(actual: np.ndarray, reference: np.ndarray) -> None:
    """Within 1e-4 relative, with an absolute floor of 1e-4 of the largest reference value.

    The floor is needed because values near zero carry round-off that is large
    *relative* to them yet irrelevant: log-mel values and MFCCs cross zero, and
    next to a zero the float32 round-off of the FFT (about 1e-7 of the frame's
    energy) dominates; TensorFlow builds the mel filterbank in float32, so weights
    near a triangle's foot differ by ~5e-6 from ours (built in float64). Scaling
    the floor to the data's own magnitude keeps the test as strict as "1e-4
    relative" means for every value that carries information.
    """
    assert actual.shape == reference.shape
    atol = RTOL * float(np.max(np.abs(reference)))
    np.testing.assert_allclose(actual, reference, rtol=RTOL, atol=atol)


@pytest.fixture(scope="module")
def clips_audio(data_dir: Path) -> np.ndarray:
    """One real clip of each label, plus one cut short and zero-padded as short recordings are."""
    clips = sample_clips(list_clips(data_dir), per_label=1)
    audio = np.stack([read_clip(clip.path) for clip in clips])
    padded = audio[0].copy()
    padded[6_000:] = 0
    return np.concatenate([audio, padded[np.newaxis]])


def prepare_all(clips_audio: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """The clips at the config's rate and length, stacked: the input both pipelines share."""
    return np.stack([preprocessing.prepare_audio(clip, SAMPLE_RATE, config) for clip in clips_audio])


@pytest.mark.parametrize("config", ALL_CONFIGS.values(), ids=ALL_CONFIGS.keys())
def test_features_match_tensorflow(config: FeatureConfig, clips_audio: np.ndarray) -> None:
    prepared = prepare_all(clips_audio, config)
    reference = tf_reference.features(prepared, config).numpy()
    assert reference.shape == (len(clips_audio), *config.shape)
    assert_close_to_reference(preprocessing.features_from_prepared(prepared, config), reference)


@pytest.mark.parametrize("config", ALL_CONFIGS.values(), ids=ALL_CONFIGS.keys())
def test_one_clip_alone_equals_its_row_of_a_batch(config: FeatureConfig, clips_audio: np.ndarray) -> None:
    """The Pi featurises one raw clip at a time, training a prepared batch: both must agree."""
    batch = preprocessing.features_from_prepared(prepare_all(clips_audio, config), config)
    single = preprocessing.compute_features(clips_audio[1], config)
    np.testing.assert_allclose(single, batch[1], rtol=1e-6, atol=1e-6 * float(np.abs(batch).max()))


@pytest.mark.parametrize("length", [256, 400, 480, 640, 1024])
def test_periodic_hann_window(length: int) -> None:
    window = preprocessing.periodic_hann_window(length)
    assert_close_to_reference(window, tf_reference.periodic_hann_window(length))
    assert window[0] == 0.0 and window[length // 2] == pytest.approx(1.0), "periodic, not symmetric"


@pytest.mark.parametrize("config", ALL_CONFIGS.values(), ids=ALL_CONFIGS.keys())
def test_mel_weight_matrix(config: FeatureConfig) -> None:
    ours = preprocessing.mel_weight_matrix(
        config.num_mel_bins, config.fft_size // 2 + 1, config.sample_rate,
        float(config.lower_frequency), float(config.upper_frequency),
    )
    reference = tf_reference.mel_weight_matrix(config).numpy()
    assert_close_to_reference(ours, reference)
    assert ours[0].max() == 0.0, "the DC bin must get no weight, as in TensorFlow"


@pytest.mark.parametrize(("num_mel_bins", "num_coefficients"), [(40, 10), (40, 40), (32, 13), (64, 20)])
def test_dct_matrix(num_mel_bins: int, num_coefficients: int) -> None:
    ours = preprocessing.dct_matrix(num_mel_bins, num_coefficients)
    reference = tf_reference.dct_matrix(num_mel_bins, num_coefficients)
    assert_close_to_reference(ours, reference)


@pytest.mark.parametrize("config", [OWN_CONFIGS["mfcc-default"], OWN_CONFIGS["log-mel-frame-400"]], ids=["640", "400"])
def test_stft_magnitude(config: FeatureConfig, clips_audio: np.ndarray) -> None:
    prepared = prepare_all(clips_audio, config)
    ours = preprocessing.stft_magnitude(prepared, config.frame_length, config.frame_step, config.fft_size)
    reference = tf_reference.stft_magnitude(prepared, config).numpy()
    assert_close_to_reference(ours, reference)


@pytest.mark.parametrize("num_coefficients", [16, 0], ids=["mfcc", "log-mel"])
def test_mean_normalization_removes_each_bins_mean_and_a_gain(num_coefficients: int, clips_audio: np.ndarray) -> None:
    """Normalised features have zero mean over time in every bin, and a 20 dB quieter clip (a
    fixed offset in the log domain) gives the same features, up to what the log floor changes."""
    config = FeatureConfig(num_coefficients=num_coefficients, normalization="mean")
    plain = FeatureConfig(num_coefficients=num_coefficients)
    prepared = prepare_all(clips_audio[:-1], config)
    features = preprocessing.features_from_prepared(prepared, config)
    np.testing.assert_allclose(features.mean(axis=1), 0.0, atol=1e-4 * float(np.abs(features).max()))
    quieter = preprocessing.features_from_prepared(prepared * 0.1, config)
    np.testing.assert_allclose(quieter, features, atol=0.05 * float(np.abs(features).max()))
    unnormalized = preprocessing.features_from_prepared(prepared, plain)
    np.testing.assert_allclose(features, unnormalized - unnormalized.mean(axis=1, keepdims=True), atol=1e-4)


def test_default_normalization_leaves_the_config_as_it_was() -> None:
    """Models made before the field existed keep their metadata and their MQTT config as they were."""
    assert "normalization" not in FeatureConfig().to_dict()
    assert FeatureConfig.from_dict(FeatureConfig().to_dict()) == FeatureConfig()
    normalized = FeatureConfig(normalization="mean")
    assert normalized.to_dict()["normalization"] == "mean"
    assert FeatureConfig.from_dict(normalized.to_dict()) == normalized
    with pytest.raises(ValueError, match="normalization"):
        FeatureConfig(normalization="cmvn")
