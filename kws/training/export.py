"""Export: TFLite conversion (int8 for the Pi), stripped names, zlib, and measuring the result."""

from __future__ import annotations

import numpy as np

from kws.model.runtime import TfliteRunner
from kws.training.recipes import Recipe


def convert(model, recipe: Recipe, representative: np.ndarray) -> bytes:
    """TFLite flatbuffer; int8 recipes get full-integer quantization with float in/out.

    Per-channel quantization of Dense layers makes TF >= 2.16 emit FULLY_CONNECTED
    version 12, which ``tflite-runtime`` 2.14 (the only interpreter with 32-bit Pi
    wheels) rejects; per-tensor Dense weights keep it at a version 2.14 runs.
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if recipe.quantization == "int8":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]

        def samples():
            for row in representative:
                yield [row[np.newaxis].astype(np.float32)]

        converter.representative_dataset = samples
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter._experimental_disable_per_channel_quantization_for_dense_layers = True
    elif recipe.quantization != "float32":
        raise ValueError(f"unknown quantization {recipe.quantization!r}")
    return strip_strings(converter.convert())


def strip_strings(model_bytes: bytes) -> bytes:
    """Drop tensor and signature names from a flatbuffer: nothing reads them, the Pi stores them.

    Clients find the input and output by index (``get_input_details()[0]``), so the
    names are dead weight, about a kilobyte in the Little model's 20 KB budget.
    """
    from tensorflow.lite.tools import flatbuffer_utils

    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(model_bytes))
    flatbuffer_utils.strip_strings(model)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def compress(model_bytes: bytes) -> bytes:
    from zlib_ng import zlib_ng

    return zlib_ng.compress(model_bytes, 9)


def tflite_predictions(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Predicted label index per clip, from the exported flatbuffer itself, run by the
    same interpreter and invoke loop as the clients (so the metadata's accuracy is what they get)."""
    runner = TfliteRunner(model_bytes)
    return np.array([int(np.argmax(runner.invoke(row))) for row in features], dtype=np.int64)
