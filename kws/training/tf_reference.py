"""The feature pipeline written with TensorFlow's own ops: the reference numpy must match.

Models were designed around ``tf.signal`` features (the course pipeline); the
shipped code computes them in numpy (:mod:`kws.features`). This module is the
TensorFlow side of that comparison, used by ``tests/test_preprocessing_parity.py``
and ``bench/bench_preprocessing.py``. It imports TensorFlow, so nothing on the
runtime path (the Pi, the services, ``evaluate.py``) may import it.

Every function takes audio already prepared by :func:`preprocessing.prepare_audio`
(float32 at the config's rate and length): ``tf.signal`` has no resampler, so the
comparison is of everything after resampling.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from kws.features import LOG_OFFSET, FeatureConfig

log = logging.getLogger(__name__)


def limit_threads(threads: int) -> None:
    """Run TensorFlow's ops on ``threads`` threads (CI machines have two cores).

    Only possible before TensorFlow's first op; later calls keep whatever is set.
    """
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(threads)
    except RuntimeError:
        log.debug("TensorFlow already initialised; keeping its thread settings")


def periodic_hann_window(length: int) -> np.ndarray:
    return tf.signal.hann_window(length, periodic=True).numpy()


def mel_weight_matrix(config: FeatureConfig) -> tf.Tensor:
    """``tf.signal.linear_to_mel_weight_matrix`` for the config: (spectrogram bins, mel bins)."""
    return tf.signal.linear_to_mel_weight_matrix(
        num_mel_bins=config.num_mel_bins,
        num_spectrogram_bins=config.fft_size // 2 + 1,
        sample_rate=config.sample_rate,
        lower_edge_hertz=config.lower_frequency,
        upper_edge_hertz=config.upper_frequency,
    )


def dct_matrix(num_mel_bins: int, num_coefficients: int) -> np.ndarray:
    """The matrix ``mfccs_from_log_mel_spectrograms`` applies, read off by feeding it the identity.

    Row ``i`` is the MFCCs of a unit impulse in mel bin ``i``, so the result is
    (mel bins, coefficients), the layout of :func:`preprocessing.dct_matrix`.
    """
    identity = tf.eye(num_mel_bins, dtype=tf.float32)
    return tf.signal.mfccs_from_log_mel_spectrograms(identity)[..., :num_coefficients].numpy()


def stft_magnitude(samples: tf.Tensor, config: FeatureConfig) -> tf.Tensor:
    """``abs(stft)`` with the periodic Hann window and no end padding, as the course did."""
    stft = tf.signal.stft(
        samples,
        frame_length=config.frame_length,
        frame_step=config.frame_step,
        fft_length=config.fft_size,
        window_fn=functools.partial(tf.signal.hann_window, periodic=True),
    )
    return tf.abs(stft)


def features(samples: np.ndarray | tf.Tensor, config: FeatureConfig) -> tf.Tensor:
    """Log-mel or MFCC features of one prepared clip (samples,) or a batch (clips, samples)."""
    spectrogram = stft_magnitude(tf.convert_to_tensor(samples, dtype=tf.float32), config)
    mel_spectrogram = tf.tensordot(spectrogram, mel_weight_matrix(config), 1)
    log_mel = tf.math.log(mel_spectrogram + LOG_OFFSET)
    if config.normalization == "mean":
        log_mel = log_mel - tf.reduce_mean(log_mel, axis=-2, keepdims=True)
    if not config.use_mfcc:
        return log_mel
    return tf.signal.mfccs_from_log_mel_spectrograms(log_mel)[..., : config.num_coefficients]


def compiled_features(config: FeatureConfig) -> Callable[[tf.Tensor], tf.Tensor]:
    """:func:`features` as a traced graph (``tf.function``), as a ``tf.data`` pipeline runs it."""
    return tf.function(functools.partial(features, config=config))
