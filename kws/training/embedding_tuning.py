"""Tuning the top of the pretrained speech embedding together with the head.

A head on the frozen embedding tops out near the network Big it was meant to replace
(:mod:`kws.training.embedding_replica` has the figures); tuning the embedding's top
convolutions with the head is what moves it. Two cores cannot afford the whole embedding in
every training step, and need not run it: the layers below the first tuned convolution
stay frozen, so their output for a clip never changes. This module

- computes that frozen bottom once per clip with onnxruntime on a cut of the graph
  (:func:`~kws.training.embedding_replica.cut_graph`) and caches it by content
  (:mod:`kws.training.content_cache`), as whole embeddings are cached (:meth:`FrozenBottom.cached`);
- builds the model that trains: the bottom's output, the replica's top layers, the head
  (:func:`tuned_model`);
- builds the model that ships: the embedding's mel windows, the *whole* replica with the
  tuned weights copied in, the head (:func:`whole_model`). It is one float TFLite file, so the
  service runs only the mel graph and this model, and its metadata says so
  (``front_end.embedding_in_model``).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from kws.frontend.embedding import EMBEDDING_INPUT, FrontEnd, mel_windows, open_session
from kws.frontend.spec import EMBEDDING_SIZE, NUM_MEL_BINS
from kws.training.content_cache import cached_batches
from kws.training.embedding_replica import Step, build_layers, cut_graph, cut_point, read_graph

#: Clips per cache file and per call of the bottom graph.
BATCH = 64
#: Name shared by the replica's layers in both models, so the tuned weights are found by name.
PREFIX = "embedding"


class FrozenBottom:
    """The embedding's layers below convolution ``first_tuned_conv``, under onnxruntime, with a cache.

    Its output per clip is ``(windows, height, width, channels)`` (channels last, as Keras reads
    it), stored as float16: the tuned layers start from a LeakyReLU's output of magnitude a few
    units, where float16's three significant digits lose nothing the training can see.
    """

    def __init__(self, front_end: FrontEnd, first_tuned_conv: int, threads: int = 2) -> None:
        self.front_end = front_end
        self.first_tuned_conv = first_tuned_conv
        self.steps = read_graph(front_end.files.embedding)
        self.start = cut_point(self.steps, first_tuned_conv)
        with tempfile.TemporaryDirectory() as folder:
            path, self.cut_name = cut_graph(front_end.files.embedding, self.steps, first_tuned_conv,
                                            Path(folder) / "bottom.onnx")
            self._session = open_session(path, threads)
        self._key = json.dumps({"front_end": front_end.spec.to_dict(), "cut": self.cut_name,
                                "first_tuned_conv": first_tuned_conv}, sort_keys=True).encode()

    def run(self, clips: np.ndarray) -> np.ndarray:
        """int16 clips to the bottom's output, ``(clips, windows, height, width, channels)`` float32."""
        spec = self.front_end.spec
        windows = np.concatenate([mel_windows(self.front_end.mel(clip), spec) for clip in clips])
        output = self._session.run(None, {EMBEDDING_INPUT: windows})[0].transpose(0, 2, 3, 1)
        return output.reshape(len(clips), spec.num_windows, *output.shape[1:])

    def cached(self, clips: np.ndarray, desc: str) -> np.ndarray:
        """:meth:`run` of every int16 clip (the cache refuses any other dtype), from the cache where it has them
        (float16), else computed and stored."""
        return cached_batches(clips, self._key, lambda batch: self.run(batch).astype(np.float16), desc,
                              "embedding_bottoms", BATCH)


def _reshape(shape: tuple[int, ...], name: str) -> Any:
    """A Keras layer reshaping to ``shape`` including the batch axis (windows of many clips in one batch)."""
    import tensorflow as tf
    from tf_keras import layers

    return layers.Lambda(lambda tensor: tf.reshape(tensor, shape), name=name)


def tuned_model(bottom_shape: tuple[int, ...], steps: list[Step], start: int, head: Any) -> Any:
    """What trains: one clip's frozen-bottom output ``(windows, h, w, c)`` through the replica's layers from
    ``steps[start]`` (initialised with the graph's weights) and ``head`` to the probabilities."""
    import tf_keras as keras

    windows = bottom_shape[0]
    inputs = keras.Input(shape=bottom_shape, name="bottom")
    x = _reshape((-1, *bottom_shape[1:]), "windows")(inputs)
    x = build_layers(x, steps, start, prefix=PREFIX)
    x = _reshape((-1, windows, EMBEDDING_SIZE), "embeddings")(x)
    return keras.Model(inputs, head(x), name="tuned_embedding")


def embeddings_of(model: Any, inputs: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """The embeddings ``(clips, windows, 96)`` that ``model`` (:func:`tuned_model` or :func:`whole_model`)
    hands its head, for e.g. the head's standardisation statistics."""
    import tf_keras as keras

    inner = keras.Model(model.input, model.get_layer("embeddings").output)
    return inner.predict(inputs, batch_size=batch_size, verbose=0)


def whole_model(spec: Any, steps: list[Step], tuned: Any, head: Any) -> Any:
    """What ships: the mel windows ``(windows, 76, 32, 1)`` through the whole replica, with every layer
    that ``tuned`` trained holding its tuned weights, then ``head``."""
    import tf_keras as keras

    windows = spec.num_windows
    inputs = keras.Input(shape=(windows, spec.window_frames, NUM_MEL_BINS, 1), name="mel_windows")
    x = _reshape((-1, spec.window_frames, NUM_MEL_BINS, 1), "windows")(inputs)
    x = build_layers(x, steps, 0, prefix=PREFIX)
    x = _reshape((-1, windows, EMBEDDING_SIZE), "embeddings")(x)
    model = keras.Model(inputs, head(x), name="embedding_and_head")
    tuned_layers = {layer.name: layer for layer in tuned.layers if layer.weights and layer is not head}
    copied = 0
    for layer in model.layers:
        if layer.name in tuned_layers:
            layer.set_weights(tuned_layers[layer.name].get_weights())
            copied += 1
    if copied != len(tuned_layers):
        raise RuntimeError(f"copied {copied} of the {len(tuned_layers)} tuned layers into the shipped model")
    return model
