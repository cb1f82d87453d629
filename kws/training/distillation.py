"""Knowledge distillation: Little also learns Big's opinion of every training clip.

The cascade works when Little is unsure exactly where it may be wrong. A Little
trained on hard labels alone is often confidently wrong on the clips Big gets right,
and then no threshold on its score margin finds them. Trained towards Big's
(softened) probabilities as well as the labels, Little inherits Big's sense of which
words a clip resembles: it is more accurate, and where it still disagrees with Big
its margin is lower (Hinton et al., 2015, "Distilling the Knowledge in a Neural Network").

The teacher is a trained Big model, run here through the same TFLite interpreter as
every client (:mod:`kws.model.runtime`), once per clip: on the un-augmented audio, whose
opinion an augmented copy of the clip then keeps, or, with a bank of variants
(:mod:`kws.training.variant_bank`), on every augmented variant the student is shown. Its
probabilities are cached by content (:mod:`kws.training.content_cache`, under ``teacher/``:
the clips' int16 samples and the teacher file's sha256), unsoftened, so another temperature
asks nothing again. Keras gets one target array per batch, the label in column 0 and the
teacher's probabilities after it (:func:`pack_targets`); the loss and the accuracy
metric unpack it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kws.model.runtime import KeywordModel, load_model
from kws.training.content_cache import cached_batches, to_int16

#: The cache's folder of teacher probabilities.
TEACHER_FOLDER = "teacher"


@dataclass(frozen=True)
class Distillation:
    """How much of the loss learns the teacher, and how soft its probabilities are made."""

    teacher: str
    """A shipped model's name in the output folder (``big``): trained before the student."""
    weight: float = 0.5
    """Share of the loss on the teacher's probabilities; the rest is on the labels."""
    temperature: float = 2.0
    """Teacher probabilities are raised to 1/T and renormalised: T > 1 shows which wrong words a clip resembles."""

    def to_dict(self) -> dict[str, float | str]:
        return {"teacher": self.teacher, "weight": self.weight, "temperature": self.temperature}


def soften(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities at a higher temperature: softmax(log(p) / T), along the last axis."""
    logits = np.log(np.clip(np.asarray(probabilities, np.float64), 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=-1, keepdims=True)
    exps = np.exp(logits)
    return (exps / exps.sum(axis=-1, keepdims=True)).astype(np.float32)


def load_teacher(teacher_stem: Path, labels: Sequence[str]) -> KeywordModel:
    """The teacher, which must know the student's labels in the student's order: distilling
    between different label sets would teach the wrong words."""
    teacher = load_model(teacher_stem)
    if tuple(teacher.labels) != tuple(labels):
        raise ValueError(f"teacher {teacher_stem} knows {list(teacher.labels)}, the student {list(labels)}")
    return teacher


def teacher_outputs(teacher: KeywordModel, audio: np.ndarray, desc: str = "teacher") -> np.ndarray:
    """The teacher's probabilities ``(clips, labels)`` float32 for every clip, unsoftened, cached by content.

    The teacher hears int16 clips: float ones (in [-1, 1]) are rounded to int16 first, as a
    microphone records them (clips read from 16-bit files are unchanged by it), which is also what
    a teacher on the pretrained front end reads.
    """
    clips = audio if audio.dtype == np.int16 else to_int16(audio)
    return cached_batches(
        clips, f"teacher {teacher.sha256}".encode(),
        lambda batch: np.stack([teacher.predict_audio(clip) for clip in batch]).astype(np.float32),
        desc, TEACHER_FOLDER,
    )


def teacher_probabilities(
    teacher: KeywordModel, audio: np.ndarray, temperature: float, desc: str = "teacher"
) -> np.ndarray:
    """The teacher's probabilities for every clip (int16, or float in [-1, 1]), softened at ``temperature``."""
    return soften(teacher_outputs(teacher, audio, desc), temperature)


def pack_targets(labels: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """One target row per clip: the label index, then the teacher's probabilities."""
    return np.concatenate([np.asarray(labels, np.float32)[:, None], teacher.astype(np.float32)], axis=1)


def distillation_loss(num_labels: int, smoothing: float, weight: float):
    """(1 - weight) x cross-entropy on the smoothed label + weight x cross-entropy on the teacher's probabilities."""
    import tensorflow as tf

    def loss(y_true, y_pred):
        one_hot = tf.one_hot(tf.cast(y_true[:, 0], tf.int32), num_labels)
        smoothed = one_hot * (1.0 - smoothing) + smoothing / num_labels
        hard = tf.keras.losses.categorical_crossentropy(smoothed, y_pred)
        soft = tf.keras.losses.categorical_crossentropy(y_true[:, 1:], y_pred)
        return (1.0 - weight) * hard + weight * soft

    return loss


def packed_accuracy():
    """Accuracy against the label column of packed targets (named ``accuracy``, as the callbacks expect)."""
    import tensorflow as tf
    import tf_keras as keras

    def accuracy(y_true, y_pred):
        return tf.cast(tf.equal(tf.cast(y_true[:, 0], tf.int64), tf.argmax(y_pred, axis=-1)), tf.float32)

    return keras.metrics.MeanMetricWrapper(accuracy, name="accuracy")
