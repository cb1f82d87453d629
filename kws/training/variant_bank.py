"""A bank of augmented variants of every training clip: made once, drawn from by every epoch.

The room-and-microphone changes (:mod:`kws.training.acoustics`) cost about 40 ms a clip on one
core: made afresh every epoch (:func:`kws.training.data.augmented_epoch`), they are most of an
epoch of a small model on two cores. A bank makes them once instead: the clean clip (variant 0),
then ``count`` augmented copies, each from a generator fixed by the seed and the variant's
index (:func:`training_variants`). What a model reads of each variant is computed once and
cached by content (:mod:`kws.training.content_cache`): the features (:class:`VariantBank`, the
feature models' ``recipe.variant_bank``) or the pretrained front end's output
(:mod:`kws.training.embedding_head`, ``recipe.variants``). A distilled recipe's teacher hears
every variant too, once, cached as well, so the student learns the teacher's opinion of the
augmented clip it is shown, not of the clean one.

Every epoch draws one variant per clip, afresh (:func:`variant_sequence`); what is cheap stays
per epoch: SpecAugment masks are applied to each drawn batch.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.features import FeatureConfig, InputStandardization
from kws.model.runtime import KeywordModel
from kws.training.augment import AugmentConfig, augment_audio, mask_features
from kws.training.content_cache import cached_batches, to_int16
from kws.training.data import SILENCE_SOURCE, SplitData, clean_features
from kws.training.distillation import pack_targets, teacher_probabilities
from kws.training.non_keywords import NoiseBank
from kws.training.recipes import Recipe

#: The cache's folder of features, and clips per cache file (as :func:`clean_features` batches them).
FEATURES_FOLDER = "features"
FEATURES_BATCH = 512


def training_variants(
    augment: AugmentConfig, data: SplitData, noise: NoiseBank | None, seed: int, count: int
) -> Iterator[np.ndarray]:
    """The clean training clips, then ``count`` augmented copies (float32 in [-1, 1]), one at a time
    (each is about 1 GB for the shared folders); copy ``index`` is drawn from ``default_rng([seed, index])``.

    The silence clips are cut afresh from the training part of the noise recordings for
    each variant (the clean variant's too: they are placeholders until here), as every
    epoch of :func:`kws.training.data.augmented_epoch` cuts them.
    """
    silent = data.sources == SILENCE_SOURCE
    for index in range(count + 1):
        rng = np.random.default_rng([seed, index])
        audio = data.audio.copy()
        if noise is not None and silent.any():
            audio[silent] = noise.silence(int(silent.sum()), rng)
        yield augment_audio(audio, augment, SAMPLE_RATE, rng, noise) if index else audio


def cached_features(clips: np.ndarray, config: FeatureConfig, desc: str = "features") -> np.ndarray:
    """:func:`~kws.training.data.clean_features` of int16 clips, cached by content (the samples and the
    FeatureConfig): ``(clips, frames, bins)`` float32."""
    tag = json.dumps(config.to_dict(), sort_keys=True).encode()
    return cached_batches(clips, tag, lambda batch: clean_features(batch.astype(np.float32) / 32768.0, config),
                          desc, FEATURES_FOLDER, FEATURES_BATCH)


@dataclass
class VariantBank:
    """The features of every variant of every training clip, and the teacher's opinion of each."""

    features: np.ndarray
    """``(variants, clips, frames, bins)`` float32, unmasked; variant 0 is the clean clip."""
    teacher: np.ndarray | None = None
    """``(variants, clips, labels)``: the teacher's probabilities of each variant, softened at the recipe's
    temperature; None for a recipe that does not distil."""

    @classmethod
    def build(
        cls, recipe: Recipe, data: SplitData, noise: NoiseBank | None, seed: int, teacher: KeywordModel | None = None
    ) -> VariantBank:
        """The clean clips and ``recipe.variant_bank`` augmented copies, featurised (and heard by ``teacher``,
        which a distilled recipe needs) once each, through the cache."""
        if (teacher is None) != (recipe.distillation is None):
            raise ValueError("a distilled recipe's bank needs its teacher, and only such a recipe's")
        features, opinions = [], []
        for index, audio in enumerate(training_variants(recipe.augment, data, noise, seed, recipe.variant_bank)):
            clips = to_int16(audio)  # the cache's key, and what the features and the teacher hear
            features.append(cached_features(clips, recipe.features, f"features of training variant {index}"))
            if teacher is not None:
                opinions.append(teacher_probabilities(teacher, clips, recipe.distillation.temperature,
                                                      f"teacher on training variant {index}"))
        return cls(np.stack(features), np.stack(opinions) if opinions else None)

    def sequence(self, recipe: Recipe, data: SplitData, seed: int, standardization: InputStandardization | None):
        """The Keras Sequence that trains on the bank: each epoch a variant per clip, masked per batch
        (``recipe.augment``'s SpecAugment), then standardised; the label, or the label packed with the
        teacher's opinion of that variant, as target; ``data.weights`` as sample weights when there are any."""
        if self.teacher is not None:
            targets = np.stack([pack_targets(data.labels, opinion) for opinion in self.teacher])
        else:
            targets = np.broadcast_to(data.labels, self.features.shape[:2])

        def masked(batch: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            batch = mask_features(batch, recipe.augment, rng)
            return standardization.apply(batch) if standardization is not None else batch

        return variant_sequence(self.features, targets, data.weights, recipe.batch_size, seed, masked)


def variant_sequence(
    variants: np.ndarray,
    targets: np.ndarray,
    weights: np.ndarray | None,
    batch_size: int,
    seed: int,
    transform: Callable[[np.ndarray, np.random.Generator], np.ndarray] | None = None,
):
    """A Keras Sequence over a bank ``(variants, clips, ...)``: each epoch, every clip as one of its variants,
    drawn afresh, in a fresh order.

    ``targets`` has one row per variant of each clip, ``(variants, clips, ...)`` (``np.broadcast_to`` a
    clip's label over its variants). ``transform(batch, rng)`` (masks, say) gets a generator fixed by the
    seed, the epoch and the batch, so a batch is the same in whatever order Keras asks for them.
    """
    import tf_keras as keras

    clips = variants.shape[1]

    class Variants(keras.utils.Sequence):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.on_epoch_end()

        def on_epoch_end(self) -> None:
            rng = np.random.default_rng([seed, 1_000 + self.epoch])
            self.drawn_for = self.epoch
            self.epoch += 1
            self.order = rng.permutation(clips)
            self.choice = rng.integers(0, len(variants), size=clips)

        def __len__(self) -> int:
            return -(-clips // batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * batch_size : (index + 1) * batch_size]
            batch = variants[self.choice[rows], rows].astype(np.float32)
            if transform is not None:
                batch = transform(batch, np.random.default_rng([seed, 2_000 + self.drawn_for, index]))
            if weights is None:
                return batch, targets[self.choice[rows], rows]
            return batch, targets[self.choice[rows], rows], weights[rows]

    return Variants()
