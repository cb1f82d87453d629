"""The everyday changes a Pi's clips go through, by name, with fixed parameters.

``bench/bench_robustness.py`` measures every model on the test split under each of
them, and calibrates the cascade on validation clips under the same ones. Each is
deterministic for a given clip and seed: a change that needs randomness (which piece
of noise, which room) draws it from a generator seeded by the change's name and the
clip's position, so every model hears exactly the same changed clip. The rooms and
the noise are never those training used: other rooms (:data:`BENCH_ROOMS_SEED`) and
the validation or test part of the noise recordings.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.training import acoustics
from kws.training.non_keywords import NoiseBank

#: Seed of the bench's rooms; training's are :data:`kws.training.augment.TRAINING_ROOMS_SEED`.
BENCH_ROOMS_SEED = 2


@dataclass(frozen=True)
class Change:
    """One named change: ``apply(clip, rng, context)`` -> changed float32 clip."""

    name: str
    group: str
    apply: Callable[[np.ndarray, np.random.Generator, ChangeContext], np.ndarray]


@dataclass(frozen=True)
class ChangeContext:
    """What some changes need: the split's part of the noise recordings and the bench's rooms."""

    noise: NoiseBank | None
    rooms: acoustics.RoomBank | None

    @classmethod
    def for_split(cls, noise_dir: Path | None, split: str) -> ChangeContext:
        noise = NoiseBank.load(noise_dir, split) if noise_dir is not None else None
        return cls(noise, acoustics.RoomBank.make(BENCH_ROOMS_SEED, count=12))


def _noise(snr_db: float) -> Callable:
    def apply(clip: np.ndarray, rng: np.random.Generator, context: ChangeContext) -> np.ndarray:
        if context.noise is None:
            raise ValueError("background noise needs the noise recordings (--other-dir)")
        return context.noise.mix(clip, snr_db, rng)

    return apply


def _room(size: str) -> Callable:
    return lambda clip, rng, context: acoustics.reverberate(clip, context.rooms.pick(rng, size))


CHANGES: tuple[Change, ...] = (
    Change("none", "none", lambda clip, rng, context: clip),
    Change("speed 0.9", "voice", lambda clip, rng, context: acoustics.change_speed_exactly(clip, 0.9)),
    Change("speed 1.1", "voice", lambda clip, rng, context: acoustics.change_speed_exactly(clip, 1.1)),
    Change("pitch -2 st", "voice", lambda clip, rng, context: acoustics.pitch_shift(clip, -2.0)),
    Change("pitch +2 st", "voice", lambda clip, rng, context: acoustics.pitch_shift(clip, 2.0)),
    Change("room small", "room", _room("small")),
    Change("room medium", "room", _room("medium")),
    Change("room large", "room", _room("large")),
    Change("band 300-3400 Hz", "microphone", lambda clip, rng, context: acoustics.band_limit(clip, 300.0, 3400.0)),
    Change("high-pass 200 Hz", "microphone", lambda clip, rng, context: acoustics.band_limit(clip, 200.0, None)),
    Change("high-pass 400 Hz", "microphone", lambda clip, rng, context: acoustics.band_limit(clip, 400.0, None)),
    Change("low-pass 4000 Hz", "microphone", lambda clip, rng, context: acoustics.band_limit(clip, None, 4000.0)),
    Change("band 100-7000 Hz", "microphone", lambda clip, rng, context: acoustics.band_limit(clip, 100.0, 7000.0)),
    Change("noise 20 dB", "noise", _noise(20.0)),
    Change("noise 10 dB", "noise", _noise(10.0)),
    Change("noise 0 dB", "noise", _noise(0.0)),
    Change("quieter 20 dB", "level", lambda clip, rng, context: clip * np.float32(0.1)),
    Change("clipping 10 %", "level", lambda clip, rng, context: acoustics.clip_distortion(clip, 10.0)),
    Change("DC offset 0.1", "level", lambda clip, rng, context: clip + np.float32(0.1)),
)
CHANGE_NAMES = tuple(change.name for change in CHANGES)


def change_rng(change: str, clip_index: int) -> np.random.Generator:
    """The generator of one change on one clip: the same for every model and every run."""
    digest = int.from_bytes(hashlib.sha1(change.encode()).digest()[:8], "little")
    return np.random.default_rng([digest, clip_index])


def apply_change(change: Change, audio: np.ndarray, context: ChangeContext) -> np.ndarray:
    """``change`` applied to every clip (int16 or float rows), as int16 PCM as a microphone delivers it."""
    floats = audio.astype(np.float32) / 32768.0 if audio.dtype == np.int16 else audio.astype(np.float32)
    changed = np.stack(
        [change.apply(clip, change_rng(change.name, index), context) for index, clip in enumerate(floats)]
    )
    return (np.clip(changed, -1.0, 32767 / 32768) * 32768.0).round().astype(np.int16)
