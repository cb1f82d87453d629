"""A service model whose TFLite file holds the pretrained speech embedding itself, built for the tests.

The recipe that tunes the embedding's top convolutions with the head exports one float TFLite
file with the whole network in it (``"embedding_in_model": true`` in its front-end block). The
tests need such a file without training one, so this builds the same shape of model from the
installed embedding graph (:mod:`kws.training.embedding_replica`) with an untrained, seeded head:
the mel windows (9, 76, 32, 1) in, the embedding of each window, their mean, a softmax over the
ten labels out. What is checked is the plumbing and the numbers, not accuracy.

Built once a session (``tuned_embedding_model`` in ``tests/conftest.py``): Keras and the TFLite
converter take tens of seconds on two cores. Skips, saying why, where TensorFlow, onnx,
onnxruntime or the front end's package is missing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from kws.data.clips import DEFAULT_LABELS, NON_KEYWORD_LABELS
from kws.frontend.files import locate_front_end
from kws.frontend.spec import EMBEDDING_SIZE, FrontEndError, FrontEndSpec
from kws.model.metadata import build_metadata, write_metadata

log = logging.getLogger(__name__)

NAME = "tuned"
LABELS = (*DEFAULT_LABELS, *NON_KEYWORD_LABELS)
#: The head's seed: the same weights every session.
SEED = 18


@dataclass(frozen=True)
class TunedEmbeddingModel:
    """The written model and what the tests compare it with."""

    stem: Path
    """``<folder>/tuned``: ``load_model(stem)`` loads it (``tuned.tflite`` and ``tuned.json`` beside it)."""
    spec: FrontEndSpec
    """Its front-end block: the installed front end, ``embedding_in_model=True``."""
    keras_model: Any
    """The float Keras model the TFLite file was converted from: mel windows (batch, 9, 76, 32, 1) in."""
    head_kernel: np.ndarray
    """The head's Dense weights (96, 10) and bias (10,): softmax(mean of the embeddings @ kernel + bias)."""
    head_bias: np.ndarray

    def head(self, embeddings: np.ndarray) -> np.ndarray:
        """The head alone on one clip's (9, 96) embeddings, in numpy: what the file must give when its
        embedding part computes what the ONNX graph does."""
        logits = np.asarray(embeddings, np.float64).mean(axis=0) @ self.head_kernel + self.head_bias
        exps = np.exp(logits - logits.max())
        return exps / exps.sum()


def build_tuned_embedding_model(folder: Path) -> TunedEmbeddingModel:
    """Write ``folder/tuned.tflite`` and ``folder/tuned.json``: the whole embedding network from the
    installed graph, then a seeded head, as one float TFLite file with its metadata."""
    for module in ("tensorflow", "tf_keras", "onnx", "onnxruntime"):
        pytest.importorskip(module, reason=f"building a model that holds the embedding needs {module}")
    import tensorflow as tf
    import tf_keras as keras
    from tf_keras import layers

    from kws.training.embedding_replica import build_layers, read_graph

    spec = FrontEndSpec(embedding_in_model=True)
    try:
        files = locate_front_end(spec)
    except FrontEndError as error:
        pytest.skip(f"the front end is not installed here ({error})")
    windows, frames, bins, _ = spec.model_input_shape

    tf.random.set_seed(SEED)
    inputs = keras.Input(spec.model_input_shape, name="mel_windows")
    each_window = layers.Lambda(lambda x: tf.reshape(x, (-1, frames, bins, 1)), name="windows")(inputs)
    embeddings = build_layers(each_window, read_graph(files.embedding), 0)
    per_clip = layers.Lambda(lambda x: tf.reshape(x, (-1, windows, EMBEDDING_SIZE)), name="clips")(embeddings)
    pooled = layers.GlobalAveragePooling1D(name="mean")(per_clip)
    dense = layers.Dense(len(LABELS), activation="softmax", name="head",
                         kernel_initializer=keras.initializers.GlorotUniform(seed=SEED))
    model = keras.Model(inputs, dense(pooled), name=NAME)
    kernel, bias = dense.get_weights()

    model_bytes = tf.lite.TFLiteConverter.from_keras_model(model).convert()  # plain float, as the recipe exports
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{NAME}.tflite").write_bytes(model_bytes)
    metadata = build_metadata(
        name=NAME, description="test model: the whole pretrained embedding and a seeded, untrained head",
        labels=list(LABELS), feature_config=None, input_standardization=None, front_end=spec,
        architecture={"type": "embedding_in_model", "parameters": int(model.count_params())},
        training={"seed": SEED, "epochs": 0}, accuracy={}, blobs={"tflite": (f"{NAME}.tflite", model_bytes)},
    )
    write_metadata(folder, metadata)
    log.info("wrote %s (%d bytes) holding the embedding", folder / f"{NAME}.tflite", len(model_bytes))
    return TunedEmbeddingModel(folder / NAME, spec, model, kernel.astype(np.float64), bias.astype(np.float64))
