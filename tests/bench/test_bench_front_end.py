"""bench/bench_front_end.py runs end to end on real clips and its shares add up per machine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_front_end
from kws.frontend.files import locate_front_end
from kws.frontend.spec import FrontEndError, FrontEndSpec


def test_bench_times_every_step_on_real_clips(data_dir: Path, tmp_path: Path, tuned_embedding_model) -> None:
    """Every step, and the row of a Big whose file holds the embedding, a share of the ONNX mel and that file."""
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (requirements/server.txt)")
    try:
        locate_front_end(FrontEndSpec())
    except FrontEndError as error:
        pytest.skip(f"the front end is not installed here: {error}")
    report_path = tmp_path / "front_end.json"
    assert bench_front_end.main([
        "--data-dir", str(data_dir), "--clips", "6", "--batch", "3", "--report", str(report_path),
        "--model", str(tuned_embedding_model.stem),
    ]) == 0
    report = json.loads(report_path.read_text())
    assert report["clips"] == 6 and report["batch"] == 3
    steps = report["steps"]
    assert [step for step, _ in (*bench_front_end.STEPS, bench_front_end.IN_MODEL_STEP)] == list(steps)
    in_model = steps[bench_front_end.IN_MODEL_STEP[0]]
    mel_ms = steps["onnx mel"]["median_ms"]
    assert in_model["share"] + mel_ms / (mel_ms + in_model["median_ms"]) == pytest.approx(1.0)
    assert all(values["median_ms"] > 0 and values["p90_ms"] >= values["median_ms"] * 0.999 for values in steps.values())
    for machine in ("pi", "server"):
        assert sum(v["share"] for v in steps.values() if v["machine"] == machine) == pytest.approx(1.0)
