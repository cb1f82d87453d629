"""bench/bench_stream.py runs end to end: both rooms, live and replayed rows, the DET plot, and the live run replays."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench import bench_stream


@pytest.mark.parametrize("big", ["big_embedding", "big"])
def test_bench_reports_both_rooms_and_draws_the_det_curve(big: str, data_dir: Path, other_dir: Path, tmp_path: Path,
                                                          capsys, shipped_model) -> None:
    """With the default Big (the pretrained front end: no every-hop 'Big alone' baseline, too slow) and with the
    network Big, which streams its features and gets the baseline and its DET curve."""
    report_path, plot_path = tmp_path / "stream.json", tmp_path / "det.png"
    assert bench_stream.main(["--data-dir", str(data_dir), "--other-dir", str(other_dir), "--limit", "16",
                              "--noise-minutes", "0.5", "--report", str(report_path), "--plot", str(plot_path),
                              "--big", str(shipped_model(big))]) == 0
    report = json.loads(report_path.read_text())
    streams_features = big == "big"
    modes = ["Little alone", "Little + Big", "Little, the obvious window",
             *(["Big alone, the obvious window"] if streams_features else [])]
    assert [(row["room"], row["mode"]) for row in report["rows"]] == [(room, mode) for room in ("quiet", "noisy")
                                                                      for mode in modes]
    for row in report["rows"]:
        assert row["keywords"] == 16 and row["others"] == 8 and row["noise_s"] == 30.0
        assert row["hits"] + row["wrong"] + row["misses"] == 16
    live = [row for row in report["rows"] if row["mode"] in modes[:2]]
    assert all(row["real_time_factor"] > 0 and row["hop_latency_ms"]["median"] > 0 for row in live)
    assert all(row["replay_matches_live"] for row in live if row["mode"] == "Little alone")
    cascade = [row for row in report["rows"] if row["mode"] == "Little + Big"]
    assert all(row["big_bytes"] >= 2_000 * row["big_requests"] for row in cascade)  # int8 features or mel, 2-4 KB
    assert set(report["det"]) == {"quiet", "noisy"} and len(report["det"]["quiet"]["little"]) == len(
        bench_stream.DET_THRESHOLDS)
    assert ("big" in report["det"]["quiet"]) == streams_features
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "Little + Big" in capsys.readouterr().out
