"""What a keyword spotter must learn to ignore: other words and background noise.

``speech_commands_other`` holds clips of 27 words that are not keywords and four of
Speech Commands' noise recordings (its ``SOURCE.md``). Models that know
``_unknown_`` learn it from the other words; models that know ``_silence_`` learn it
from one-second pieces of the noise recordings at varied gains, as Speech Commands'
own recipe does; and the same recordings are mixed into training clips
(:mod:`kws.training.augment`) and into the robustness bench's test clips.

Speakers stay on one side of every split: the other words are split by the same
speaker hash as the keywords (:func:`kws.data.splits.partition_of`). The noise
recordings have no speakers, so each is split in time: its first 80 % serves
training, the next 10 % validation, the last 10 % test, and no moment of noise is
heard both in training and in a measurement.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.audio import CLIP_SAMPLES, clip_files, read_recording
from kws.data import DatasetError
from kws.data.clips import DEFAULT_LABELS, Clip
from kws.data.splits import partition_of

#: The folder of noise recordings inside a Speech Commands folder.
NOISE_FOLDER = "_background_noise_"
#: Which part of every noise recording (as fractions of its length) each split may use.
NOISE_PARTS = {"train": (0.0, 0.8), "validation": (0.8, 0.9), "test": (0.9, 1.0)}
#: Silence clips per keyword clip of a split: Speech Commands' recipe uses 10 %.
SILENCE_FRACTION = 0.1


def other_word_clips(other_dir: Path, split: str) -> list[Clip]:
    """The clips of every non-keyword word of one split (``Clip.label`` is the word), sorted."""
    root = Path(other_dir)
    words = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("_")) if root.is_dir() else []
    clips = [
        Clip(path, word)
        for word in words
        if word not in DEFAULT_LABELS
        for path in clip_files(root / word)
    ]
    if not clips:
        raise DatasetError(f"no <word>/<clip> files of non-keywords under {root}")
    return [clip for clip in clips if split == "all" or partition_of(clip.speaker) == split]


def word_weights(words: list[str]) -> np.ndarray:
    """A weight per clip so that rare words count more: 1/sqrt(clips of its word), mean 1.

    The six frequent words have 150 clips, the rare ones a dozen; weighting fully by
    the inverse count would make each of a dozen clips worth twelve, and the model
    would learn those voices rather than "not a keyword". The square root is between.
    """
    if not words:
        return np.ones(0, dtype=np.float32)
    names, inverse, counts = np.unique(np.asarray(words), return_inverse=True, return_counts=True)
    weights = 1.0 / np.sqrt(counts[inverse].astype(np.float64))
    return (weights / weights.mean()).astype(np.float32)


@dataclass(frozen=True)
class NoiseBank:
    """One split's parts of the noise recordings, to cut pieces from."""

    recordings: tuple[np.ndarray, ...]
    names: tuple[str, ...]

    @classmethod
    @functools.lru_cache(maxsize=8)
    def load(cls, noise_dir: Path, split: str) -> NoiseBank:
        """The ``split`` part (:data:`NOISE_PARTS`) of every recording (WAV, FLAC or Ogg) in ``noise_dir``."""
        paths = clip_files(noise_dir)
        if not paths:
            raise DatasetError(f"no noise recordings (WAV, FLAC or Ogg) in {noise_dir}")
        start, end = NOISE_PARTS[split]
        parts = []
        for path in paths:
            recording = read_recording(path).astype(np.float32) / 32768.0
            parts.append(recording[int(start * len(recording)) : int(end * len(recording))])
        return cls(tuple(parts), tuple(path.stem for path in paths))

    def segment(self, length: int, rng: np.random.Generator) -> np.ndarray:
        """A random ``length``-sample piece of a random recording."""
        recording = self.recordings[rng.integers(len(self.recordings))]
        start = rng.integers(0, max(1, len(recording) - length))
        return np.resize(recording[start : start + length], length).astype(np.float32)

    def mix(self, clip: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
        """``clip`` with a random piece of noise added at ``snr_db`` relative to the clip's power."""
        noise = self.segment(len(clip), rng)
        clip_power = float(np.mean(clip.astype(np.float64) ** 2)) + 1e-10
        noise_power = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-10
        scale = np.sqrt(clip_power / (noise_power * 10.0 ** (snr_db / 10.0)))
        return (clip + scale * noise).astype(np.float32)

    def silence(self, count: int, rng: np.random.Generator, gain_db: tuple[float, float] = (-45.0, 0.0)) -> np.ndarray:
        """``count`` one-second "silence" clips: pieces of noise at gains drawn from ``gain_db``.

        One in ten is near-digital silence (-90 dB), what a muted microphone gives.
        """
        gains = rng.uniform(*gain_db, size=count)
        gains[rng.random(count) < 0.1] = -90.0
        pieces = [self.segment(CLIP_SAMPLES, rng) * np.float32(10.0 ** (gain / 20.0)) for gain in gains]
        return np.stack(pieces) if pieces else np.zeros((0, CLIP_SAMPLES), np.float32)


def noise_dir_of(other_dir: Path) -> Path:
    return Path(other_dir) / NOISE_FOLDER
