"""calibrate.py as a user runs it: the cascade threshold against the service or a Big in-process, the sweep,
and what it says when Big cannot answer or the flags are wrong."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import predict_requests

from kws.data.clips import select_clips
from kws.data.splits import partition_of
from kws.model.runtime import load_model
from kws.rest.client import BigClient
from kws.tuning.cascade_calibration import CALIBRATION_SPLIT, calibrate
from kws.tuning.cascade_replay import service_answerer
from kws.tuning.cascade_sweep import SWEEP_THRESHOLDS
from kws.util.net import free_tcp_port


@pytest.fixture
def run_calibrate(cli):
    """calibrate.py as a process; returns (exit status, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        done = cli("calibrate.py", *args)
        return done.returncode, done.stdout, done.stderr

    return run


@pytest.fixture
def little_copy(shipped_model, tmp_path: Path) -> Path:
    """The shipped Little model's files in a folder of their own, so its metadata may be written."""
    little = shipped_model("little")
    for name in ("little.json", "little.tflite", "little.tflite.zlib"):
        shutil.copy(little.parent / name, tmp_path)
    return tmp_path / "little"


def test_cascade_against_the_service_uses_the_validation_split_never_test(
    paired_big_server, small_dataset, little_copy, tmp_path, run_calibrate
) -> None:
    big_server = paired_big_server  # the Big the shipped threshold was calibrated with
    little = load_model(little_copy, prefer="zlib")
    with BigClient(big_server.url) as big:
        calibration = calibrate([small_dataset], CALIBRATION_SPLIT, little, service_answerer(big), big.negotiate(),
                                progress=False)
    validation = select_clips(small_dataset, "validation")
    assert len(calibration.paired.predictions.true_labels) == len(validation)
    assert {partition_of(clip.speaker) for clip in validation} == {"validation"}
    assert calibration.paired.predictions.mcnemar_p(calibration.threshold) >= 0.05

    written, report_path = tmp_path / "little-mine.json", tmp_path / "calibrated.json"
    requests_before = predict_requests(big_server)
    status, out, err = run_calibrate(["cascade", "--service", big_server.url, "--data-dir", str(small_dataset),
                                      "--model", str(little_copy), "--write-metadata", str(written),
                                      "--report", str(report_path), "--no-progress"])
    assert status == 0, err
    report = json.loads(report_path.read_text())
    section = report["calibration"]
    assert section["split"] == "validation" and section["rule"].startswith("margin below threshold")
    assert section["threshold"] == calibration.threshold
    assert section["validation"]["samples"] == len(validation)
    assert report["service"] == big_server.url and report["big_model"]["calibrated_with"]
    assert predict_requests(big_server) - requests_before == section["validation"]["samples"]
    assert json.loads(written.read_text())["cascade"] == section
    assert load_model(tmp_path / "little-mine").metadata.raw["cascade"]["threshold"] == section["threshold"]
    assert out.startswith(f"threshold {section['threshold']:.4f}: validation accuracy")
    assert f"cascade section written to {written}" in out and f"report written to {report_path}" in out


def test_cascade_with_big_in_process_updates_the_models_own_metadata(
    shipped_model, small_dataset, little_copy, run_calibrate
) -> None:
    """The export step from the command line: no service, the section written in place; --dry-run writes nothing."""
    metadata = little_copy.with_suffix(".json")
    before = metadata.read_text()
    args = ["cascade", "--big", str(shipped_model("big")), "--data-dir", str(small_dataset),
            "--model", str(little_copy), "--no-progress"]
    status, out, err = run_calibrate([*args, "--dry-run"])
    assert status == 0, err
    assert "dry run: metadata not written" in out and metadata.read_text() == before
    status, out, err = run_calibrate(args)
    assert status == 0, err
    section = json.loads(metadata.read_text())["cascade"]
    assert section["big_model"]["name"] == "big" and section["validation"]["samples"] == 24  # 3 clips x 8 labels
    assert json.loads(before)["sha256"] == json.loads(metadata.read_text())["sha256"]
    assert f"cascade section written to {metadata}" in out


def test_sweep_writes_table_json_and_png_for_both_payloads_plain_and_deflated(
    big_server, small_dataset, shipped_model, tmp_path, run_calibrate
) -> None:
    report_path, plot_path = tmp_path / "sweep.json", tmp_path / "sweep.png"
    status, table, err = run_calibrate([
        "sweep", "--service", big_server.url, "--data-dir", str(small_dataset), "--model", str(shipped_model("little")),
        "--threshold", "0.33", "--report", str(report_path), "--plot", str(plot_path), "--no-progress",
    ])
    assert status == 0, err
    for column in ("MB/800 pcm", "MB/800 features", "MB/800 pcm deflate", "MB/800 features deflate"):
        assert column in table
    assert f"sweep plot written to {plot_path}" in table and f"report written to {report_path}" in table
    report = json.loads(report_path.read_text())
    assert report["mode"] == "sweep" and report["threshold"] == 0.33 and report["calibration"] is None
    assert report["samples"] == len(select_clips(small_dataset, "test"))
    rows = report["rows"]
    assert [row["threshold"] for row in rows] == sorted({*SWEEP_THRESHOLDS, 0.33})
    assert rows[0]["big_requests"] == 0 and rows[0]["accuracy"] == pytest.approx(report["little_accuracy"], abs=1e-6)
    for payload in ("pcm", "features", "pcm_deflate", "features_deflate"):
        sent = [row["communication_bytes"][payload] for row in rows]
        assert sent == sorted(sent)
    everything = rows[-1]["communication_bytes"]  # every clip sent
    assert everything["features"] * 10 < everything["pcm"]
    assert everything["pcm_deflate"] < 0.7 * everything["pcm"]
    assert everything["features_deflate"] < everything["features"]
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert predict_requests(big_server) == report["samples"], "Big is asked once per clip, not once per threshold"


@pytest.mark.parametrize("command", ["cascade", "sweep"])
def test_an_unreachable_service_names_the_flag_and_the_way_out(
    command, small_dataset, shipped_model, run_calibrate
) -> None:
    dead_service = f"http://127.0.0.1:{free_tcp_port()}"
    status, _, err = run_calibrate([command, "--service", dead_service, "--retries", "0", "--no-progress",
                                    "--data-dir", str(small_dataset), "--model", str(shipped_model("little"))])
    assert status == 2 and "Traceback" not in err
    verb = "calibrate" if command == "cascade" else "sweep"
    assert f"error: --service {dead_service} is needed to {verb} but cannot answer: " in err
    assert "start big_service.py" in err


@pytest.mark.parametrize(
    ("args", "complaint"),
    [
        ([], "the following arguments are required: COMMAND"),
        (["cascade", "--dry-run", "--write-metadata", "x.json"], "--dry-run writes nothing"),
        (["cascade", "--alpha", "1.5"], "--alpha must be between 0 and 1"),
        (["cascade", "--service", "localhost:8080"], "--service must be an http:// or https:// URL"),
        (["sweep", "--threshold", "2"], "--threshold must be between 0 and 1"),
        (["listen", "--noise-minutes", "0"], "--noise-minutes must be positive"),
        (["cascade", "--model", "nowhere/little", "--data-dir", "."], "error: --model nowhere/little: "),
    ],
)
def test_bad_flags_are_cli_errors(args, complaint, run_calibrate) -> None:
    status, _, err = run_calibrate(args)
    assert status == 2 and complaint in err and "Traceback" not in err


@pytest.mark.parametrize("command", ["", "cascade", "sweep", "listen"])
def test_help_reads_with_defaults_spelt_out(command, run_calibrate) -> None:
    status, out, err = run_calibrate([command, "--help"] if command else ["--help"])
    assert status == 0 and out.startswith("usage: calibrate.py"), err
    assert ":mod:" not in out and "``" not in out and "%(default)" not in out
    if command:
        assert "(default: models/little)" in out
