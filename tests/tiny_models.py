"""Tiny stand-in models for tests that need *some* models but not good ones.

The MQTT reliability tests check delivery (every clip answered, none lost across a
broker restart), not accuracy, so when the shipped ensemble is not in ``models/``
yet they run against these: one dense layer with fixed random weights, converted
to TFLite and described by metadata in the shipped format, so ``load_model``
treats them like the real thing. TensorFlow is needed to build them (tests
only); they are cached between sessions.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

import dataset
from preprocessing import FeatureConfig

#: Small features so the stand-ins are small: 24 frames x 10 MFCCs.
TINY_FEATURES = FeatureConfig(frame_length=640, frame_step=640, num_mel_bins=20, num_coefficients=10)


def build_tiny_model(directory: Path, name: str, seed: int, config: FeatureConfig = TINY_FEATURES) -> Path:
    """Write ``<directory>/<name>.tflite`` and ``.json``; returns the model stem."""
    import tensorflow as tf  # tests only: the shipped code never imports TensorFlow

    labels = list(dataset.DEFAULT_LABELS)
    frames, features = config.shape
    weights = tf.constant(np.random.default_rng(seed).normal(0, 0.05, (frames * features, len(labels))), tf.float32)

    @tf.function(input_signature=[tf.TensorSpec([1, frames, features], tf.float32)])
    def classify(batch: tf.Tensor) -> tf.Tensor:
        return tf.nn.softmax(tf.reshape(batch, [1, -1]) @ weights)

    converter = tf.lite.TFLiteConverter.from_concrete_functions([classify.get_concrete_function()], classify)
    blob = converter.convert()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.tflite").write_bytes(blob)
    metadata = {
        "name": name,
        "description": "test stand-in: random dense layer",
        "labels": labels,
        "feature_config": config.to_dict(),
        "input_shape": [frames, features],
        "files": {"tflite": f"{name}.tflite"},
        "sha256": {"tflite": hashlib.sha256(blob).hexdigest()},
    }
    (directory / f"{name}.json").write_text(json.dumps(metadata, indent=2) + "\n")
    return directory / name


def tiny_ensemble(directory: Path, count: int = 4) -> list[Path]:
    """``count`` stand-ins named like the shipped ensemble, built once per cache directory."""
    stems = [directory / f"ensemble_{index}" for index in range(1, count + 1)]
    for seed, stem in enumerate(stems):
        if not stem.with_suffix(".json").is_file():
            build_tiny_model(directory, stem.name, seed)
    return stems
