"""Long labelled streams built from real clips: keywords and other words with pauses, over noise, then noise alone.

What an always-on spotter hears is mostly not a keyword, so it is judged on a stream,
not on clips: the keywords of unseen speakers, other words (``speech_commands_other``),
pauses, and a stretch of noise alone, all over a noise bed at a chosen level
(about -42 dBFS for a quiet room, -27 dBFS for a noisy one). Every word is an
:class:`Event` with the span where it is voiced, so detections can be scored
(:mod:`kws.tuning.stream_scoring`).

Speakers follow the project's splits (:func:`kws.data.splits.partition_of`), for the
other words too: calibration builds its streams from validation speakers, the
benchmark from test speakers. The noise recordings are split in time, the first half
of each for validation and the second half for test, so the two never share noise.
Everything is drawn from one seed: the same arguments give the same stream.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kws.audio import CLIP_SAMPLES, SAMPLE_RATE, clip_files, read_clip, read_recording
from kws.data.clips import Clip, select_clips

log = logging.getLogger(__name__)

KEYWORD, OTHER = "keyword", "other"
NOISE_FOLDER = "_background_noise_"
OTHER_FOLDER = "speech_commands_other"
#: The two rooms the streams are built for: noise RMS in dBFS (20 log10 of the RMS of samples in [-1, 1]).
NOISE_LEVELS_DBFS = {"quiet": -42.0, "noisy": -27.0}
#: Pause between one word's voiced end and the next one's start; at least 1 s, so that the
#: scoring windows (a word's span plus 1 s) never overlap.
PAUSE_S = (1.0, 2.5)
#: The part of each noise recording a split may use.
NOISE_PARTS = {"validation": (0.0, 0.5), "test": (0.5, 1.0), "all": (0.0, 1.0)}


@dataclass(frozen=True)
class Event:
    """One word in the stream."""

    kind: str
    """``keyword`` or ``other``."""
    label: str
    start: int
    """First voiced sample, from the stream's start."""
    end: int
    """Last voiced sample."""
    clip: str


@dataclass
class SyntheticStream:
    """The audio (int16, 16 kHz) and what is in it."""

    samples: np.ndarray
    events: list[Event]
    noise_start: int
    """Where the stretch of noise alone begins (it runs to the end)."""
    level_dbfs: float
    description: dict[str, object] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.samples.size / SAMPLE_RATE

    @property
    def noise_s(self) -> float:
        return (self.samples.size - self.noise_start) / SAMPLE_RATE


@dataclass
class Material:
    """What a split's streams are made of."""

    keywords: list[Clip]
    others: list[Clip]
    noises: list[tuple[str, np.ndarray]]
    """(name, float32 samples) of the split's part of each noise recording."""


def voiced_span(samples: np.ndarray, floor_db: float = 25.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames within ``floor_db`` of the loudest one."""
    frame = SAMPLE_RATE // 100
    usable = samples[: samples.size - samples.size % frame].astype(np.float64) / 32768.0
    energy = 10 * np.log10(np.mean(usable.reshape(-1, frame) ** 2, axis=1) + 1e-12)
    loud = np.flatnonzero(energy >= energy.max() - floor_db)
    return int(loud[0] * frame), int((loud[-1] + 1) * frame - 1)


def other_words_dir(data_dir: Path) -> Path:
    """Where the other words are by default: ``speech_commands_other`` beside the keywords' folder."""
    return Path(data_dir).resolve().parent / OTHER_FOLDER


def load_material(data_dirs: Sequence[Path], other_dir: Path | None, split: str) -> Material:
    """The split's keyword clips (every data dir), other words and noise; DatasetError when there are no keywords.

    ``split`` is any split :func:`~kws.data.clips.select_clips` takes; other words and noise,
    which no split file lists, come from the test speakers and test half for any split but
    validation, test and all. Without other words or noise (a folder without them, e.g.
    mini_speech_commands) the stream is made without them, with a warning.
    """
    keywords = [clip for data_dir in data_dirs for clip in select_clips(data_dir, split)]
    if split not in NOISE_PARTS:
        log.info("other words and noise of a stream for split %s: the test speakers and the test half", split)
        split = "test"
    others: list[Clip] = []
    noises: list[tuple[str, np.ndarray]] = []
    if other_dir is not None and Path(other_dir).is_dir():
        words = sorted(p.name for p in Path(other_dir).iterdir() if p.is_dir() and not p.name.startswith("_"))
        others = select_clips(other_dir, split, words) if words else []
        low, high = NOISE_PARTS[split]
        for path in clip_files(Path(other_dir) / NOISE_FOLDER):
            recording = read_recording(path).astype(np.float32) / 32768.0
            noises.append((path.name, recording[int(low * recording.size) : int(high * recording.size)]))
    if not others or not noises:
        log.warning("no other words or no noise recordings under %s: the stream has %s", other_dir,
                    "keywords and pauses only" if not others and not noises else "what there is")
    return Material(keywords, others, noises)


def noise_bed(noises: Sequence[tuple[str, np.ndarray]], length: int, level_dbfs: float,
              rng: np.random.Generator) -> np.ndarray:
    """``length`` samples of noise at ``level_dbfs`` RMS: random 3-10 s pieces of the recordings, each
    brought to the level, joined with 20 ms cross-fades (a click could sound like a plosive)."""
    target = 10 ** (level_dbfs / 20)
    if not noises:
        return (rng.standard_normal(length) * target).astype(np.float32)
    bed = np.zeros(length, dtype=np.float32)
    fade = SAMPLE_RATE // 50
    ramp = np.linspace(0.0, 1.0, fade, dtype=np.float32)
    position = 0
    while position < length:
        _, recording = noises[int(rng.integers(len(noises)))]
        size = min(int(rng.uniform(3, 10) * SAMPLE_RATE), recording.size, length - position + fade)
        start = int(rng.integers(0, recording.size - size + 1))
        piece = recording[start : start + size].astype(np.float32)
        piece = piece * (target / max(float(np.sqrt(np.mean(piece**2))), 1e-9)) * rng.choice([-1.0, 1.0])
        if position:
            head = min(fade, piece.size)
            piece[:head] *= ramp[:head]
            bed[position - head : position] *= 1.0 - ramp[:head]
            position -= head
        stop = min(length, position + piece.size)
        bed[position:stop] += piece[: stop - position]
        position = stop
    return bed


def build_stream(material: Material, level_dbfs: float, noise_s: float, seed: int = 0,
                 pause_s: tuple[float, float] = PAUSE_S, lead_s: float = 1.5) -> SyntheticStream:
    """Every keyword and other word of ``material`` once, shuffled, with pauses, over a noise bed at
    ``level_dbfs``; then ``noise_s`` seconds of noise alone. Speech keeps its recorded level."""
    if pause_s[0] < 1.0:
        raise ValueError("pauses must be at least 1 s, or the scoring windows of two words would overlap")
    rng = np.random.default_rng(seed)
    words = [(KEYWORD, clip) for clip in material.keywords] + [(OTHER, clip) for clip in material.others]
    order = rng.permutation(len(words))
    placed: list[tuple[int, np.ndarray]] = []
    events: list[Event] = []
    previous_end = int(lead_s * SAMPLE_RATE) - int(pause_s[0] * SAMPLE_RATE)
    for index in order:
        kind, clip = words[int(index)]
        audio = read_clip(clip.path)
        start, end = voiced_span(audio)
        offset = previous_end + int(rng.uniform(*pause_s) * SAMPLE_RATE) - start
        placed.append((offset, audio))
        events.append(Event(kind, clip.label, offset + start, offset + end, clip.key))
        previous_end = offset + end
    noise_start = max(previous_end + int(pause_s[1] * SAMPLE_RATE), placed[-1][0] + CLIP_SAMPLES if placed else 0)
    total = noise_start + int(noise_s * SAMPLE_RATE)
    mix = noise_bed(material.noises, total, level_dbfs, rng)
    for offset, audio in placed:
        mix[offset : offset + audio.size] += audio.astype(np.float32) / 32768.0
    samples = np.clip(np.rint(mix * 32768.0), -32768, 32767).astype(np.int16)
    description = {
        "seconds": round(total / SAMPLE_RATE, 2), "noise_level_dbfs": level_dbfs, "seed": seed,
        "keywords": len(material.keywords), "other_words": len(material.others),
        "noise_alone_s": round(noise_s, 2), "pause_s": list(pause_s),
        "noise_recordings": [name for name, _ in material.noises],
    }
    return SyntheticStream(samples, events, noise_start, level_dbfs, description)
