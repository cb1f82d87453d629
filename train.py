"""Train, prune, quantize and export the keyword-spotting models.

Each shipped model is a named *recipe* (architecture, FeatureConfig, training and
compression settings) in :data:`RECIPES`, so ``python train.py --recipe little``
rebuilds it and the README's table can say exactly how every model was made::

    python train.py --all --data-dir ../shared/data/speech_commands \\
                          --data-dir ../shared/data/speech_commands_extra

Every ``--data-dir`` is split by speaker (see ``dataset.partition_of``): models
train on the 'train' speakers of all folders, stop early on 'validation', and
the 'test' speakers are only ever measured, never tuned to.

For each recipe this writes ``models/<name>.tflite`` (and ``.tflite.zlib`` when
the recipe compresses) plus ``models/<name>.json``: the metadata every client
reads (labels, FeatureConfig, architecture, training parameters, accuracy,
sizes, sha256). TensorFlow is needed here and nowhere else.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")  # tfmot needs Keras 2; must precede TF's import
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import functools  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

import dataset  # noqa: E402
from augmentation import AugmentConfig, augment_audio, mask_features  # noqa: E402
from preprocessing import (  # noqa: E402
    CLIP_SAMPLE_RATE,
    FeatureConfig,
    InputStandardization,
    features_from_prepared,
    prepare_audio,
)

log = logging.getLogger("train")

#: The Little model's features: the seeds' framing (40 ms frames, 20 ms hop) and 40 mel
#: bins, but up to 7.6 kHz rather than 4 kHz (the hiss of "stop" and "yes" lies above
#: 4 kHz) and 16 MFCCs rather than 10.
LITTLE_FEATURES = FeatureConfig(
    sample_rate=16_000,
    frame_length=640,
    frame_step=320,
    num_mel_bins=40,
    lower_frequency=20.0,
    upper_frequency=7_600.0,
    num_coefficients=16,
)
#: Log-mel features for the server-side models (Big and the ensemble): the same framing,
#: 40 bins up to 7.6 kHz. The 20 ms hop halves the compute of a 10 ms one.
LOG_MEL_FEATURES = FeatureConfig(
    sample_rate=16_000,
    frame_length=640,
    frame_step=320,
    num_mel_bins=40,
    lower_frequency=20.0,
    upper_frequency=7_600.0,
    num_coefficients=0,
)


@dataclass(frozen=True)
class Recipe:
    """Everything that makes one shipped model."""

    architecture: str
    features: FeatureConfig
    options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 40
    batch_size: int = 64
    learning_rate: float = 3e-3
    patience: int = 15
    augment: AugmentConfig = AugmentConfig()
    label_smoothing: float = 0.05
    prune_sparsity: float = 0.0
    """Final fraction of zero weights after magnitude pruning (0: no pruning)."""
    prune_epochs: int = 20
    quantization: str = "float32"
    """'float32', or 'int8' (full-integer post-training quantization, float I/O)."""
    compress: bool = False
    """Also write a zlib-compressed copy (``.tflite.zlib``), what the Pi downloads and stores."""
    description: str = ""


_SPEC_AUGMENT = AugmentConfig(time_masks=2, time_mask_frames=6, frequency_masks=2, frequency_mask_bins=6)

RECIPES: dict[str, Recipe] = {
    "little": Recipe(
        architecture="ds_cnn",
        features=LITTLE_FEATURES,
        options={"width": 1.0, "blocks": 4, "first_kernel": (10, 4), "dropout": 0.1},
        prune_sparsity=0.75,
        quantization="int8",
        compress=True,
        description="Pi model: DS-CNN, 75 % pruned, int8, zlib",
    ),
    "big": Recipe(
        architecture="ds_cnn",
        features=LOG_MEL_FEATURES,
        options={"width": 1.5, "blocks": 5, "first_kernel": (10, 4), "dropout": 0.3},
        augment=_SPEC_AUGMENT,
        description="service model: wide DS-CNN on log-mel features",
    ),
    "ensemble_1": Recipe(
        architecture="cnn",
        features=LOG_MEL_FEATURES,
        options={"width": 0.75, "dropout": 0.3},
        augment=_SPEC_AUGMENT,
        description="ensemble member: plain CNN",
    ),
    "ensemble_2": Recipe(
        architecture="ds_cnn",
        features=LOG_MEL_FEATURES,
        options={"width": 1.25, "blocks": 4, "first_kernel": (10, 4), "dropout": 0.3},
        augment=_SPEC_AUGMENT,
        description="ensemble member: DS-CNN",
    ),
    "ensemble_3": Recipe(
        architecture="tc_resnet",
        features=LOG_MEL_FEATURES,
        options={"width": 1.5, "blocks": 3, "dropout": 0.3},
        augment=_SPEC_AUGMENT,
        description="ensemble member: TC-ResNet",
    ),
    "ensemble_4": Recipe(
        architecture="res_cnn",
        features=LOG_MEL_FEATURES,
        options={"width": 1.0, "blocks": 3, "dropout": 0.3},
        augment=_SPEC_AUGMENT,
        description="ensemble member: res8-style residual CNN",
    ),
}


# --------------------------------------------------------------------------- #
# Data
# --------------------------------------------------------------------------- #


@dataclass
class SplitData:
    """One split's audio (float32 at 16 kHz) and label indices, with where each clip came from."""

    audio: np.ndarray
    labels: np.ndarray
    sources: np.ndarray

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, fraction: float, seed: int) -> SplitData:
        """A random ``fraction`` of the clips (for learning curves), the same for a given seed."""
        if fraction >= 1.0:
            return self
        rows = np.sort(np.random.default_rng(seed).permutation(len(self))[: max(1, int(len(self) * fraction))])
        return SplitData(self.audio[rows], self.labels[rows], self.sources[rows])


@functools.lru_cache(maxsize=8)
def load_split(data_dirs: tuple[Path, ...], split: str, labels: tuple[str, ...]) -> SplitData:
    """The clips of one split from every data dir, as float32 in [-1, 1] (read once per process)."""
    audio, indices, sources = [], [], []
    for data_dir in data_dirs:
        clips = dataset.select_clips(data_dir, split, labels)
        audio.append(dataset.load_audio(clips).astype(np.float32) / 32768.0)
        indices.append(dataset.label_indices(clips, labels))
        sources.extend([str(data_dir)] * len(clips))
    return SplitData(np.concatenate(audio), np.concatenate(indices), np.array(sources))


def clean_features(audio: np.ndarray, config: FeatureConfig, batch: int = 512) -> np.ndarray:
    """Features of un-augmented clips, in batches to bound memory."""
    parts = [
        features_from_prepared(
            np.stack([prepare_audio(clip, CLIP_SAMPLE_RATE, config) for clip in audio[start : start + batch]]), config
        )
        for start in range(0, len(audio), batch)
    ]
    return np.concatenate(parts).astype(np.float32)


#: Augmented epochs already computed in this process, keyed by what determines them.
#: The server-side recipes share one FeatureConfig and augmentation, so with
#: ``--all`` each epoch's features are made once and reused by every such model.
_AUGMENTED_EPOCHS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def augmented_epoch(recipe: Recipe, data: SplitData, epoch_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's augmented features and visiting order (cached; deterministic per seed)."""
    key = (recipe.features, recipe.augment, len(data), epoch_seed)
    if key not in _AUGMENTED_EPOCHS:
        rng = np.random.default_rng(epoch_seed)
        audio = augment_audio(data.audio, recipe.augment, CLIP_SAMPLE_RATE, rng)
        features = mask_features(clean_features(audio, recipe.features), recipe.augment, rng)
        _AUGMENTED_EPOCHS[key] = (features, rng.permutation(len(data)))
    return _AUGMENTED_EPOCHS[key]


def make_training_sequence(
    recipe: Recipe, data: SplitData, seed: int, standardization: InputStandardization | None = None
):
    """A Keras Sequence that gives every epoch freshly augmented clips.

    Augmenting and featurising ~4 500 clips takes seconds, as long as an epoch of
    the smaller models, so the next epoch's features are prepared in a background
    thread while the current one trains (numpy's heavy kernels release the GIL).
    """
    from concurrent.futures import ThreadPoolExecutor

    import tf_keras as keras

    class AugmentedClips(keras.utils.Sequence):
        def __init__(self) -> None:
            super().__init__()
            self.epoch = 0
            self.prefetcher = ThreadPoolExecutor(max_workers=1)
            self.next_epoch = self.prefetcher.submit(augmented_epoch, recipe, data, seed)
            self.on_epoch_end()

        def on_epoch_end(self) -> None:
            self.features, self.order = self.next_epoch.result()
            self.epoch += 1
            self.next_epoch = self.prefetcher.submit(augmented_epoch, recipe, data, seed + self.epoch)

        def __len__(self) -> int:
            return -(-len(data) // recipe.batch_size)

        def __getitem__(self, index: int):
            rows = self.order[index * recipe.batch_size : (index + 1) * recipe.batch_size]
            batch = self.features[rows]
            return (standardization.apply(batch) if standardization else batch), data.labels[rows]

    return AugmentedClips()


def class_weights(labels: np.ndarray, num_labels: int) -> dict[int, float]:
    """Inverse-frequency weights so the rare words of the unbalanced folder count fully."""
    counts = np.bincount(labels, minlength=num_labels).astype(np.float64)
    weights = counts.sum() / (num_labels * np.maximum(counts, 1.0))
    return {index: float(weight) for index, weight in enumerate(weights)}


# --------------------------------------------------------------------------- #
# Training, pruning, conversion
# --------------------------------------------------------------------------- #


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
    model.compile(
        optimizer=keras.optimizers.Adam(schedule),
        loss=sparse_smoothed_loss(model.output_shape[-1], recipe.label_smoothing),
        metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")],
    )
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

    from architectures import build_model

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


# --------------------------------------------------------------------------- #
# Measuring the exported model and writing the metadata
# --------------------------------------------------------------------------- #


def tflite_predictions(model_bytes: bytes, features: np.ndarray) -> np.ndarray:
    """Predicted label index per clip, from the exported flatbuffer itself, run by the
    same interpreter as the clients (so the metadata's accuracy is what they get)."""
    from kws_model import dequantize, interpreter_class

    interpreter_type, _ = interpreter_class()
    interpreter = interpreter_type(model_content=model_bytes, num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    predictions = np.empty(len(features), dtype=np.int64)
    for index, row in enumerate(features):
        interpreter.set_tensor(inp["index"], row[np.newaxis].astype(np.float32))
        interpreter.invoke()
        predictions[index] = np.argmax(dequantize(interpreter.get_tensor(out["index"])[0], out))
    return predictions


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


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def train_recipe(
    name: str,
    recipe: Recipe,
    data_dirs: Sequence[Path],
    output_dir: Path,
    seed: int,
    train_fraction: float = 1.0,
) -> dict[str, Any]:
    """Train one recipe end to end and write its files; returns its metadata.

    ``train_fraction`` < 1 trains on a random part of the training clips, for
    learning curves (``bench/learning_curve.py``); validation and test stay whole.
    """
    import tensorflow as tf
    import tf_keras as keras

    started = time.time()
    keras.utils.set_random_seed(seed)
    tf.config.experimental.enable_op_determinism()
    labels = list(dataset.DEFAULT_LABELS)
    splits = {split: load_split(tuple(data_dirs), split, tuple(labels)) for split in ("train", "validation", "test")}
    splits["train"] = train_data = splits["train"].subset(train_fraction, seed)
    features = {split: clean_features(data.audio, recipe.features) for split, data in splits.items()}
    mean, variance = features["train"].mean(axis=(0, 1)), features["train"].var(axis=(0, 1))
    # A float model standardises its input in the graph. A full-integer one cannot do it
    # well there: its input is quantized per tensor *before* any layer runs, so MFCC 0
    # (tens of units wide) would leave the higher coefficients a handful of int8 steps.
    # Such models take standardised features instead, with the statistics in their
    # metadata, where kws_model applies them.
    standardize_outside = recipe.quantization == "int8"
    standardization = InputStandardization(mean, np.sqrt(variance + 1e-6)) if standardize_outside else None
    if standardization is not None:
        features = {split: standardization.apply(values) for split, values in features.items()}
    train_sequence = make_training_sequence(recipe, train_data, seed, standardization)
    weights = class_weights(train_data.labels, len(labels))
    val_x, val_y = features["validation"], splits["validation"].labels

    normalization = None if standardize_outside else (mean, variance)
    model, history = train_float_model(recipe, train_sequence, val_x, val_y, weights, len(labels), normalization)
    float_val_accuracy = float(max(history.history["val_accuracy"]))
    if recipe.prune_sparsity:
        model = prune(model, recipe, train_sequence, val_x, val_y, weights)

    model_bytes = convert(model, recipe, features["train"][:: max(1, len(features["train"]) // 500)])
    output_dir.mkdir(parents=True, exist_ok=True)
    files = {"tflite": f"{name}.tflite"}
    blobs = {"tflite": model_bytes}
    if recipe.compress:
        files["tflite_zlib"] = f"{name}.tflite.zlib"
        blobs["tflite_zlib"] = compress(model_bytes)
    for kind, filename in files.items():
        (output_dir / filename).write_bytes(blobs[kind])

    accuracy: dict[str, Any] = {"float_validation": round(float_val_accuracy, 4)}
    for split in ("validation", "test"):
        correct = tflite_predictions(model_bytes, features[split]) == splits[split].labels
        accuracy[split] = round(float(correct.mean()), 4)
        per_dir = {}
        for data_dir in data_dirs:
            rows = splits[split].sources == str(data_dir)
            if rows.any():
                per_dir[Path(data_dir).name] = {
                    "accuracy": round(float(correct[rows].mean()), 4),
                    "samples": int(rows.sum()),
                }
        accuracy[f"{split}_by_data_dir"] = per_dir

    metadata = {
        "name": name,
        "description": recipe.description,
        "labels": labels,
        "feature_config": recipe.features.to_dict(),
        "input_shape": list(recipe.features.shape),
        "output": "probabilities",
        **({"input_standardization": standardization.to_dict()} if standardization else {}),
        "architecture": {"type": recipe.architecture, **recipe.options, "parameters": int(model.count_params())},
        "training": {
            "data_dirs": [Path(d).name for d in data_dirs],
            "split": "speaker hash (dataset.partition_of), 80/10/10",
            "train_clips": len(train_data),
            "train_fraction": train_fraction,
            "train_clips_per_label": {
                lab: int(n) for lab, n in zip(labels, np.bincount(train_data.labels, minlength=len(labels)))
            },
            "validation_clips": len(splits["validation"]),
            "test_clips": len(splits["test"]),
            "epochs_max": recipe.epochs,
            "epochs_run": len(history.history["val_accuracy"]),
            "batch_size": recipe.batch_size,
            "learning_rate": recipe.learning_rate,
            "label_smoothing": recipe.label_smoothing,
            "augmentation": recipe.augment.to_dict(),
            "prune_sparsity": recipe.prune_sparsity,
            "measured_sparsity": round(weight_sparsity(model), 4),
            "quantization": recipe.quantization,
            "seed": seed,
            "tensorflow": tf.__version__,
            "python": platform.python_version(),
            "seconds": round(time.time() - started, 1),
        },
        "accuracy": accuracy,
        "files": files,
        "sizes": {kind: len(blob) for kind, blob in blobs.items()},
        "sha256": {kind: sha256(blob) for kind, blob in blobs.items()},
    }
    (output_dir / f"{name}.json").write_text(json.dumps(metadata, indent=2) + "\n")
    log.info("%s: validation %.4f, test %.4f, %s", name, accuracy["validation"], accuracy["test"], metadata["sizes"])
    return metadata


def print_table(results: Sequence[dict[str, Any]]) -> None:
    header = f"{'model':<12}{'arch':<11}{'params':>9}{'val acc':>9}{'test acc':>9}{'bytes':>10}{'zlib':>9}{'clips':>7}"
    print(header)
    print("-" * len(header))
    for meta in results:
        sizes = meta["sizes"]
        print(
            f"{meta['name']:<12}{meta['architecture']['type']:<11}{meta['architecture']['parameters']:>9}"
            f"{meta['accuracy']['validation']:>9.4f}{meta['accuracy']['test']:>9.4f}"
            f"{sizes['tflite']:>10}{sizes.get('tflite_zlib', ''):>9}{meta['training']['train_clips']:>7}"
        )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Train the shipped keyword-spotting models from their recipes.",
        epilog="Recipes: " + ", ".join(f"{name} ({recipe.description})" for name, recipe in RECIPES.items()),
    )
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--recipe", action="append", choices=sorted(RECIPES), help="recipe to train (repeatable)")
    which.add_argument("--all", action="store_true", help="train every recipe")
    parser.add_argument(
        "--data-dir",
        type=Path,
        action="append",
        help="dataset folder in Speech Commands layout; repeat to train on several "
        "(default: data/mini_speech_commands)",
    )
    parser.add_argument(
        "--output-dir", type=Path, default=Path("models"), help="where models go (default: %(default)s)"
    )
    parser.add_argument("--seed", type=int, default=1234, help="random seed for weights, augmentation and order")
    parser.add_argument("--epochs", type=int, help="override every recipe's maximum epochs (quick experiments)")
    parser.add_argument(
        "--train-fraction",
        type=float,
        default=1.0,
        help="train on this random part of the training clips, 0 to 1 (learning curves; default: all)",
    )
    parser.add_argument("--report", type=Path, help="also write the trained models' metadata here as one JSON list")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not 0 < args.train_fraction <= 1:
        parser.error(f"--train-fraction must be in (0, 1], got {args.train_fraction}")
    data_dirs = args.data_dir or [dataset.DEFAULT_DATA_DIR]
    for data_dir in data_dirs:
        if not data_dir.is_dir():
            parser.error(f"--data-dir {data_dir} does not exist (run 'python dataset.py download' for the default)")
    names = sorted(RECIPES) if args.all else args.recipe
    results = []
    for name in names:
        recipe = RECIPES[name]
        if args.epochs:
            recipe = dataclasses.replace(recipe, epochs=args.epochs, prune_epochs=min(recipe.prune_epochs, args.epochs))
        log.info("training %s: %s", name, recipe.description)
        results.append(train_recipe(name, recipe, data_dirs, args.output_dir, args.seed, args.train_fraction))
    print_table(results)
    if args.report:
        args.report.parent.mkdir(parents=True, exist_ok=True)
        args.report.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
