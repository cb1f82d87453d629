"""Keyword-spotting network architectures (training side; needs TensorFlow).

Three families, each scaled by a width multiplier so one recipe spans a Pi-sized
Little model and a server-sized Big one:

* ``cnn``: a plain CNN (three 3x3 convolutions with max pooling, global pooling).
* ``ds_cnn``: Hello Edge's depthwise-separable CNN (Zhang et al., 2017), the usual
  choice for microcontrollers: most of its work is cheap 1x1 convolutions.
* ``res_cnn``: a narrow 2-D residual CNN after Tang & Lin's res8 (2018): average
  pooling first, then residual 3x3 blocks.
* ``tc_resnet``: a temporal-convolution ResNet (Choi et al., 2019) that treats the
  feature bins as channels and convolves over time only; fast and accurate, and
  different enough from the other two to make a useful ensemble member.

Every model takes features of shape (frames, bins), standardises them with the
per-bin mean and variance of its training set (constants baked into the graph, so
no client has to know them), and ends in a softmax, so its outputs are
probabilities in the label order of its metadata. Only layers that
TFLite's builtin ops cover (and that ``tflite-runtime`` 2.14 runs) are used.
"""

from __future__ import annotations

from collections.abc import Callable

import tf_keras as keras  # kws.training set TF_USE_LEGACY_KERAS before this import
from tf_keras import layers


def _batch_norm(name: str):
    """Batch norm with momentum 0.9: with ~70 steps an epoch, Keras' 0.99 leaves the
    moving statistics (used at inference) far from the batch ones for many epochs."""
    return layers.BatchNormalization(momentum=0.9, name=name)


def _conv_bn_relu(x, filters: int, kernel, strides=(1, 1), name: str = ""):
    x = layers.Conv2D(filters, kernel, strides=strides, padding="same", use_bias=False, name=f"{name}conv")(x)
    x = _batch_norm(name=f"{name}bn")(x)
    return layers.ReLU(name=f"{name}relu")(x)


def _classifier_head(x, num_labels: int, dropout: float):
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_labels, name="logits")(x)
    return layers.Softmax(name="probabilities")(x)


def build_cnn(
    input_shape, num_labels: int, normalization, width: float = 1.0, dropout: float = 0.2, **_
) -> keras.Model:
    """A plain VGG-style CNN: three 3x3 conv blocks (32, 64, 128 x width filters), 2x2 max
    pooling between them.

    The course's CNN strided its very first convolution and then stayed at that
    resolution; on our data that version underfit (training loss stuck near 1.2), so
    this one keeps full resolution for the first layer and pools instead.
    """
    filters = [max(8, int(round(base * width))) for base in (32, 64, 128)]
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1), name="add_channel")(_standardize(inputs, normalization))
    for index, count in enumerate(filters, start=1):
        if index > 1:
            x = layers.MaxPooling2D((2, 2), padding="same", name=f"block{index}_pool")(x)
        x = _conv_bn_relu(x, count, (3, 3), name=f"block{index}_")
    return keras.Model(inputs, _classifier_head(x, num_labels, dropout), name="cnn")


def build_ds_cnn(
    input_shape,
    num_labels: int,
    normalization,
    width: float = 1.0,
    blocks: int = 4,
    dropout: float = 0.2,
    first_kernel=(10, 4),
    **_,
) -> keras.Model:
    """Hello Edge DS-CNN: a strided conv, then ``blocks`` depthwise + 1x1 pairs (64 x width channels)."""
    filters = max(8, int(round(64 * width)))
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1), name="add_channel")(_standardize(inputs, normalization))
    x = _conv_bn_relu(x, filters, tuple(first_kernel), (2, 2), name="stem_")
    for index in range(1, blocks + 1):
        x = layers.DepthwiseConv2D((3, 3), padding="same", use_bias=False, name=f"ds{index}_depthwise")(x)
        x = _batch_norm(name=f"ds{index}_depthwise_bn")(x)
        x = layers.ReLU(name=f"ds{index}_depthwise_relu")(x)
        x = _conv_bn_relu(x, filters, (1, 1), name=f"ds{index}_pointwise_")
    return keras.Model(inputs, _classifier_head(x, num_labels, dropout), name="ds_cnn")


def build_tc_resnet(
    input_shape, num_labels: int, normalization, width: float = 1.0, blocks: int = 3, dropout: float = 0.2, **_
) -> keras.Model:
    """TC-ResNet: bins become channels; 9x1 temporal convolutions with strided residual blocks."""
    frames, bins = input_shape
    stages = [max(8, int(round(c * width))) for c in (24, 32, 48, 64, 80)[:blocks]]
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((frames, 1, bins), name="bins_as_channels")(_standardize(inputs, normalization))
    x = layers.Conv2D(max(8, int(round(16 * width))), (3, 1), padding="same", use_bias=False, name="stem_conv")(x)
    for index, filters in enumerate(stages, start=1):
        shortcut = _conv_bn_relu(x, filters, (1, 1), (2, 1), name=f"res{index}_shortcut_")
        y = _conv_bn_relu(x, filters, (9, 1), (2, 1), name=f"res{index}_a_")
        y = layers.Conv2D(filters, (9, 1), padding="same", use_bias=False, name=f"res{index}_b_conv")(y)
        y = _batch_norm(name=f"res{index}_b_bn")(y)
        x = layers.ReLU(name=f"res{index}_out")(layers.Add(name=f"res{index}_add")([y, shortcut]))
    return keras.Model(inputs, _classifier_head(x, num_labels, dropout), name="tc_resnet")


def build_res_cnn(
    input_shape, num_labels: int, normalization, width: float = 1.0, blocks: int = 3, dropout: float = 0.2, **_
) -> keras.Model:
    """res8-style: 3x3 conv, 4x3 average pooling, then ``blocks`` residual pairs of 3x3 convs."""
    filters = max(8, int(round(32 * width)))
    inputs = keras.Input(shape=input_shape, name="features")
    x = layers.Reshape((*input_shape, 1), name="add_channel")(_standardize(inputs, normalization))
    x = _conv_bn_relu(x, filters, (3, 3), name="stem_")
    x = layers.AveragePooling2D((4, 3), name="stem_pool")(x)
    for index in range(1, blocks + 1):
        y = _conv_bn_relu(x, filters, (3, 3), name=f"res{index}_a_")
        y = layers.Conv2D(filters, (3, 3), padding="same", use_bias=False, name=f"res{index}_b_conv")(y)
        y = _batch_norm(name=f"res{index}_b_bn")(y)
        x = layers.ReLU(name=f"res{index}_out")(layers.Add(name=f"res{index}_add")([y, x]))
    return keras.Model(inputs, _classifier_head(x, num_labels, dropout), name="res_cnn")


def build_embedding_head(input_shape, num_labels: int, normalization, hidden: int = 0, dropout: float = 0.3):
    """A head over the pretrained front end's embeddings, (windows, 96): each embedding dimension
    standardised, pooled over the windows as mean and max (192 values), then ``hidden`` ReLU units
    (0: none, a linear head, the floor any head must beat) and the softmax."""
    inputs = keras.Input(shape=input_shape, name="embeddings")
    x = _standardize(inputs, normalization)
    x = layers.Concatenate(name="pooled")([
        layers.GlobalAveragePooling1D(name="mean")(x), layers.GlobalMaxPooling1D(name="max")(x),
    ])
    if hidden:
        x = layers.Dropout(dropout, name="dropout_in")(x)
        x = layers.Dense(hidden, activation="relu", name="hidden")(x)
    if dropout:
        x = layers.Dropout(dropout, name="dropout")(x)
    x = layers.Dense(num_labels, name="logits")(x)
    return keras.Model(inputs, layers.Softmax(name="probabilities")(x), name="embedding_head")


def _standardize(x, normalization):
    """Per-bin standardisation with fixed training-set statistics, as a graph layer.

    ``None`` leaves the input as it is: the caller standardises (int8 models, see kws.training.pipeline).
    """
    if normalization is None:
        return x
    mean, variance = normalization
    return layers.Normalization(axis=-1, mean=mean, variance=variance, name="standardize")(x)


#: The one registry of architectures: a recipe names one of these keys.
ARCHITECTURES: dict[str, Callable[..., keras.Model]] = {
    "cnn": build_cnn,
    "ds_cnn": build_ds_cnn,
    "tc_resnet": build_tc_resnet,
    "res_cnn": build_res_cnn,
    "embedding_head": build_embedding_head,
}


def build_model(architecture: str, input_shape, num_labels: int, normalization, **options) -> keras.Model:
    """Build one of :data:`ARCHITECTURES` with its options (width, blocks, dropout, ...).

    ``normalization`` is ``(mean, variance)`` per feature bin, from the training set,
    or ``None`` for a model that is given standardised features.
    """
    try:
        builder = ARCHITECTURES[architecture]
    except KeyError:
        raise ValueError(f"unknown architecture {architecture!r}; choose from {sorted(ARCHITECTURES)}") from None
    return builder(tuple(input_shape), num_labels, normalization, **options)
