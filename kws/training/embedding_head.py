"""A head on the pretrained speech embedding: the Big that has heard far more voices than our clips hold.

A small head over the front end's ``(9, 96)`` embeddings of a clip (:mod:`kws.frontend`, Google's
speech embedding as openWakeWord uses it) is trained with the eight keywords, ``_silence_`` and
``_unknown_``. With ``recipe.tune_from_conv`` the embedding's convolutions from that one up are
tuned together with the head (:mod:`kws.training.embedding_tuning`); without it the embedding is
frozen. What makes either cheap enough for two cores:

- every training clip is run once clean and ``recipe.variants`` times through the
  room-and-microphone changes (:mod:`kws.training.variant_bank`) through whatever stays frozen
  (the whole embedding, or the bottom below the tuned layers), and that output is cached on
  disk by content (:mod:`kws.training.content_cache`): a second run, or another head, starts
  from the cache;
- every epoch draws, for each clip, one of its variants (or the clean one), so the model
  sees a fresh mix of changes per epoch without running the frozen part again.

Splits, training-only folders, class balance and the figures in the metadata are those of
every other recipe (:mod:`kws.training.pipeline`). The model is exported as a float TFLite
file (the head alone, or the whole tuned embedding with the head, reading mel windows); its
metadata carries the front end's block (package, version, sha256 of the graphs, and whether
the file holds the embedding) and no FeatureConfig, so every client knows what the model reads.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.data.clips import DEFAULT_LABELS, NON_KEYWORD_LABELS
from kws.data.splits import is_training_only
from kws.frontend.embedding import FrontEnd, mel_windows
from kws.model.metadata import build_metadata, write_metadata
from kws.training.content_cache import cache_root, to_int16
from kws.training.data import class_weights, load_non_keywords, load_split
from kws.training.embedding_cache import embed_cached
from kws.training.embedding_tuning import FrozenBottom, embeddings_of, tuned_model, whole_model
from kws.training.export import convert, tflite_predictions
from kws.training.fitting import fit, keep_best_weights
from kws.training.non_keywords import NoiseBank, noise_dir_of
from kws.training.pipeline import split_accuracy, training_record
from kws.training.recipes import Recipe
from kws.training.variant_bank import training_variants, variant_sequence

log = logging.getLogger(__name__)


def train_embedding_head(
    name: str,
    recipe: Recipe,
    data_dirs: Sequence[Path],
    output_dir: Path,
    seed: int,
    train_fraction: float = 1.0,
    other_dir: Path | None = None,
    training_only_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train one head on the front end end to end and write its files; returns its metadata."""
    import tensorflow as tf
    import tf_keras as keras

    from kws.training.architectures import build_model

    if recipe.front_end is None:
        raise ValueError(f"recipe {name!r} has no front end: train it with kws.training.pipeline")
    if other_dir is None:
        raise ValueError(f"recipe {name!r} learns _silence_ and _unknown_: it needs the folder of other words")
    started = time.time()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    labels = list(DEFAULT_LABELS) + list(NON_KEYWORD_LABELS)
    training_only = tuple(d for d in data_dirs if d in set(training_only_dirs) or is_training_only(d))
    splits = {}
    for split in ("train", "validation", "test"):
        keywords = load_split(tuple(data_dirs), split, tuple(labels), training_only)
        splits[split] = keywords.concatenate(load_non_keywords(other_dir, split, tuple(labels), len(keywords)))
    splits["train"] = train_data = splits["train"].subset(train_fraction, seed)
    noise = NoiseBank.load(noise_dir_of(other_dir), "train")
    front_end = FrontEnd.load(recipe.front_end, threads=2)
    tuning = recipe.tune_from_conv is not None
    bottom = FrozenBottom(front_end, recipe.tune_from_conv) if tuning else None

    def inputs_of(audio: np.ndarray, desc: str) -> np.ndarray:
        """What the trained model reads: the frozen bottom's output (tuning), else the whole embeddings."""
        clips = to_int16(audio)
        return bottom.cached(clips, desc) if bottom is not None else embed_cached(front_end, clips, desc=desc)

    variants = np.stack([
        inputs_of(audio, f"front end of training variant {index}")
        for index, audio in enumerate(training_variants(recipe.augment, train_data, noise, seed, recipe.variants))
    ])  # (variants, clips, windows, ...)
    inputs = {split: inputs_of(splits[split].audio, f"front end of {split}") for split in ("validation", "test")}

    weights = class_weights(train_data.labels, len(labels))
    per_class = np.array([weights[index] for index in range(len(labels))], dtype=np.float32)
    word_weights = np.ones(len(train_data), np.float32) if train_data.weights is None else train_data.weights
    sample_weights = word_weights * per_class[train_data.labels]
    sequence = variant_sequence(variants, np.broadcast_to(train_data.labels, variants.shape[:2]), sample_weights,
                                recipe.batch_size, seed)

    if bottom is not None:  # the head standardises the frozen embedding of the clean clips, as without tuning
        frozen = tuned_model(variants.shape[2:], bottom.steps, bottom.start, keras.layers.Activation("linear"))
        clean = embeddings_of(frozen, variants[0].astype(np.float32))
    else:
        clean = variants[0]
    normalization = (clean.mean(axis=(0, 1)), clean.var(axis=(0, 1)))
    head = build_model(recipe.architecture, recipe.front_end.embedding_shape, len(labels), normalization,
                       **recipe.options)
    model = tuned_model(variants.shape[2:], bottom.steps, bottom.start, head) if bottom is not None else head
    trained_parameters = int(model.count_params())
    log.info("%s: %d parameters trained", recipe.architecture, trained_parameters)
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=recipe.patience, mode="max")
    history = fit(model, recipe, sequence, inputs["validation"].astype(np.float32), splits["validation"].labels,
                  None, recipe.epochs, recipe.learning_rate, [stop, keep_best_weights()])

    front_end_spec = recipe.front_end
    if bottom is not None:  # ship the whole embedding with the tuned top: the model reads mel windows
        kept = cache_root() / "tuned" / f"{name}.weights.h5"  # an export error then costs no training
        kept.parent.mkdir(parents=True, exist_ok=True)
        model.save_weights(str(kept))
        log.info("%s: tuned weights kept in %s", name, kept)
        front_end_spec = dataclasses.replace(recipe.front_end, embedding_in_model=True)
        model = whole_model(front_end_spec, bottom.steps, model, head)
        inputs = {split: np.stack([mel_windows(front_end.mel(clip), front_end_spec) for clip in
                                   to_int16(splits[split].audio)]) for split in ("validation", "test")}
    model_bytes = convert(model, recipe, clean[:: max(1, len(clean) // 500)])
    output_dir.mkdir(parents=True, exist_ok=True)
    blobs = {"tflite": (f"{name}.tflite", model_bytes)}
    (output_dir / f"{name}.tflite").write_bytes(model_bytes)
    accuracy: dict[str, Any] = {"float_validation": round(float(max(history.history["val_accuracy"])), 4)}
    for split in ("validation", "test"):
        predictions = tflite_predictions(model_bytes, inputs[split])
        accuracy.update(split_accuracy(split, splits[split], predictions, labels, data_dirs))

    metadata = build_metadata(
        name=name,
        description=recipe.description,
        labels=labels,
        feature_config=None,
        input_standardization=None,
        front_end=front_end_spec,
        architecture={"type": recipe.architecture, **recipe.options, "parameters": int(model.count_params()),
                      **({"tuned_from_conv": recipe.tune_from_conv, "trained_parameters": trained_parameters}
                         if tuning else {})},
        training=training_record(
            recipe, splits, labels, data_dirs, training_only, other_dir, train_fraction,
            {label: round(weights[index], 4) for index, label in enumerate(labels)},
            len(history.history["val_accuracy"]), seed, started,
            front_end_variants={"clean": 1, "augmented": recipe.variants, "drawn": "one variant per clip per epoch"},
        ),
        accuracy=accuracy,
        blobs=blobs,
    )
    write_metadata(output_dir, metadata)
    log.info("%s: validation %.4f, test %.4f", name, accuracy["validation"], accuracy["test"])
    return metadata
