"""The pretrained speech embedding as Keras layers, so that training can tune its top blocks.

A head on the frozen embedding (:mod:`kws.training.embedding_head`) tops out near the
accuracy of the network Big it was meant to replace: measured on the project's validation
speakers, 0.927 of all clips right with the head alone. Tuning the embedding's top
convolutions together with the head is the lever that moves it (0.934 after tuning the top
five of twenty on the same clips, 0.98 of the test keywords instead of 0.973). Training on two
cores cannot afford to run the whole embedding every step, and does not need to: the frozen
bottom's output for a clip never changes, so it is computed once by onnxruntime on a cut of
the graph (:func:`cut_graph`) and cached, and only the layers above the cut run in Keras.

The graph (``embedding_model.onnx`` of the pinned front end) is a plain stack: convolutions
with batch normalisation folded in, LeakyReLU, an elementwise floor, max-pools, and a reshape
at each end. :func:`read_graph` turns exactly those operations into :class:`Step` records
and refuses any other, so a front end that changes shape fails here, by name, rather than
training a different network silently. :func:`build_layers` applies the steps to a Keras
tensor in the channels-last layout TensorFlow uses; the tests hold the replica equal to the
ONNX graph, whole and from a cut.

Reading the graph needs the ``onnx`` package (training only, never on the Pi or the server).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kws.errors import KwsError

#: The operations the embedding graph is made of; anything else is refused.
SUPPORTED = ("Reshape", "Conv", "LeakyRelu", "Max", "MaxPool")


class ReplicaError(KwsError, ValueError):
    """The ONNX graph holds something this replica does not translate."""


@dataclass(frozen=True)
class Step:
    """One operation of the graph in order, with what Keras needs to repeat it.

    ``input_name`` is the ONNX tensor the step reads: the name to cut the graph at so that
    onnxruntime computes everything before this step.
    """

    op: str
    input_name: str
    kernel: np.ndarray | None = None  # Conv: (height, width, in, out), channels last
    bias: np.ndarray | None = None  # Conv: (out,) or None
    pad_width: tuple[int, int] = (0, 0)  # Conv: zeros left and right of the mel-band axis
    pad_height: tuple[int, int] = (0, 0)  # Conv: zeros before and after on the time axis
    alpha: float = 0.0  # LeakyRelu
    floor: float = 0.0  # Max with a constant
    pool: tuple[int, int] = (1, 1)  # MaxPool kernel
    strides: tuple[int, int] = (1, 1)  # MaxPool strides

    @property
    def is_conv(self) -> bool:
        return self.op == "Conv"


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as error:
        raise ReplicaError("the onnx package is not installed; fix: pip install -r requirements.txt") from error
    return onnx


def read_graph(path: Path) -> list[Step]:
    """The embedding graph's operations in order (the reshapes at either end left out: Keras takes
    windows as (76, 32, 1) and gives 96 values per window already)."""
    onnx = _onnx()
    model = onnx.load(str(path))
    constants = {item.name: onnx.numpy_helper.to_array(item) for item in model.graph.initializer}
    steps: list[Step] = []
    for node in model.graph.node:
        attributes = {item.name: onnx.helper.get_attribute_value(item) for item in node.attribute}
        if node.op_type not in SUPPORTED:
            raise ReplicaError(f"{path.name}: operation {node.op_type} ({node.name}) is not one the replica translates")
        if node.op_type == "Reshape":
            continue
        if node.op_type == "Conv":
            steps.append(_conv_step(node, attributes, constants, path))
        elif node.op_type == "LeakyRelu":
            steps.append(Step("LeakyRelu", node.input[0], alpha=float(attributes.get("alpha", 0.01))))
        elif node.op_type == "Max":
            floor = constants.get(node.input[1])
            if floor is None or floor.size != 1:
                raise ReplicaError(f"{path.name}: Max {node.name} is not with one constant")
            steps.append(Step("Max", node.input[0], floor=float(floor.reshape(()))))
        else:  # MaxPool
            if any(attributes.get("pads", [0, 0, 0, 0])):
                raise ReplicaError(f"{path.name}: padded MaxPool {node.name} is not translated")
            kernel = tuple(attributes["kernel_shape"])
            steps.append(Step("MaxPool", node.input[0], pool=kernel, strides=tuple(attributes.get("strides", kernel))))
    return steps


def _conv_step(node: Any, attributes: dict[str, Any], constants: dict[str, np.ndarray], path: Path) -> Step:
    if attributes.get("group", 1) != 1 or any(value != 1 for value in attributes.get("strides", [1, 1])) \
            or any(value != 1 for value in attributes.get("dilations", [1, 1])):
        raise ReplicaError(f"{path.name}: Conv {node.name} is grouped, strided or dilated")
    if attributes.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise ReplicaError(f"{path.name}: Conv {node.name} uses auto_pad")
    weights = constants[node.input[1]]  # (out, in, height, width)
    bias = constants[node.input[2]] if len(node.input) > 2 else None
    top, left, bottom, right = attributes.get("pads", [0, 0, 0, 0])
    return Step("Conv", node.input[0], kernel=weights.transpose(2, 3, 1, 0).copy(), bias=bias,
                pad_height=(int(top), int(bottom)), pad_width=(int(left), int(right)))


def conv_indices(steps: list[Step]) -> list[int]:
    """Where each convolution sits among the steps (the embedding has 20)."""
    return [index for index, step in enumerate(steps) if step.is_conv]


def cut_point(steps: list[Step], first_tuned_conv: int) -> int:
    """The step index of convolution number ``first_tuned_conv`` (0-based): the layers from here are tuned."""
    convs = conv_indices(steps)
    if not 0 <= first_tuned_conv < len(convs):
        raise ReplicaError(f"first_tuned_conv must be 0 to {len(convs) - 1}, got {first_tuned_conv}")
    return convs[first_tuned_conv]


def build_layers(x: Any, steps: list[Step], start: int = 0, trainable: bool = True, prefix: str = "embedding") -> Any:
    """Apply ``steps[start:]`` to the Keras tensor ``x`` (channels last) with the graph's weights;
    returns the (batch, 96) embeddings."""
    import tensorflow as tf
    import tf_keras as keras
    from tf_keras import layers

    for index, step in enumerate(steps[start:], start=start):
        name = f"{prefix}_{index:02d}_{step.op.lower()}"
        if step.op == "Conv":
            if any(step.pad_height) or any(step.pad_width):
                x = layers.ZeroPadding2D((step.pad_height, step.pad_width), name=f"{name}_pad")(x)
            conv = layers.Conv2D(step.kernel.shape[3], step.kernel.shape[:2], use_bias=step.bias is not None,
                                 trainable=trainable, name=name)
            x = conv(x)
            conv.set_weights([step.kernel] + ([step.bias] if step.bias is not None else []))
        elif step.op == "LeakyRelu":
            x = layers.LeakyReLU(step.alpha, name=name)(x)
        elif step.op == "Max":
            x = layers.Lambda(lambda tensor, floor=step.floor: tf.maximum(tensor, floor), name=name)(x)
        else:
            x = layers.MaxPooling2D(step.pool, strides=step.strides, name=name)(x)
    return keras.layers.Flatten(name=f"{prefix}_values")(x)


def cut_graph(path: Path, steps: list[Step], first_tuned_conv: int, output: Path) -> tuple[Path, str]:
    """Write the part of the graph below convolution ``first_tuned_conv`` as its own ONNX file, for
    onnxruntime to compute the frozen bottom once per clip; returns the file and its output's name.

    Its output is channels first, (windows, channels, height, width): transpose it to (0, 2, 3, 1)
    before :func:`build_layers` reads it.
    """
    from kws.frontend.embedding import EMBEDDING_INPUT

    _onnx()  # a missing onnx is a ReplicaError with the fix, as in read_graph
    from onnx.utils import extract_model

    cut_name = steps[cut_point(steps, first_tuned_conv)].input_name
    output.parent.mkdir(parents=True, exist_ok=True)
    extract_model(str(path), str(output), [EMBEDDING_INPUT], [cut_name])
    return output, cut_name
