"""``melspectrogram.onnx`` in numpy alone: the log-mel frames the Raspberry Pi sends to Big.

The graph (a torchlibrosa export, read with the ``onnx`` package) is, for one clip ``x``:

1. frames of 512 samples every 160, starting at sample 0, none padded (a Conv1d, stride 160);
2. each frame times a periodic Hann window of 400 samples centred in the 512 (56 zeros each side),
   then its DFT (two Conv1d kernels, cos and -sin): power = real² + imag², 257 bins;
3. power @ librosa's Slaney mel filterbank (32 bands, 60-3 800 Hz, Slaney area normalisation);
4. ``10 * log10(max(mel, 1e-10))``;
5. every value clamped to at least (the maximum minus 80 dB). In the graph the maximum is over
   the *whole batch*, which is why the server runs it one clip per call; here it is one clip's.

This module computes the same with ``numpy.fft.rfft`` in float64 and the filterbank product in
float32; ``tests/frontend/test_mel.py`` holds it to the ONNX graph within :data:`PARITY_TOLERANCE_DB`
on real clips and edge cases, and checks the window and filterbank here against the graph's own
constants. No onnxruntime, onnx or TensorFlow: the Pi imports this and :mod:`kws.frontend.quantize`.
"""

from __future__ import annotations

import functools

import numpy as np

from kws.frontend.spec import (
    FFT_LENGTH,
    HOP_LENGTH,
    MEL_HIGH_HZ,
    MEL_LOW_HZ,
    NUM_MEL_BINS,
    POWER_FLOOR,
    SAMPLE_RATE,
    TOP_DB,
    WINDOW_LENGTH,
    FrontEndSpec,
    num_mel_frames,
)

#: The largest difference (dB) between :func:`log_mel` and the ONNX graph that the tests accept.
#: Measured on all 2 755 shared keyword clips: at most 6.7e-4 dB, in bands some 80 dB below the
#: clip's maximum, where the graph's float32 convolution loses relative precision (most values agree
#: to the bit). 2e-3 dB is three times that, for other BLAS and FFT builds, and
#: still 150 times below the int8 wire's step (0.31 dB, :mod:`kws.frontend.quantize`).
PARITY_TOLERANCE_DB = 2e-3

# Slaney's mel scale (librosa's default, htk=False): linear below 1 kHz, logarithmic above.
_LINEAR_HZ_PER_MEL = 200.0 / 3.0
_LOG_START_HZ = 1000.0
_LOG_START_MEL = _LOG_START_HZ / _LINEAR_HZ_PER_MEL
_LOG_STEP = np.log(6.4) / 27.0


def hertz_to_slaney_mel(hertz: np.ndarray) -> np.ndarray:
    """librosa's ``hz_to_mel(htk=False)``."""
    hertz = np.asarray(hertz, dtype=np.float64)
    linear = hertz / _LINEAR_HZ_PER_MEL
    logarithmic = _LOG_START_MEL + np.log(np.maximum(hertz, _LOG_START_HZ) / _LOG_START_HZ) / _LOG_STEP
    return np.where(hertz >= _LOG_START_HZ, logarithmic, linear)


def slaney_mel_to_hertz(mels: np.ndarray) -> np.ndarray:
    """librosa's ``mel_to_hz(htk=False)``."""
    mels = np.asarray(mels, dtype=np.float64)
    linear = mels * _LINEAR_HZ_PER_MEL
    logarithmic = _LOG_START_HZ * np.exp(_LOG_STEP * (np.maximum(mels, _LOG_START_MEL) - _LOG_START_MEL))
    return np.where(mels >= _LOG_START_MEL, logarithmic, linear)


@functools.lru_cache(maxsize=1)
def mel_filterbank() -> np.ndarray:
    """The graph's ``melW``, shape (257, 32) float32: ``librosa.filters.mel(sr=16000, n_fft=512,
    n_mels=32, fmin=60, fmax=3800)`` transposed, computed in float64 and stored in float32 as librosa does."""
    fft_hertz = np.linspace(0.0, SAMPLE_RATE / 2, 1 + FFT_LENGTH // 2)
    edges = slaney_mel_to_hertz(
        np.linspace(hertz_to_slaney_mel(MEL_LOW_HZ), hertz_to_slaney_mel(MEL_HIGH_HZ), NUM_MEL_BINS + 2)
    )
    widths = np.diff(edges)
    ramps = edges[:, np.newaxis] - fft_hertz[np.newaxis, :]
    lower = -ramps[:-2] / widths[:-1, np.newaxis]
    upper = ramps[2:] / widths[1:, np.newaxis]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, np.newaxis]
    matrix = weights.astype(np.float32).T.copy()
    matrix.setflags(write=False)
    return matrix


@functools.lru_cache(maxsize=1)
def stft_window() -> np.ndarray:
    """The graph's window, float64 (512,): periodic Hann of 400 samples with 56 zeros each side."""
    window = np.zeros(FFT_LENGTH)
    start = (FFT_LENGTH - WINDOW_LENGTH) // 2
    window[start : start + WINDOW_LENGTH] = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(WINDOW_LENGTH) / WINDOW_LENGTH)
    window.setflags(write=False)
    return window


def log_mel(signal: np.ndarray) -> np.ndarray:
    """One signal (float, 1-D, in the graph's input scale) to its log-mel frames, (frames, 32) float32 dB.

    Equal to ``melspectrogram.onnx`` run on this signal *alone* (batch of one) within
    :data:`PARITY_TOLERANCE_DB`.
    """
    signal = np.asarray(signal, dtype=np.float32)
    if signal.ndim != 1:
        raise ValueError(f"log_mel takes one 1-D signal (one clip per call), got shape {signal.shape}")
    count = num_mel_frames(signal.size)
    frames = np.lib.stride_tricks.sliding_window_view(signal, FFT_LENGTH)[::HOP_LENGTH][:count]
    spectrum = np.fft.rfft(frames * stft_window(), n=FFT_LENGTH)
    power = (spectrum.real**2 + spectrum.imag**2).astype(np.float32)
    mel = power @ mel_filterbank()
    decibels = 10.0 * np.log10(np.maximum(mel, np.float32(POWER_FLOOR)))
    return np.maximum(decibels, decibels.max() - np.float32(TOP_DB)).astype(np.float32)


def padded_signal(audio: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """An int16 clip as the mel graph reads it: fitted to ``clip_samples`` (zero-padded at the end, as
    :func:`kws.audio.fit_length` does for every clip), scaled by ``input_scale`` and centred in
    ``padded_samples`` of zeros. float32, (padded_samples,).

    Only int16 is taken: a float clip could be in [-1, 1] or in the int16 range, and guessing wrong
    shifts every feature by a constant (the two projects that use these graphs disagree on it).
    """
    audio = np.asarray(audio)
    if audio.dtype != np.int16 or audio.ndim != 1:
        raise ValueError(f"expected one int16 clip (1-D), got {audio.dtype} with shape {audio.shape}")
    clip = audio[: spec.clip_samples].astype(np.float32) * np.float32(spec.input_scale)
    signal = np.zeros(spec.padded_samples, dtype=np.float32)
    signal[spec.pad_before : spec.pad_before + clip.size] = clip
    return signal


def clip_log_mel(audio: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """One int16 clip to the log-mel frames the embedding step needs: (147, 32) float32 dB for 1 s in 1.5 s.

    This is what the Pi computes and sends (as int8, :mod:`kws.frontend.quantize`).
    """
    return log_mel(padded_signal(audio, spec))
