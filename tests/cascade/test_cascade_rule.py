"""The Big/Little decision rule and its offline evaluation, on hand-made predictions."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from kws.cascade import rule as cascade

# Five clips: Little is sure and right, sure and wrong, unsure and right, unsure and wrong (x2).
PREDICTIONS = cascade.PairedPredictions(
    true_labels=np.array([0, 1, 2, 3, 4]),
    margins=np.array([0.9, 0.8, 0.3, 0.1, 0.2]),
    little=np.array([0, 0, 2, 0, 0]),
    big=np.array([0, 1, 1, 3, 4]),
    request_bytes=np.full(5, 40_000),
)


def test_score_margin_is_top1_minus_top2() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(cascade.score_margin(probabilities), [0.5, 0.0, 1.0])


def test_softmax_of_logits_sums_to_one_even_for_large_values() -> None:
    probabilities = cascade.softmax(np.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(probabilities, [0.5, 0.5, 0.0])


def test_threshold_zero_never_asks_big() -> None:
    outcome = PREDICTIONS.evaluate(0.0)
    assert outcome.big_requests == 0 and outcome.accuracy == PREDICTIONS.little_accuracy == 0.4


def test_threshold_above_every_margin_asks_big_always() -> None:
    outcome = PREDICTIONS.evaluate(1.0)
    assert outcome.big_fraction == 1.0 and outcome.accuracy == PREDICTIONS.big_accuracy == 0.8


def test_evaluate_counts_accuracy_traffic_and_cost() -> None:
    outcome = PREDICTIONS.evaluate(0.25)  # asks about the clips with margins 0.1 and 0.2; Big gets both right
    assert outcome.big_requests == 2 and outcome.accuracy == pytest.approx(0.8)
    assert outcome.communication_bytes == 80_000
    assert outcome.mb_per_800_clips == pytest.approx(80_000 / 5 * 800 / 1e6)


def test_calibrate_picks_the_lowest_threshold_reaching_the_target() -> None:
    outcome = PREDICTIONS.calibrate(target_accuracy=0.8)
    assert outcome.accuracy >= 0.8 and outcome.big_requests == 2
    assert 0.2 < outcome.threshold <= 0.3, "just above the second-lowest margin"


def test_calibrate_warns_and_takes_the_best_when_the_target_is_out_of_reach(caplog) -> None:
    with caplog.at_level(logging.WARNING):
        outcome = PREDICTIONS.calibrate(target_accuracy=0.99)
    assert outcome.accuracy == pytest.approx(0.8) and outcome.big_requests == 2, "fewest requests among the best"
    assert "no threshold reaches accuracy 0.9900" in caplog.text


def test_budget_calibration_is_the_most_accurate_within_the_budget() -> None:
    outcome = PREDICTIONS.calibrate_budget(max_big_fraction=0.4)  # two of five clips may go to Big
    assert outcome.big_requests == 2 and outcome.accuracy == pytest.approx(0.8)
    outcome = PREDICTIONS.calibrate_budget(max_big_fraction=0.2)
    assert outcome.big_requests == 1 and outcome.accuracy == pytest.approx(0.6)
    assert PREDICTIONS.calibrate_budget(max_big_fraction=0.0).big_requests == 0


def test_budget_calibration_takes_the_fewest_requests_among_equals() -> None:
    outcome = PREDICTIONS.calibrate_budget(max_big_fraction=1.0)  # 0.8 is reached with 2 requests already
    assert outcome.accuracy == pytest.approx(0.8) and outcome.big_requests == 2


def test_sweep_is_sorted_and_deduplicated() -> None:
    rows = PREDICTIONS.sweep([0.5, 0.0, 0.5, 1.0])
    assert [row.threshold for row in rows] == [0.0, 0.5, 1.0]
    assert rows[-1].to_dict()["big_fraction"] == 1.0
