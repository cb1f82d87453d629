"""Distillation's pieces on known numbers: softened probabilities, packed targets, the mixed loss."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from kws.data.clips import DEFAULT_LABELS, NON_KEYWORD_LABELS
from kws.training.distillation import load_teacher, pack_targets, soften


def entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(p * np.log(p), axis=-1)


def test_soften_keeps_order_and_raises_entropy() -> None:
    p = np.array([[0.90, 0.07, 0.02, 0.01], [0.5, 0.3, 0.15, 0.05]])
    assert soften(p, 1.0) == pytest.approx(p, abs=1e-6)
    warm = soften(p, 2.0)
    assert warm.sum(axis=-1) == pytest.approx([1.0, 1.0], abs=1e-6)
    assert (np.argsort(warm, axis=-1) == np.argsort(p, axis=-1)).all()
    assert (entropy(warm) > entropy(p)).all()
    # softmax(log p / 2) is sqrt(p), renormalised
    assert warm[0] == pytest.approx(np.sqrt(p[0]) / np.sqrt(p[0]).sum(), abs=1e-6)


def test_targets_pack_the_label_first() -> None:
    packed = pack_targets(np.array([3, 0]), np.full((2, 8), 0.125, np.float32))
    assert packed.shape == (2, 9)
    assert packed[:, 0].tolist() == [3.0, 0.0]


def test_a_teacher_with_other_labels_is_refused(models_dir: Path) -> None:
    labels = list(DEFAULT_LABELS) + list(NON_KEYWORD_LABELS)
    with pytest.raises(ValueError, match="knows"):
        load_teacher(models_dir / "big", labels)


def test_the_loss_mixes_label_and_teacher() -> None:
    tf = pytest.importorskip("tensorflow", reason="the loss is TensorFlow's")
    from kws.training.distillation import distillation_loss
    from kws.training.fitting import sparse_smoothed_loss

    teacher = np.array([[0.7, 0.2, 0.1]], np.float32)
    predicted = tf.constant([[0.5, 0.3, 0.2]])
    y = tf.constant(pack_targets(np.array([1]), teacher))
    hard = float(sparse_smoothed_loss(3, 0.05)(tf.constant([[1.0]]), predicted)[0])
    soft = float(-np.sum(teacher * np.log([0.5, 0.3, 0.2])))
    for weight in (0.0, 0.5, 1.0):
        mixed = float(distillation_loss(3, 0.05, weight)(y, predicted)[0])
        assert mixed == pytest.approx((1 - weight) * hard + weight * soft, rel=1e-5)
