"""Classification and latency metrics shared by every script that judges a model.

``evaluate.py``, ``train.py`` and the REST and MQTT clients all report accuracy,
per-class accuracy, confusion matrices and latencies; computing them here, in
numpy alone, keeps the figures comparable and the Pi free of heavier libraries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(true_labels: Sequence[int], predicted_labels: Sequence[int], num_classes: int) -> np.ndarray:
    """Counts of (true, predicted) label pairs: rows are true labels, columns predictions."""
    true = np.asarray(true_labels, dtype=np.int64)
    predicted = np.asarray(predicted_labels, dtype=np.int64)
    if true.shape != predicted.shape:
        raise ValueError(f"{true.size} true labels but {predicted.size} predictions")
    for name, values in (("true", true), ("predicted", predicted)):
        if values.size and (values.min() < 0 or values.max() >= num_classes):
            raise ValueError(f"{name} labels must lie in [0, {num_classes})")
    matrix = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(matrix, (true, predicted), 1)
    return matrix


def accuracy(matrix: np.ndarray) -> float:
    """Fraction of samples on the diagonal; NaN when there are none."""
    total = int(matrix.sum())
    return float(np.trace(matrix)) / total if total else float("nan")


def per_class_accuracy(matrix: np.ndarray, labels: Sequence[str]) -> dict[str, float | None]:
    """Each class's recall (correct / samples of that class), ``None`` for an absent class.

    ``None`` rather than NaN, so the result goes into JSON reports as ``null``.
    """
    if matrix.shape != (len(labels), len(labels)):
        raise ValueError(f"a {matrix.shape} matrix does not fit {len(labels)} labels")
    support = matrix.sum(axis=1)
    return {
        label: (float(matrix[index, index]) / int(support[index]) if support[index] else None)
        for index, label in enumerate(labels)
    }


def median_ms(durations_s: Sequence[float]) -> float:
    """Median of durations given in seconds, in milliseconds.

    The median, not the mean, because one page fault or garbage collection
    would otherwise move a latency figure measured over a few hundred clips.
    """
    if len(durations_s) == 0:
        raise ValueError("no durations to take the median of")
    return float(np.median(np.asarray(durations_s, dtype=np.float64))) * 1e3
