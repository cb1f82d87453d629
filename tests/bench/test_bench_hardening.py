"""bench/bench_hostile.py and bench/bench_broken_big.py run end to end and report what they promise."""

from __future__ import annotations

import json
from pathlib import Path

from bench import bench_broken_big, bench_hostile
from bench.hostile_requests import CATALOGUE


def test_bench_hostile_reports_every_request_memory_and_latency(data_dir: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "hostile.json"
    assert bench_hostile.main([
        "--data-dir", str(data_dir), "--concurrent", "2", "--slow-clients", "20", "--calls", "3",
        "--report", str(report_path),
    ]) == 0
    report = json.loads(report_path.read_text())
    assert [row["name"] for row in report["requests"]] == [r.name for r in CATALOGUE]
    assert report["all_4xx_json"] and report["alive_after_attacks"] and report["alive_at_end"]
    assert 0 < report["memory_mb"]["resting"] <= report["memory_mb"]["peak"]
    beside = report["latency"]["beside_20_slow_clients"]
    assert beside["health"]["failed"] == beside["predict"]["failed"] == 0


def test_bench_broken_big_reports_time_memory_and_reasons(small_dataset: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "broken.json"
    assert bench_broken_big.main([
        "--data-dir", str(small_dataset), "--behaviours", "not-json", "slow", "--report", str(report_path),
    ]) == 0
    report = json.loads(report_path.read_text())
    assert report["little_only"]["big_requests"] == 0 and report["little_only"]["seconds"] > 0
    assert set(report["broken"]) == {"not-json", "slow"}
    for behaviour, reason in (("not-json", "not_json"), ("slow", "timeout")):
        result = report["broken"][behaviour]
        assert result["answers_are_little"] and not result["traceback"]
        assert result["fallback_reasons"][reason] == 3 and result["max_rss_mb"] > 0
