"""bench/bench_rest.py runs end to end, shared or with the service on a core of its own, and reports both
payloads, plain and deflated: the clip, and what the Pi computes for that Big (the pretrained front end's
mel for the default Big, features for the network Big)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(("placement", "model", "computed"), [("shared", "big_embedding", "mel"),
                                                              ("split", "big", "features")])
def test_bench_rest_reports_both_payloads_plain_and_deflated(placement: str, model: str, computed: str,
                                                             data_dir: Path, tmp_path: Path, shipped_model) -> None:
    if placement == "split" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("--split-cores needs two CPUs")
    report_path = tmp_path / "rest.json"
    command = [sys.executable, "-m", "bench.bench_rest", "--data-dir", str(data_dir), "--clips", "8",
               "--repeats", "1", "--clients", "1", "2", "--report", str(report_path),
               "--model", str(shipped_model(model))]
    # A process of its own: --split-cores pins the process that runs it.
    result = subprocess.run([*command, *(["--split-cores"] if placement == "split" else [])],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "HTTP / in-process" in result.stdout
    report = json.loads(report_path.read_text())
    assert [row["clients"] for row in report["results"]] == [1, 2]
    assert report["payloads"] == ["pcm", computed, "pcm_deflate", f"{computed}_deflate"]
    for row in report["results"]:
        for payload in report["payloads"]:
            assert row[payload]["http_clips_per_s"] > 0 and row[payload]["cpu_ms_per_clip"]["server"] > 0
    cores = report["setup"]["cores"]
    if placement == "split":
        assert len(cores["service"]) == 1 and not set(cores["service"]) & set(cores["clients_and_in_process"])
    else:
        assert cores == "shared"
