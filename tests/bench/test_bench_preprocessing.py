"""bench/bench_preprocessing.py runs end to end and reports every config it promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("tensorflow", reason="TensorFlow is not installed (CI installs it)")

from bench import bench_preprocessing


def test_bench_reports_default_and_shipped_configs(data_dir: Path, tmp_path: Path) -> None:
    models_dir = Path(__file__).resolve().parents[2] / "models"
    report_path = tmp_path / "bench.json"
    assert bench_preprocessing.main([
        "--data-dir", str(data_dir), "--clips-per-label", "1", "--repeats", "2", "--report", str(report_path),
    ]) == 0
    report = json.loads(report_path.read_text())
    used_by = [name for result in report["results"] for name in result["used_by"]]
    on_features = [path.stem for path in models_dir.glob("*.json") if json.loads(path.read_text())["feature_config"]]
    assert sorted(used_by) == sorted(["default", *on_features])
    assert report["clips"] == 8
    for result in report["results"]:
        for mode in ("single", "batched_per_clip"):
            assert set(result[mode]) == {"numpy", "tf_eager", "tf_function"}
            assert all(value > 0 for value in result[mode].values())
            assert result["ratios"][mode]["tf_eager"] == pytest.approx(
                result[mode]["tf_eager"] / result[mode]["numpy"]
            )
