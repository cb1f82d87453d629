"""bench/bench_cascade_budget.py: the cascade at fixed Big budgets, checked against the rule's own evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from bench import bench_cascade_budget
from kws.tuning.cascade_replay import PairedPredictions


def test_budget_figures_on_known_predictions() -> None:
    # 10 clips: Little wrong on clips 0-2 with the lowest margins, Big wrong on clip 9 only.
    truth = np.zeros(10, int)
    little = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    big = np.array([0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
    margins = np.linspace(0.05, 0.95, 10)
    figures = bench_cascade_budget.budget_figures(PairedPredictions(truth, margins, little, big, np.ones(10)))
    assert figures["little_accuracy"] == 0.7 and figures["big_accuracy"] == 0.9
    within = figures["best_accuracy_within_big_fraction"]
    assert within["0.10"] == 0.8 and within["0.20"] == 0.9 and within["0.25"] == 0.9
    assert figures["big_fraction_to_reach_big"] == 0.2  # clip 2 still wrong at 20 %, but Big is wrong on one too


def test_bench_runs_on_real_clips(small_dataset: Path, models_dir: Path, tmp_path: Path) -> None:
    report = tmp_path / "budget.json"
    assert bench_cascade_budget.main([
        "--little", str(models_dir / "little"), "--big", str(models_dir / "big"), "--data-dir", str(small_dataset),
        "--split", "test", "--report", str(report),
    ]) == 0
    result = json.loads(report.read_text())["results"][str(models_dir / "little")]
    assert 0 < result["little_accuracy"] <= 1 and 0 <= result["big_fraction_to_reach_big"] <= 1
    assert set(result["best_accuracy_within_big_fraction"]) == {"0.10", "0.15", "0.20", "0.25"}
