"""Training data: clips of several folders to features, freshly augmented every epoch (or drawn from a
bank of variants made once, :mod:`kws.training.variant_bank`, for a recipe with ``variant_bank``)."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.data.clips import SILENCE, UNKNOWN, label_indices, load_audio, select_clips
from kws.features import FeatureConfig, InputStandardization, features_from_prepared, prepare_audio
from kws.training.augment import augment_audio, mask_features
from kws.training.non_keywords import SILENCE_FRACTION, NoiseBank, noise_dir_of, other_word_clips, word_weights
from kws.training.recipes import Recipe

#: ``SplitData.sources`` of the silence clips cut from the noise recordings.
SILENCE_SOURCE = "_background_noise_"


@dataclass
class SplitData:
    """One split's audio (float32 at 16 kHz) and label indices, with where each clip came from.

    ``weights`` are per-clip loss weights on top of the class weights (rare unknown
    words count more); None means all ones.
    """

    audio: np.ndarray
    labels: np.ndarray
    sources: np.ndarray
    weights: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, fraction: float, seed: int) -> SplitData:
        """A random ``fraction`` of the clips (for learning curves), the same for a given seed."""
        if fraction >= 1.0:
            return self
        rows = np.sort(np.random.default_rng(seed).permutation(len(self))[: max(1, int(len(self) * fraction))])
        weights = None if self.weights is None else self.weights[rows]
        return SplitData(self.audio[rows], self.labels[rows], self.sources[rows], weights)

    def concatenate(self, other: SplitData) -> SplitData:
        weights = None
        if self.weights is not None or other.weights is not None:
            weights = np.concatenate([
                np.ones(len(self), np.float32) if self.weights is None else self.weights,
                np.ones(len(other), np.float32) if other.weights is None else other.weights,
            ])
        return SplitData(
            np.concatenate([self.audio, other.audio]),
            np.concatenate([self.labels, other.labels]),
            np.concatenate([self.sources, other.sources]),
            weights,
        )


def load_non_keywords(other_dir: Path, split: str, labels: tuple[str, ...], keyword_clips: int) -> SplitData:
    """The ``_unknown_`` clips (other words) and ``_silence_`` clips of one split.

    There are ``SILENCE_FRACTION`` x ``keyword_clips`` silence clips. Those of the
    validation and test splits are cut once, with a fixed seed, from those splits' part
    of the noise recordings; those of the train split are placeholders (zeros) that
    :func:`augmented_epoch` cuts afresh every epoch from the training part.
    """
    clips = other_word_clips(other_dir, split)
    unknown = load_audio(clips).astype(np.float32) / 32768.0
    silence_count = max(1, int(round(SILENCE_FRACTION * keyword_clips)))
    if split == "train":
        silence = np.zeros((silence_count, unknown.shape[1]), np.float32)
    else:
        seed = {"validation": 11, "test": 12}.get(split, 13)
        silence = NoiseBank.load(noise_dir_of(other_dir), split).silence(silence_count, np.random.default_rng(seed))
    sources = [Path(other_dir).name] * len(clips) + [SILENCE_SOURCE] * silence_count
    return SplitData(
        np.concatenate([unknown, silence]),
        np.array([labels.index(UNKNOWN)] * len(clips) + [labels.index(SILENCE)] * silence_count, dtype=np.int64),
        np.array(sources),
        np.concatenate([word_weights([clip.label for clip in clips]), np.ones(silence_count, np.float32)]),
    )


@functools.lru_cache(maxsize=8)
def load_split(
    data_dirs: tuple[Path, ...], split: str, labels: tuple[str, ...], training_only_dirs: tuple[Path, ...] = ()
) -> SplitData:
    """The clips of one split from every data dir, as float32 in [-1, 1] (read once per process).

    The folders in ``training_only_dirs``, and those that declare themselves training-only
    (:func:`kws.data.splits.is_training_only`), give all their clips to 'train' and none
    to 'validation' or 'test'.
    """
    audio, indices, sources = [], [], []
    for data_dir in data_dirs:
        clips = select_clips(data_dir, split, labels, training_only=True if data_dir in training_only_dirs else None)
        audio.append(load_audio(clips).astype(np.float32) / 32768.0)
        indices.append(label_indices(clips, labels))
        sources.extend([str(data_dir)] * len(clips))
    return SplitData(np.concatenate(audio), np.concatenate(indices), np.array(sources))


def clean_features(audio: np.ndarray, config: FeatureConfig, batch: int = 512) -> np.ndarray:
    """Features of un-augmented clips, in batches to bound memory."""
    parts = [
        features_from_prepared(
            np.stack([prepare_audio(clip, SAMPLE_RATE, config) for clip in audio[start : start + batch]]), config
        )
        for start in range(0, len(audio), batch)
    ]
    return np.concatenate(parts).astype(np.float32)


#: Augmented epochs already computed in this process, keyed by what determines them.
#: The server-side recipes share one FeatureConfig and augmentation, so with
#: ``--all`` each epoch's features are made once and reused by every such model.
_AUGMENTED_EPOCHS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def augmented_epoch(
    recipe: Recipe, data: SplitData, epoch_seed: int, noise: NoiseBank | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's augmented features and visiting order (cached; deterministic per seed).

    With ``noise`` (the training part of the noise recordings), the silence clips are
    cut afresh and background noise can be mixed in.
    """
    key = (recipe.features, recipe.augment, len(data), epoch_seed, noise is not None)
    if key not in _AUGMENTED_EPOCHS:
        rng = np.random.default_rng(epoch_seed)
        audio = data.audio
        silent = data.sources == SILENCE_SOURCE
        if noise is not None and silent.any():
            audio = audio.copy()
            audio[silent] = noise.silence(int(silent.sum()), rng)
        audio = augment_audio(audio, recipe.augment, SAMPLE_RATE, rng, noise)
        features = mask_features(clean_features(audio, recipe.features), recipe.augment, rng)
        _AUGMENTED_EPOCHS[key] = (features, rng.permutation(len(data)))
    return _AUGMENTED_EPOCHS[key]


def make_training_sequence(
    recipe: Recipe,
    data: SplitData,
    seed: int,
    standardization: InputStandardization | None = None,
    noise: NoiseBank | None = None,
    targets: np.ndarray | None = None,
):
    """A Keras Sequence that gives every epoch freshly augmented clips.

    ``targets`` are what Keras learns per clip, the label indices by default (packed
    labels and teacher probabilities when distilling, :mod:`kws.training.distillation`).

    Augmenting and featurising ~4 500 clips takes seconds, as long as an epoch of
    the smaller models, so the next epoch's features are prepared in a background
    thread while the current one trains (numpy's heavy kernels release the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    import tf_keras as keras

    targets = data.labels if targets is None else targets

    class AugmentedClips(keras.utils.Sequence):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.prefetcher = ThreadPoolExecutor(max_workers=1)
            self.next_epoch = self.prefetcher.submit(augmented_epoch, recipe, data, seed, noise)
            self.on_epoch_end()

        def on_epoch_end(self) -> None:
            self.features, self.order = self.next_epoch.result()
            self.epoch += 1
            self.next_epoch = self.prefetcher.submit(augmented_epoch, recipe, data, seed + self.epoch, noise)

        def __len__(self) -> int:
            return -(-len(data) // recipe.batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            batch = self.features[rows]
            batch = standardization.apply(batch) if standardization else batch
            if data.weights is None:
                return batch, targets[rows]
            return batch, targets[rows], data.weights[rows]

    return AugmentedClips()


def class_weights(labels: np.ndarray, num_labels: int) -> dict[int, float]:
    """Inverse-frequency weights, so that every label weighs as much in the loss as any other.

    The folders are far from balanced (``yes`` and ``no`` have about ten times the clips
    of ``stop``, with ``speech_commands_more``); weighting rather than discarding clips
    keeps every voice the frequent words have.
    """
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = counts.sum() / (num_labels * np.maximum(counts, 1.0))
    return {index: float(weight) for index, weight in enumerate(weights)}
