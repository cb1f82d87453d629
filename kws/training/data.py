"""Training data: clips of several folders to features, freshly augmented every epoch."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.data.clips import label_indices, load_audio, select_clips
from kws.features import FeatureConfig, InputStandardization, features_from_prepared, prepare_audio
from kws.training.augment import augment_audio, mask_features
from kws.training.recipes import Recipe


@dataclass
class SplitData:
    """One split's audio (float32 at 16 kHz) and label indices, with where each clip came from."""

    audio: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, fraction: float, seed: int) -> SplitData:
        """A random ``fraction`` of the clips (for learning curves), the same for a given seed."""
        if fraction >= 1.0:
            return self
        rows = np.sort(np.random.default_rng(seed).permutation(len(self))[: max(1, int(len(self) * fraction))])
        return SplitData(self.audio[rows], self.labels[rows], self.sources[rows])


@functools.lru_cache(maxsize=8)
def load_split(data_dirs: tuple[Path, ...], split: str, labels: tuple[str, ...]) -> SplitData:
    """The clips of one split from every data dir, as float32 in [-1, 1] (read once per process)."""
    audio, indices, sources = [], [], []
    for data_dir in data_dirs:
        clips = select_clips(data_dir, split, labels)
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


def augmented_epoch(recipe: Recipe, data: SplitData, epoch_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's augmented features and visiting order (cached; deterministic per seed)."""
    key = (recipe.features, recipe.augment, len(data), epoch_seed)
    if key not in _AUGMENTED_EPOCHS:
        rng = np.random.default_rng(epoch_seed)
        audio = augment_audio(data.audio, recipe.augment, SAMPLE_RATE, rng)
        features = mask_features(clean_features(audio, recipe.features), recipe.augment, rng)
        _AUGMENTED_EPOCHS[key] = (features, rng.permutation(len(data)))
    return _AUGMENTED_EPOCHS[key]


def make_training_sequence(
    recipe: Recipe, data: SplitData, seed: int, standardization: InputStandardization | None = None
):
    """A Keras Sequence that gives every epoch freshly augmented clips.

    Augmenting and featurising ~4 500 clips takes seconds, as long as an epoch of
    the smaller models, so the next epoch's features are prepared in a background
    thread while the current one trains (numpy's heavy kernels release the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    import tf_keras as keras

    class AugmentedClips(keras.utils.Sequence):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.prefetcher = ThreadPoolExecutor(max_workers=1)
            self.next_epoch = self.prefetcher.submit(augmented_epoch, recipe, data, seed)
            self.on_epoch_end()

        def on_epoch_end(self) -> None:
            self.features, self.order = self.next_epoch.result()
            self.epoch += 1
            self.next_epoch = self.prefetcher.submit(augmented_epoch, recipe, data, seed + self.epoch)

        def __len__(self) -> int:
            return -(-len(data) // recipe.batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            batch = self.features[rows]
            return (standardization.apply(batch) if standardization else batch), data.labels[rows]

    return AugmentedClips()


def class_weights(labels: np.ndarray, num_labels: int) -> dict[int, float]:
    """Inverse-frequency weights so the rare words of the unbalanced folder count fully."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = counts.sum() / (num_labels * np.maximum(counts, 1.0))
    return {index: float(weight) for index, weight in enumerate(weights)}
