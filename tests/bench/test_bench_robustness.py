"""bench/bench_robustness.py runs end to end: every shipped model and the cascade, a table, JSON and a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytest.importorskip("audiomentations", reason="the robustness bench needs the training requirements")

from bench import bench_robustness  # noqa: E402

CHANGES = ["none", "band 300-3400 Hz", "noise 10 dB", "room small"]


def test_bench_reports_every_model_and_the_cascade(data_dir: Path, models_dir: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    if not (data_dir.parent / "speech_commands_other" / "_background_noise_").is_dir():
        pytest.skip("no speech_commands_other noise recordings beside the clips")
    report_path, plot_path = tmp_path / "robustness.json", tmp_path / "robustness.png"
    assert bench_robustness.main([
        "--data-dir", str(data_dir), "--models-dir", str(models_dir), "--threshold", "0.25",
        "--clips-per-label", "2", "--changes", *CHANGES, "--report", str(report_path), "--plot", str(plot_path),
    ]) == 0
    report = json.loads(report_path.read_text())
    assert [row["change"] for row in report["rows"]] == CHANGES
    assert report["test_clips"] == 16 and report["validation_clips"] == 16
    models = {path.stem for path in models_dir.glob("*.json")}
    assert set(report["models"]) == models
    shipped = report["cascade"]["shipped_threshold"]
    assert shipped is not None
    for row in report["rows"]:
        for column in [*models, "cascade_shipped", "cascade_calibrated"]:
            assert 0.0 <= row[column] <= 1.0
        assert 0.0 <= row["cascade_calibrated_big_fraction"] <= 1.0
    assert report["cascade"]["alpha"] == 0.05, "the shipped rule, on changed validation clips"
    assert report["drop_from_clean"]["none"]["little"] == 0.0
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert all(change in table for change in CHANGES) and "cascade_shipped" in table


def test_unknown_model_is_a_usage_error(data_dir: Path, models_dir: Path) -> None:
    with pytest.raises(SystemExit) as stop:
        bench_robustness.main(["--data-dir", str(data_dir), "--models-dir", str(models_dir), "--little", "tiny"])
    assert stop.value.code == 2
