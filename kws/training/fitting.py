"""Keras training: the loss, the fit loop, gradual magnitude pruning and the callbacks."""

from __future__ import annotations

import logging

import numpy as np
from tqdm import tqdm

from kws.training.distillation import distillation_loss, packed_accuracy
from kws.training.recipes import Recipe

log = logging.getLogger(__name__)


def sparse_smoothed_loss(num_labels: int, smoothing: float):
    """Cross-entropy on integer labels with label smoothing (Keras 2 lacks a sparse variant)."""
    import tensorflow as tf

    def loss(y_true, y_pred):
        one_hot = tf.one_hot(tf.cast(tf.reshape(y_true, [-1]), tf.int32), num_labels)
        smoothed = one_hot * (1.0 - smoothing) + smoothing / num_labels
        return tf.keras.losses.categorical_crossentropy(smoothed, y_pred)

    return loss


def fit(model, recipe: Recipe, train, val_x, val_y, weights, epochs: int, learning_rate: float, callbacks=()):
    import tf_keras as keras

    steps = len(train) * epochs
    schedule = keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps), alpha=0.02)
    num_labels = model.output_shape[-1]
    if recipe.distillation is not None:  # targets are packed: label, then the teacher's probabilities
        loss = distillation_loss(num_labels, recipe.label_smoothing, recipe.distillation.weight)
        accuracy = packed_accuracy()
    else:
        loss = sparse_smoothed_loss(num_labels, recipe.label_smoothing)
        accuracy = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
    model.compile(optimizer=keras.optimizers.Adam(schedule), loss=loss, metrics=[accuracy])
    return model.fit(
        train,
        validation_data=(val_x, val_y),
        epochs=epochs,
        class_weight=weights,
        callbacks=[epoch_progress_bar(epochs), *callbacks],
        verbose=0,
    )


def train_float_model(recipe: Recipe, train, val_x, val_y, weights, num_labels: int, normalization):
    """Train to the best validation accuracy (early stopping restores those weights)."""
    import tf_keras as keras

    from kws.training.architectures import build_model

    model = build_model(recipe.architecture, recipe.features.shape, num_labels, normalization, **recipe.options)
    log.info("%s: %d parameters", recipe.architecture, model.count_params())
    stop = keras.callbacks.EarlyStopping(monitor="val_accuracy", patience=recipe.patience, mode="max")
    best = keep_best_weights()
    history = fit(model, recipe, train, val_x, val_y, weights, recipe.epochs, recipe.learning_rate, [stop, best])
    return model, history


def prune(model, recipe: Recipe, train, val_x, val_y, weights):
    """Gradual magnitude pruning (tfmot) to the recipe's sparsity, fine-tuned, then stripped.

    The sparsity ramps up over the first 60 % of the fine-tuning epochs; the rest
    let the network recover at full sparsity, and the best of those epochs (on
    validation) is kept. tfmot's ``PolynomialDecay`` updates the mask only every
    ``frequency`` steps (default 100), which would leave a short fine-tune barely
    pruned, so it is updated four times an epoch here.
    """
    import tensorflow_model_optimization as tfmot
    import tf_keras as keras

    steps_per_epoch = len(train)
    ramp_epochs = max(1, int(recipe.prune_epochs * 0.6))
    schedule = tfmot.sparsity.keras.PolynomialDecay(
        initial_sparsity=0.0,
        final_sparsity=recipe.prune_sparsity,
        begin_step=0,
        end_step=steps_per_epoch * ramp_epochs,
        frequency=max(1, steps_per_epoch // 4),
    )
    prunable = (keras.layers.Conv2D, keras.layers.DepthwiseConv2D, keras.layers.Dense)

    def wrap(layer):  # weight layers only (tfmot refuses Normalization); trained weights are kept
        if isinstance(layer, prunable):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, pruning_schedule=schedule)
        return layer

    pruned = keras.models.clone_model(model, clone_function=wrap)
    fit(
        pruned,
        recipe,
        train,
        val_x,
        val_y,
        weights,
        recipe.prune_epochs,
        recipe.learning_rate / 3,
        [tfmot.sparsity.keras.UpdatePruningStep(), keep_best_weights(from_epoch=ramp_epochs)],
    )
    return tfmot.sparsity.keras.strip_pruning(pruned)


def weight_sparsity(model) -> float:
    """Fraction of exactly-zero weights in the convolution and dense kernels."""
    kernels = [w for layer in model.layers for w in layer.get_weights() if w.ndim >= 2]
    total = sum(k.size for k in kernels)
    return float(sum(np.count_nonzero(k == 0) for k in kernels) / max(total, 1))


def keep_best_weights(from_epoch: int = 0):
    """A Keras callback that ends training with the weights of the best validation epoch.

    Keras' own ``restore_best_weights`` only acts when early stopping fires; a run
    that uses all its epochs would otherwise end on its last, not its best, weights.
    Only epochs from ``from_epoch`` (0-based) on compete, e.g. those at full sparsity.
    """
    import tf_keras as keras

    class KeepBestWeights(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.best_accuracy, self.best_weights = -1.0, None

        def on_epoch_end(self, epoch, logs=None):
            accuracy = (logs or {}).get("val_accuracy", -1.0)
            if epoch >= from_epoch and accuracy > self.best_accuracy:
                self.best_accuracy, self.best_weights = accuracy, self.model.get_weights()

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return KeepBestWeights()


def epoch_progress_bar(epochs: int):
    """A Keras callback showing one tqdm bar over the epochs, with loss and validation accuracy."""
    import tf_keras as keras

    class EpochProgressBar(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.bar = tqdm(total=epochs, desc="epochs", unit="epoch", leave=False)

        def on_epoch_end(self, epoch, logs=None):
            logs = logs or {}
            self.bar.set_postfix(loss=f"{logs.get('loss', 0):.3f}", val_acc=f"{logs.get('val_accuracy', 0):.4f}")
            self.bar.update(1)

        def on_train_end(self, logs=None):
            self.bar.close()

    return EpochProgressBar()
