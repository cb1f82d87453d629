"""One recipe end to end: data, training, pruning, export, measurement and metadata."""

from __future__ import annotations

import dataclasses
import logging
import platform
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.data.clips import DEFAULT_LABELS, NON_KEYWORD_LABELS
from kws.data.splits import is_training_only
from kws.features import InputStandardization
from kws.model.metadata import build_metadata, write_metadata
from kws.training.data import (
    SplitData,
    class_weights,
    clean_features,
    load_non_keywords,
    load_split,
    make_training_sequence,
)
from kws.training.distillation import load_teacher, pack_targets, teacher_probabilities
from kws.training.export import compress, convert, tflite_predictions
from kws.training.fitting import prune, train_float_model, weight_sparsity
from kws.training.non_keywords import NoiseBank, noise_dir_of
from kws.training.recipes import Recipe
from kws.training.variant_bank import VariantBank

log = logging.getLogger(__name__)


def train_recipe(
    name: str,
    recipe: Recipe,
    data_dirs: Sequence[Path],
    output_dir: Path,
    seed: int,
    train_fraction: float = 1.0,
    other_dir: Path | None = None,
    training_only_dirs: Sequence[Path] = (),
) -> dict[str, Any]:
    """Train one recipe end to end and write its files; returns its metadata.

    ``train_fraction`` < 1 trains on a random part of the training clips, for
    learning curves (``bench/learning_curve.py``); validation and test stay whole.
    ``other_dir`` (``speech_commands_other``: other words and noise recordings) is
    needed by recipes that learn ``_silence_`` and ``_unknown_`` or mix in recorded noise.
    ``training_only_dirs`` (some of ``data_dirs``) give every clip to training and none to
    validation or test, as do folders that declare themselves so (:mod:`kws.data.splits`).
    """
    import tensorflow as tf
    import tf_keras as keras

    started = time.time()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    labels = list(DEFAULT_LABELS) + (list(NON_KEYWORD_LABELS) if recipe.non_keywords else [])
    if other_dir is None and (recipe.non_keywords or recipe.augment.background_probability > 0):
        raise ValueError(f"recipe {name!r} needs the folder of other words and noise recordings (other_dir)")
    training_only = tuple(d for d in data_dirs if d in set(training_only_dirs) or is_training_only(d))
    splits = {split: load_split(tuple(data_dirs), split, tuple(labels), training_only)
              for split in ("train", "validation", "test")}
    if recipe.non_keywords:
        splits = {
            split: data.concatenate(load_non_keywords(other_dir, split, tuple(labels), len(data)))
            for split, data in splits.items()
        }
    splits["train"] = train_data = splits["train"].subset(train_fraction, seed)
    noise = NoiseBank.load(noise_dir_of(other_dir), "train") if other_dir is not None else None
    teacher = None
    if recipe.distillation is not None:
        teacher_stem = output_dir / recipe.distillation.teacher
        if not teacher_stem.with_suffix(".json").is_file():
            raise ValueError(f"recipe {name!r} learns from {recipe.distillation.teacher!r}, which is not in "
                             f"{output_dir}: train it first (python train.py --recipe {recipe.distillation.teacher})")
        teacher = load_teacher(teacher_stem, labels)
    # A bank of variants (recipe.variant_bank): every training clip augmented, featurised and heard by the
    # teacher once, through the cache, rather than augmented afresh every epoch.
    bank = VariantBank.build(recipe, train_data, noise, seed, teacher) if recipe.variant_bank else None
    features = {split: clean_features(data.audio, recipe.features) for split, data in splits.items()
                if bank is None or split != "train"}
    if bank is not None:  # the clean variant, with its silence clips cut (no longer placeholders)
        features["train"] = bank.features[0]
    mean, variance = features["train"].mean(axis=(0, 1)), features["train"].var(axis=(0, 1))
    # A float model standardises its input in the graph. A full-integer one cannot do it
    # well there: its input is quantized per tensor *before* any layer runs, so MFCC 0
    # (tens of units wide) would leave the higher coefficients a handful of int8 steps.
    # Such models take standardised features instead, with the statistics in their
    # metadata, where kws.model.runtime applies them.
    standardize_outside = recipe.quantization == "int8"
    standardization = InputStandardization(mean, np.sqrt(variance + 1e-6)) if standardize_outside else None
    if standardization is not None:
        features = {split: standardization.apply(values) for split, values in features.items()}
    weights = class_weights(train_data.labels, len(labels))
    weights_by_label = {label: round(weights[index], 4) for index, label in enumerate(labels)}
    if recipe.distillation is not None and train_data.weights is None:
        train_data = dataclasses.replace(train_data, weights=np.ones(len(train_data), np.float32))
    if train_data.weights is not None:
        # Keras cannot multiply class weights into a Sequence's sample weights of unknown
        # length (nor find the class in packed distillation targets), so both are folded
        # into the sample weights here.
        per_class = np.array([weights[index] for index in range(len(labels))], dtype=np.float32)
        train_data = dataclasses.replace(train_data, weights=train_data.weights * per_class[train_data.labels])
        weights = None
    val_x, val_y = features["validation"], splits["validation"].labels
    train_targets = None
    if teacher is not None:
        temperature = recipe.distillation.temperature
        val_y = pack_targets(val_y, teacher_probabilities(teacher, splits["validation"].audio, temperature,
                                                          desc="teacher on validation"))
        if bank is None:  # the bank holds the teacher's opinion of every variant
            train_targets = pack_targets(train_data.labels, teacher_probabilities(teacher, train_data.audio,
                                                                                  temperature, desc="teacher on train"))
    if bank is not None:
        train_sequence = bank.sequence(recipe, train_data, seed, standardization)
    else:
        train_sequence = make_training_sequence(recipe, train_data, seed, standardization, noise, train_targets)

    normalization = None if standardize_outside else (mean, variance)
    model, history = train_float_model(recipe, train_sequence, val_x, val_y, weights, len(labels), normalization)
    float_val_accuracy = float(max(history.history["val_accuracy"]))
    if recipe.prune_sparsity:
        model = prune(model, recipe, train_sequence, val_x, val_y, weights)

    model_bytes = convert(model, recipe, features["train"][:: max(1, len(features["train"]) // 500)])
    output_dir.mkdir(parents=True, exist_ok=True)
    blobs = {"tflite": (f"{name}.tflite", model_bytes)}
    if recipe.compress:
        blobs["tflite_zlib"] = (f"{name}.tflite.zlib", compress(model_bytes))
    for filename, blob in blobs.values():
        (output_dir / filename).write_bytes(blob)

    accuracy: dict[str, Any] = {"float_validation": round(float_val_accuracy, 4)}
    for split in ("validation", "test"):
        predictions = tflite_predictions(model_bytes, features[split])
        accuracy.update(split_accuracy(split, splits[split], predictions, labels, data_dirs))

    metadata = build_metadata(
        name=name,
        description=recipe.description,
        labels=labels,
        feature_config=recipe.features,
        input_standardization=standardization,
        architecture={"type": recipe.architecture, **recipe.options, "parameters": int(model.count_params())},
        training=training_record(
            recipe, splits, labels, data_dirs, training_only, other_dir, train_fraction, weights_by_label,
            len(history.history["val_accuracy"]), seed, started,
            **({"distillation": {**recipe.distillation.to_dict(), "teacher_sha256": teacher.sha256}}
               if teacher is not None else {}),
            **({"variant_bank": {"clean": 1, "augmented": recipe.variant_bank,
                                 "drawn": "one variant per clip per epoch",
                                 "teacher": "hears every variant" if teacher is not None else None}}
               if bank is not None else {}),
            prune_sparsity=recipe.prune_sparsity,
            measured_sparsity=round(weight_sparsity(model), 4),
        ),
        accuracy=accuracy,
        blobs=blobs,
    )
    write_metadata(output_dir, metadata)
    log.info("%s: validation %.4f, test %.4f, %s", name, accuracy["validation"], accuracy["test"], metadata["sizes"])
    return metadata


def training_record(
    recipe: Recipe,
    splits: dict[str, SplitData],
    labels: Sequence[str],
    data_dirs: Sequence[Path],
    training_only: Sequence[Path],
    other_dir: Path | None,
    train_fraction: float,
    class_weights_by_label: dict[str, float],
    epochs_run: int,
    seed: int,
    started: float,
    **specific: Any,
) -> dict[str, Any]:
    """The metadata's ``training`` section: what every recipe records (folders, clips per label and split,
    class weights, schedule, versions, time), with what only this kind of recipe does in ``specific``."""
    import tensorflow as tf

    train = splits["train"]
    per_label = np.bincount(train.labels, minlength=len(labels))
    return {
        "data_dirs": [Path(d).name for d in data_dirs],
        "training_only_dirs": [Path(d).name for d in training_only],
        "split": "speaker hash (kws.data.splits.partition_of), 80/10/10; training-only folders all in train",
        "train_clips": len(train),
        "train_fraction": train_fraction,
        "other_dir": Path(other_dir).name if other_dir is not None else None,
        "train_clips_per_label": {label: int(count) for label, count in zip(labels, per_label)},
        "class_weights": class_weights_by_label,
        "label_balance": "inverse-frequency class weights (kws.training.data.class_weights)",
        "validation_clips": len(splits["validation"]),
        "test_clips": len(splits["test"]),
        "epochs_max": recipe.epochs,
        "epochs_run": epochs_run,
        "batch_size": recipe.batch_size,
        "learning_rate": recipe.learning_rate,
        "label_smoothing": recipe.label_smoothing,
        "augmentation": recipe.augment.to_dict(),
        **specific,
        "quantization": recipe.quantization,
        "seed": seed,
        "tensorflow": tf.__version__,
        "python": platform.python_version(),
        "seconds": round(time.time() - started, 1),
    }


def split_accuracy(
    split: str, data: SplitData, predictions: np.ndarray, labels: Sequence[str], data_dirs: Sequence[Path]
) -> dict[str, Any]:
    """The metadata's figures for one split: accuracy over all its clips, per folder, and, for
    models that know ``_silence_`` and ``_unknown_``, on keyword clips alone and how many of the
    non-keyword clips came out as either (``{split}_non_keywords_rejected``)."""
    correct = predictions == data.labels
    figures: dict[str, Any] = {split: round(float(correct.mean()), 4)}
    per_dir = {}
    for source in [str(d) for d in data_dirs] + sorted(set(data.sources) - {str(d) for d in data_dirs}):
        rows = data.sources == source
        if rows.any():
            per_dir[Path(source).name] = {"accuracy": round(float(correct[rows].mean()), 4), "samples": int(rows.sum())}
    figures[f"{split}_by_data_dir"] = per_dir
    non_keyword = np.isin(data.labels, [labels.index(label) for label in NON_KEYWORD_LABELS if label in labels])
    if non_keyword.any():
        rejected = np.isin(predictions, [labels.index(label) for label in NON_KEYWORD_LABELS])
        figures[f"{split}_keywords"] = round(float(correct[~non_keyword].mean()), 4)
        figures[f"{split}_keywords_rejected"] = round(float(rejected[~non_keyword].mean()), 4)
        figures[f"{split}_non_keywords_rejected"] = round(float(rejected[non_keyword].mean()), 4)
    return figures
