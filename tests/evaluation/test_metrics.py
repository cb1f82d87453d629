"""metrics.py: the figures every evaluation, training run and client reports."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kws.evaluation import metrics


def test_confusion_matrix_counts_true_rows_and_predicted_columns() -> None:
    matrix = metrics.confusion_matrix([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], num_classes=4)
    np.testing.assert_array_equal(matrix, [[1, 1, 0, 0], [0, 1, 0, 0], [1, 0, 2, 0], [0, 0, 0, 0]])


def test_confusion_matrix_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="3 true labels but 2 predictions"):
        metrics.confusion_matrix([0, 1, 1], [0, 1], num_classes=2)
    with pytest.raises(ValueError, match=r"predicted labels must lie in \[0, 2\)"):
        metrics.confusion_matrix([0, 1], [0, 2], num_classes=2)


def test_accuracy_and_per_class_accuracy() -> None:
    matrix = metrics.confusion_matrix([0, 0, 0, 1, 1], [0, 0, 1, 1, 0], num_classes=3)
    assert metrics.accuracy(matrix) == pytest.approx(3 / 5)
    per_class = metrics.per_class_accuracy(matrix, ["yes", "no", "up"])
    assert per_class == {"yes": pytest.approx(2 / 3), "no": 0.5, "up": None}
    assert math.isnan(metrics.accuracy(np.zeros((2, 2), dtype=np.int64)))
    with pytest.raises(ValueError, match="does not fit 2 labels"):
        metrics.per_class_accuracy(matrix, ["yes", "no"])


def test_median_ms_is_robust_to_one_outlier() -> None:
    assert metrics.median_ms([0.001, 0.002, 0.003, 5.0]) == pytest.approx(2.5)
    with pytest.raises(ValueError):
        metrics.median_ms([])
