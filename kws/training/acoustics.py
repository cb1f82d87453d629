"""What a real microphone in a real room does to a clip, each change with fixed parameters.

Training draws the parameters at random (:mod:`kws.training.augment`); the robustness
bench (``bench/bench_robustness.py``) applies fixed ones to the test clips. Both go
through these functions, which hand the signal processing to well-kept libraries:
``audiomentations`` for filters, pitch and clipping, ``pyroomacoustics`` for rooms
(image-source room impulse responses), ``scipy`` for convolution and resampling.
Training-only dependencies (``requirements/training.txt``): nothing here runs on the Pi.

Every function takes and returns one float32 clip in [-1, 1] at 16 kHz, same length.
audiomentations draws its parameters from Python's global ``random``; each transform
here is built with its range collapsed to one value, so the result depends only on
the arguments, never on that global state.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from kws.audio import SAMPLE_RATE, fit_length

#: Room sizes (length, width and height ranges in metres) and reverberation times (RT60, s).
ROOM_SIZES = {
    "small": {"dims": ((2.5, 4.0), (2.5, 4.0), (2.4, 2.8)), "rt60": (0.2, 0.4)},
    "medium": {"dims": ((4.0, 7.0), (4.0, 6.0), (2.6, 3.2)), "rt60": (0.3, 0.6)},
    "large": {"dims": ((8.0, 15.0), (6.0, 12.0), (3.0, 5.0)), "rt60": (0.5, 1.0)},
}
#: Butterworth roll-off of the microphone band limits, dB per octave (a 4th-order filter).
ROLLOFF_DB_PER_OCTAVE = 24


def band_limit(clip: np.ndarray, low_hz: float | None, high_hz: float | None) -> np.ndarray:
    """A microphone that hears only ``low_hz``..``high_hz`` (either side may be open: None)."""
    from audiomentations import HighPassFilter, LowPassFilter

    out = clip.astype(np.float32)
    if low_hz:
        out = HighPassFilter(
            min_cutoff_freq=low_hz, max_cutoff_freq=low_hz,
            min_rolloff=ROLLOFF_DB_PER_OCTAVE, max_rolloff=ROLLOFF_DB_PER_OCTAVE, p=1.0,
        )(out, SAMPLE_RATE)
    if high_hz:
        out = LowPassFilter(
            min_cutoff_freq=high_hz, max_cutoff_freq=high_hz,
            min_rolloff=ROLLOFF_DB_PER_OCTAVE, max_rolloff=ROLLOFF_DB_PER_OCTAVE, p=1.0,
        )(out, SAMPLE_RATE)
    return out.astype(np.float32)


def pitch_shift(clip: np.ndarray, semitones: float) -> np.ndarray:
    """Another voice: the pitch moved by ``semitones`` at the same tempo."""
    from audiomentations import PitchShift

    if semitones == 0:
        return clip
    return PitchShift(min_semitones=semitones, max_semitones=semitones, p=1.0)(clip.astype(np.float32), SAMPLE_RATE)


def clip_distortion(clip: np.ndarray, percent: float) -> np.ndarray:
    """An input stage driven too hard: the loudest ``percent`` % of the samples flattened."""
    from audiomentations import ClippingDistortion

    if percent <= 0:
        return clip
    transform = ClippingDistortion(
        min_percentile_threshold=int(percent), max_percentile_threshold=int(percent), p=1.0
    )
    return transform(clip.astype(np.float32), SAMPLE_RATE)


def change_speed_exactly(clip: np.ndarray, factor: float) -> np.ndarray:
    """Faster (factor > 1) or slower speech, tempo and pitch together, by polyphase resampling."""
    from scipy.signal import resample_poly

    if factor == 1:
        return clip
    ratio = Fraction(1 / factor).limit_denominator(100)
    return fit_length(resample_poly(clip, ratio.numerator, ratio.denominator).astype(np.float32), len(clip))


def reverberate(clip: np.ndarray, impulse_response: np.ndarray) -> np.ndarray:
    """The clip as heard through a room (convolved with its impulse response), kept in time."""
    from scipy.signal import fftconvolve

    return fftconvolve(clip, impulse_response)[: len(clip)].astype(np.float32)


def room_impulse_response(size: str, rng: np.random.Generator) -> np.ndarray:
    """The impulse response from a talker to a microphone in a random shoebox room of ``size``.

    Image-source method (pyroomacoustics) with wall absorption set by Sabine's formula
    for a random RT60 of that size of room. The response is cut to start at its direct
    path and scaled so the direct sound has unit gain: the word stays where it was in
    the clip and as loud, with the room's reflections added.
    """
    import pyroomacoustics as pra

    spec = ROOM_SIZES[size]
    while True:  # a few combinations of size and RT60 have no physical absorption: draw again
        dims = [float(rng.uniform(*bounds)) for bounds in spec["dims"]]
        rt60 = float(rng.uniform(*spec["rt60"]))
        try:
            absorption, max_order = pra.inverse_sabine(rt60, dims)
        except ValueError:
            continue
        break
    room = pra.ShoeBox(dims, fs=SAMPLE_RATE, materials=pra.Material(absorption), max_order=min(max_order, 60))
    source = [float(rng.uniform(0.5, d - 0.5)) for d in dims[:2]] + [float(rng.uniform(1.2, 1.8))]
    microphone = [float(rng.uniform(0.5, d - 0.5)) for d in dims[:2]] + [float(rng.uniform(0.7, 1.5))]
    room.add_source(source)
    room.add_microphone(microphone)
    room.compute_rir()
    response = np.asarray(room.rir[0][0], dtype=np.float64)
    direct = int(np.argmax(np.abs(response)))
    response = response[max(0, direct - 8) :]
    return (response / np.abs(response).max()).astype(np.float32)


@dataclass(frozen=True)
class RoomBank:
    """Impulse responses of ``count`` random rooms of each size, made once per seed."""

    responses: dict[str, tuple[np.ndarray, ...]]

    @classmethod
    @functools.lru_cache(maxsize=4)
    def make(cls, seed: int, count: int = 24) -> RoomBank:
        rng = np.random.default_rng(seed)
        return cls({size: tuple(room_impulse_response(size, rng) for _ in range(count)) for size in ROOM_SIZES})

    def pick(self, rng: np.random.Generator, size: str | None = None) -> np.ndarray:
        """A random room's response, of ``size`` or of any size."""
        size = size or list(self.responses)[rng.integers(len(self.responses))]
        rooms = self.responses[size]
        return rooms[rng.integers(len(rooms))]
