"""Audio features for keyword spotting, in numpy alone.

The Raspberry Pi has no TensorFlow, yet every model was trained on features
made by TensorFlow's ``tf.signal`` ops. This module re-implements that exact
pipeline (periodic-Hann STFT, magnitude, HTK mel filterbank, log, orthonormal
DCT-II MFCCs) so the Pi, the Big service, the MQTT clients and training all
compute the same numbers; ``tests/test_features_parity.py`` holds it to
TensorFlow within 1e-4.

A :class:`FeatureConfig` describes one feature set. It is stored in each model's
metadata (``models/<name>.json``) and read back by every client, so no feature
parameter is hard-coded anywhere else.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from kws.audio import SAMPLE_RATE, fit_length

#: Added before the logarithm, as the course pipeline did, so silence stays finite.
LOG_OFFSET = 1e-6
#: Per-clip normalisations of the log-mel spectrogram (``FeatureConfig.normalization``).
#: ``none``: as the course computed it. ``mean``: each mel bin's mean over the clip's
#: frames is subtracted (log-mel, equivalently cepstral, mean normalisation), which
#: removes what a microphone's frequency response and the speaker's distance do to
#: the clip: a fixed gain per band is a fixed offset per bin in the log domain.
NORMALIZATIONS = ("none", "mean")
#: The widest a FeatureConfig may be. A config also arrives in every features pack, from the
#: network: these bounds keep a hostile one from asking for a gigabyte filterbank or an FFT of
#: a 400-digit length, while leaving every sensible feature set (up to 10 s clips at 48 kHz) open.
MAX_SAMPLE_RATE = 192_000
MAX_CLIP_SECONDS = 10
MAX_FFT_LENGTH = 1 << 16
MAX_MEL_BINS = 512


@dataclass(frozen=True)
class FeatureConfig:
    """Everything that decides what features a clip turns into.

    ``sample_rate`` is the rate the features are computed at: a clip recorded at
    another rate (16 kHz for Speech Commands) is resampled to it first. With
    ``num_coefficients`` = 0 the features are plain log-mel spectrograms.

    The defaults are the Little model's features (16 MFCCs of 40 mel bins,
    20-7 600 Hz, 40 ms frames every 20 ms); every client still reads the config
    from the model's metadata, never from these defaults.
    """

    sample_rate: int = SAMPLE_RATE
    frame_length: int = 640
    frame_step: int = 320
    fft_length: int | None = None
    num_mel_bins: int = 40
    lower_frequency: float = 20.0
    upper_frequency: float = 7_600.0
    num_coefficients: int = 16
    clip_samples: int = SAMPLE_RATE
    """Samples per clip at ``sample_rate``, after padding or trimming."""
    normalization: str = "none"
    """Per-clip normalisation of the log-mel spectrogram, one of :data:`NORMALIZATIONS`;
    applied before the DCT. The default leaves every older model's features as they were."""

    def __post_init__(self) -> None:
        if not 1_000 <= self.sample_rate <= MAX_SAMPLE_RATE:
            raise ValueError(f"sample_rate must be between 1000 and {MAX_SAMPLE_RATE}")
        if not 0 < self.clip_samples <= MAX_CLIP_SECONDS * self.sample_rate:
            raise ValueError(f"clip_samples must be positive and at most {MAX_CLIP_SECONDS} s of audio")
        if self.frame_length <= 0 or self.frame_step <= 0:
            raise ValueError("frame_length and frame_step must be positive")
        if self.fft_length is not None and self.fft_length > MAX_FFT_LENGTH:
            raise ValueError(f"fft_length must be at most {MAX_FFT_LENGTH}")
        if not 0 < self.num_mel_bins <= MAX_MEL_BINS:
            raise ValueError(f"num_mel_bins must be between 1 and {MAX_MEL_BINS}")
        if self.fft_size < self.frame_length:
            raise ValueError("fft_length must be at least frame_length")
        if not 0 <= self.lower_frequency < self.upper_frequency <= self.sample_rate / 2:
            raise ValueError("need 0 <= lower_frequency < upper_frequency <= sample_rate / 2")
        if not 0 <= self.num_coefficients <= self.num_mel_bins:
            raise ValueError("num_coefficients must be between 0 and num_mel_bins")
        if self.clip_samples < self.frame_length:
            raise ValueError("clip_samples must hold at least one frame")
        if self.normalization not in NORMALIZATIONS:
            raise ValueError(f"normalization must be one of {NORMALIZATIONS}, got {self.normalization!r}")

    @property
    def fft_size(self) -> int:
        """FFT length; like ``tf.signal.stft``, the next power of two by default."""
        if self.fft_length is not None:
            return self.fft_length
        return 1 << (self.frame_length - 1).bit_length()

    @property
    def use_mfcc(self) -> bool:
        return self.num_coefficients > 0

    @property
    def num_frames(self) -> int:
        return 1 + (self.clip_samples - self.frame_length) // self.frame_step

    @property
    def num_features(self) -> int:
        return self.num_coefficients if self.use_mfcc else self.num_mel_bins

    @property
    def shape(self) -> tuple[int, int]:
        """Shape of one clip's features: (frames, coefficients or mel bins)."""
        return (self.num_frames, self.num_features)

    def to_dict(self) -> dict[str, Any]:
        """Every field, except ``normalization`` when it is the default: the metadata of models
        made before it existed, and the MQTT config they publish, stay byte for byte the same."""
        data = dataclasses.asdict(self)
        if data["normalization"] == "none":
            del data["normalization"]
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureConfig:
        """Build from metadata or a features pack; unknown keys are an error so typos cannot hide,
        and every value must be of its field's JSON type (``640.0`` is no frame length, ``true`` no
        count), so that what arrives from the network is as strict as what training wrote."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown FeatureConfig keys: {sorted(unknown)}")
        for name, value in data.items():
            kind = _FIELD_KINDS[name]
            if not _is_of_kind(value, kind):
                raise TypeError(f"{name} must be {kind}, got {value!r:.40}")
        return cls(**dict(data))


#: The JSON type of each FeatureConfig field, as ``from_dict`` checks it.
_FIELD_KINDS = {
    "sample_rate": "an integer", "frame_length": "an integer", "frame_step": "an integer",
    "fft_length": "an integer or null", "num_mel_bins": "an integer", "lower_frequency": "a number",
    "upper_frequency": "a number", "num_coefficients": "an integer", "clip_samples": "an integer",
    "normalization": "a string",
}


def _is_of_kind(value: Any, kind: str) -> bool:
    if kind == "an integer or null":
        return value is None or _is_of_kind(value, "an integer")
    if kind == "an integer":
        return type(value) is int  # not bool, not float
    if kind == "a number":
        return type(value) in (int, float) and math.isfinite(value)
    return isinstance(value, str)


@dataclass(frozen=True)
class InputStandardization:
    """Per-bin ``(features - mean) / std``, for models that cannot standardise in their graph.

    A full-integer (int8) model quantizes its input per tensor before any layer
    runs, so features whose bins span very different ranges (MFCC 0 against the
    rest) must arrive standardised. Training computes the statistics and stores
    them in the model's metadata; :mod:`kws.model.runtime` applies them with this class.
    """

    mean: np.ndarray
    std: np.ndarray

    def __post_init__(self) -> None:
        if self.mean.shape != self.std.shape or self.mean.ndim != 1 or not np.all(self.std > 0):
            raise ValueError("input_standardization needs equally long mean and positive std lists")

    def apply(self, features: np.ndarray) -> np.ndarray:
        return ((features - self.mean) / self.std).astype(np.float32)

    def to_dict(self) -> dict[str, list[float]]:
        return {"mean": [float(v) for v in self.mean], "std": [float(v) for v in self.std]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> InputStandardization:
        return cls(np.asarray(data["mean"], dtype=np.float32), np.asarray(data["std"], dtype=np.float32))


# --------------------------------------------------------------------------- #
# Building blocks, each equal to its tf.signal counterpart.
# --------------------------------------------------------------------------- #


@functools.lru_cache(maxsize=16)
def periodic_hann_window(length: int) -> np.ndarray:
    """``tf.signal.hann_window(length, periodic=True)``."""
    n = np.arange(length, dtype=np.float64)
    return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / length)).astype(np.float32)


def hertz_to_mel(frequencies_hertz: np.ndarray) -> np.ndarray:
    """HTK mel scale, the one ``tf.signal`` uses."""
    return 1127.0 * np.log1p(np.asarray(frequencies_hertz, dtype=np.float64) / 700.0)


@functools.lru_cache(maxsize=16)
def mel_weight_matrix(
    num_mel_bins: int,
    num_spectrogram_bins: int,
    sample_rate: int,
    lower_edge_hertz: float,
    upper_edge_hertz: float,
) -> np.ndarray:
    """``tf.signal.linear_to_mel_weight_matrix``: shape (spectrogram bins, mel bins).

    Like TensorFlow, the DC bin gets no weight and triangles are built in the
    mel domain from evenly spaced band edges.
    """
    nyquist = sample_rate / 2.0
    linear_frequencies = np.linspace(0.0, nyquist, num_spectrogram_bins)[1:]
    spectrogram_bins_mel = hertz_to_mel(linear_frequencies)[:, np.newaxis]
    edges = np.linspace(hertz_to_mel(lower_edge_hertz), hertz_to_mel(upper_edge_hertz), num_mel_bins + 2)
    lower_edge_mel = edges[:-2][np.newaxis, :]
    center_mel = edges[1:-1][np.newaxis, :]
    upper_edge_mel = edges[2:][np.newaxis, :]
    lower_slopes = (spectrogram_bins_mel - lower_edge_mel) / (center_mel - lower_edge_mel)
    upper_slopes = (upper_edge_mel - spectrogram_bins_mel) / (upper_edge_mel - center_mel)
    weights = np.maximum(0.0, np.minimum(lower_slopes, upper_slopes))
    weights = np.pad(weights, [[1, 0], [0, 0]])
    return weights.astype(np.float32)


@functools.lru_cache(maxsize=16)
def dct_matrix(num_mel_bins: int, num_coefficients: int) -> np.ndarray:
    """Orthonormal DCT-II as ``tf.signal.mfccs_from_log_mel_spectrograms`` scales it.

    TensorFlow computes an unnormalised DCT-II (``2 * sum x_n cos(...)``) and
    multiplies by ``rsqrt(2 * num_mel_bins)``; this matrix folds both in.
    Shape (mel bins, coefficients).
    """
    n = np.arange(num_mel_bins, dtype=np.float64)[:, np.newaxis]
    k = np.arange(num_coefficients, dtype=np.float64)[np.newaxis, :]
    basis = 2.0 * np.cos(np.pi * k * (2.0 * n + 1.0) / (2.0 * num_mel_bins))
    return (basis / math.sqrt(2.0 * num_mel_bins)).astype(np.float32)


def frame_signal(signal: np.ndarray, frame_length: int, frame_step: int) -> np.ndarray:
    """``tf.signal.frame`` without end padding: shape (..., frames, frame_length)."""
    # A strided view, not a gathered copy: the window multiplication after it makes the one copy.
    return np.lib.stride_tricks.sliding_window_view(signal, frame_length, axis=-1)[..., ::frame_step, :]


def stft_magnitude(signal: np.ndarray, frame_length: int, frame_step: int, fft_length: int) -> np.ndarray:
    """``abs(tf.signal.stft(signal, frame_length, frame_step, fft_length))``."""
    # In float64: numpy's float64 FFT is about 4x faster than its float32 one (numpy 2.x, no SIMD
    # float32 path) and no less accurate; the magnitudes go back to float32 as tf.signal gives them.
    frames = frame_signal(signal, frame_length, frame_step) * periodic_hann_window(frame_length).astype(np.float64)
    return np.abs(np.fft.rfft(frames, n=fft_length, axis=-1)).astype(np.float32)


# --------------------------------------------------------------------------- #
# Resampling (for configs whose sample_rate differs from the clip's).
# --------------------------------------------------------------------------- #


@functools.lru_cache(maxsize=8)
def _lowpass_filter(up: int, down: int, half_width: int = 10) -> np.ndarray:
    """Kaiser-windowed sinc low-pass for rational resampling by up/down."""
    max_rate = max(up, down)
    cutoff = 1.0 / max_rate
    taps = 2 * half_width * max_rate + 1
    t = np.arange(taps, dtype=np.float64) - (taps - 1) / 2.0
    kernel = cutoff * np.sinc(cutoff * t) * np.kaiser(taps, 5.0)
    return kernel * up / kernel.sum()


def resample(signal: np.ndarray, from_rate: int, to_rate: int) -> np.ndarray:
    """Polyphase-style rational resampling (zero-stuff, low-pass, decimate).

    Output length is ``ceil(len * to_rate / from_rate)``, as ``scipy.signal.resample_poly``
    gives, so a 1 s clip stays 1 s long.
    """
    if from_rate == to_rate:
        return signal
    gcd = math.gcd(from_rate, to_rate)
    up, down = to_rate // gcd, from_rate // gcd
    kernel = _lowpass_filter(up, down)
    stuffed = np.zeros(signal.shape[-1] * up, dtype=np.float64)
    stuffed[::up] = signal
    filtered = np.convolve(stuffed, kernel, mode="same")
    out_length = -(-signal.shape[-1] * up // down)
    return filtered[::down][:out_length].astype(np.float32)


# --------------------------------------------------------------------------- #
# The pipeline.
# --------------------------------------------------------------------------- #


def prepare_audio(audio: np.ndarray, input_rate: int, config: FeatureConfig) -> np.ndarray:
    """Float32 audio in [-1, 1] at the config's rate and length.

    Accepts int16 PCM or floats; resamples when ``input_rate`` differs.
    """
    samples = np.asarray(audio)
    if samples.dtype == np.int16:
        samples = samples.astype(np.float32) / 32768.0
    samples = samples.astype(np.float32, copy=False)
    if input_rate != config.sample_rate:
        samples = resample(samples, input_rate, config.sample_rate)
    return fit_length(samples, config.clip_samples)


def features_from_prepared(samples: np.ndarray, config: FeatureConfig) -> np.ndarray:
    """Log-mel or MFCC features of audio already at the config's rate and length.

    Works on one clip (samples,) or a batch (clips, samples).
    """
    magnitude = stft_magnitude(samples, config.frame_length, config.frame_step, config.fft_size)
    mel_weights = mel_weight_matrix(
        config.num_mel_bins,
        config.fft_size // 2 + 1,
        config.sample_rate,
        float(config.lower_frequency),
        float(config.upper_frequency),
    )
    log_mel = np.log(magnitude @ mel_weights + LOG_OFFSET)
    if config.normalization == "mean":
        log_mel = log_mel - log_mel.mean(axis=-2, keepdims=True)
    if not config.use_mfcc:
        return log_mel
    return log_mel @ dct_matrix(config.num_mel_bins, config.num_coefficients)


def compute_features(audio: np.ndarray, config: FeatureConfig, input_rate: int = SAMPLE_RATE) -> np.ndarray:
    """The whole pipeline: raw clip in, features of shape ``config.shape`` out."""
    return features_from_prepared(prepare_audio(audio, input_rate, config), config)
