"""The Little client end to end against a real Big service: runs, outages, calibration, sweep, CLI errors; and
against broken Bigs (bench/broken_big.py), a token and HTTPS: fallbacks counted by reason, never a crash."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.broken_big import EXPECTED_REASON, BrokenBig, all_broken
from kws.cascade.calibrate import DEFAULT_MAX_BIG_FRACTION, calibrate_threshold
from kws.cascade.run import run_cascade, summarize
from kws.cascade.sweep import SWEEP_THRESHOLDS
from kws.data.clips import select_clips
from kws.data.splits import partition_of
from kws.model.runtime import load_model
from kws.rest.client import BigClient
from kws.rest.service import BigService, ServerHandle, start_server
from kws.util.net import free_tcp_port


@pytest.fixture(scope="module")
def big_model_path(shipped_model) -> Path:
    return shipped_model("big")


@pytest.fixture(scope="module")
def little_model_path(shipped_model) -> Path:
    return shipped_model("little")


def start_big(model_path: Path) -> ServerHandle:
    service = BigService(model_path)
    service.load()
    return start_server(service, port=0, threads=4)


@pytest.fixture
def server(big_model_path: Path) -> Iterator[ServerHandle]:
    with start_big(big_model_path) as handle:
        yield handle


def predict_requests(handle: ServerHandle) -> int:
    return handle.metrics.requests_total("/predict", 200)


@pytest.fixture
def run_client(cli):
    """little_client.py as a process; returns (exit status, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        done = cli("little_client.py", *args, "--no-progress")
        return done.returncode, done.stdout, done.stderr

    return run


def test_run_with_a_given_threshold(server, small_dataset, little_model_path, tmp_path, run_client) -> None:
    report_path = tmp_path / "cascade.json"
    common = ["--service", server.url, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    status, out, _ = run_client([*common, "--threshold", "0.5", "--report", str(report_path)])
    assert status == 0

    report = json.loads(report_path.read_text())
    test_clips = select_clips(small_dataset, "test")
    assert report["mode"] == "cascade" and report["split"] == "test"
    assert report["samples"] == len(test_clips) == len(report["clips"])
    assert report["threshold"] == 0.5 and report["calibration"] is None
    assert report["big_requests"] == predict_requests(server) == sum(c["margin"] < 0.5 for c in report["clips"])
    assert report["big_fraction"] == pytest.approx(report["big_requests"] / report["samples"], abs=1e-6)
    assert report["fallbacks"] == 0
    assert 42_000 * report["big_requests"] <= report["communication_bytes"] <= 43_000 * report["big_requests"]
    if report["big_requests"]:  # heads both ways come on top of the request bodies
        assert report["wire_bytes"] > report["communication_bytes"] + 300 * report["big_requests"]
    correct = sum((clip["big"] or clip["little"]) == clip["label"] for clip in report["clips"])
    assert report["accuracy"] == pytest.approx(correct / report["samples"], abs=1e-6)
    for name in ("little_median", "little_p95", "end_to_end_median"):
        assert report["latency_ms"][name] > 0
    assert "accuracy" in out and f"report written to {report_path}" in out


def test_without_report_prints_a_summary_and_no_json(server, small_dataset, little_model_path, run_client) -> None:
    common = ["--service", server.url, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    status, out, _ = run_client([*common, "--threshold", "0.5"])
    assert status == 0
    assert out.startswith("accuracy ") and len(out.splitlines()) == 1, out[:500]


def test_big_going_away_mid_run_leaves_little_answers_standing(
    big_model_path, small_dataset, little_model_path, caplog
) -> None:
    little = load_model(little_model_path, prefer="zlib")
    clips = select_clips(small_dataset, "test", little.labels)
    handle = start_big(big_model_path)
    answered_before_stop = 5

    def stop_after_some_requests() -> None:
        deadline = time.monotonic() + 30
        while predict_requests(handle) < answered_before_stop and time.monotonic() < deadline:
            time.sleep(0.002)
        handle.stop()

    stopper = threading.Thread(target=stop_after_some_requests)
    stopper.start()
    with caplog.at_level(logging.WARNING), BigClient(handle.url, timeout=2, retries=1) as big:
        outcomes = run_cascade(clips, little, big, threshold=1.0, progress=False)  # asks about every clip
    stopper.join()

    report = summarize(outcomes, threshold=1.0)
    assert report["samples"] == len(clips)
    answered = [o for o in outcomes if o.big is not None]
    fallen_back = [o for o in outcomes if o.fallback]
    assert len(answered) >= answered_before_stop and fallen_back
    assert report["fallbacks"] == len(fallen_back) == len(clips) - len(answered)
    assert all(o.prediction == o.little for o in fallen_back)
    unreachable_warnings = [r for r in caplog.records if "unreachable" in r.getMessage()]
    assert len(unreachable_warnings) == 1, "one warning for the outage, not one per clip"


def test_calibration_uses_the_validation_split_never_test(
    server, small_dataset, little_model_path, tmp_path, run_client
) -> None:
    little = load_model(little_model_path, prefer="zlib")
    with BigClient(server.url) as big:
        calibration = calibrate_threshold(small_dataset, little, big, progress=False)
        budgeted = calibrate_threshold(small_dataset, little, big, max_big_fraction=0.25, progress=False)
    speakers_split = {partition_of(clip.speaker) for clip in calibration.clips}
    assert speakers_split == {"validation"}
    assert len(calibration.clips) == len(select_clips(small_dataset, "validation"))
    assert calibration.outcome.accuracy >= calibration.predictions.big_accuracy  # default target: Big's own
    assert budgeted.outcome.big_fraction <= 0.25

    report_path = tmp_path / "calibrated.json"
    requests_before = predict_requests(server)
    args = ["--service", server.url, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    assert run_client([*args, "--target-accuracy", "0.5", "--report", str(report_path)])[0] == 0
    report = json.loads(report_path.read_text())
    assert report["calibration"]["split"] == "validation"
    assert report["calibration"]["rule"] == "fewest Big requests reaching accuracy 0.5000"
    validation_clips = report["calibration"]["samples"]
    assert predict_requests(server) - requests_before == validation_clips + report["big_requests"]

    assert run_client([*args, "--report", str(report_path)])[0] == 0  # the default rule: a budget of Big requests
    report = json.loads(report_path.read_text())
    assert report["calibration"]["rule"].startswith("most accurate with at most 15.0%")
    assert report["calibration"]["cascade"]["big_fraction"] <= DEFAULT_MAX_BIG_FRACTION


def test_sweep_writes_table_json_and_png(server, small_dataset, little_model_path, tmp_path, run_client) -> None:
    report_path, plot_path = tmp_path / "sweep.json", tmp_path / "sweep.png"
    args = ["--service", server.url, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    sweep_flags = ["--sweep", "--threshold", "0.33", "--report", str(report_path), "--plot", str(plot_path)]
    status, table, _ = run_client([*args, *sweep_flags])
    assert status == 0
    assert "threshold" in table and "MB/800 clips" in table
    assert f"sweep plot written to {plot_path}" in table
    report = json.loads(report_path.read_text())
    rows = report["rows"]
    assert [row["threshold"] for row in rows] == sorted({*SWEEP_THRESHOLDS, 0.33})
    assert rows[0]["big_requests"] == 0 and rows[0]["accuracy"] == pytest.approx(report["little_accuracy"], abs=1e-6)
    assert [row["communication_bytes"] for row in rows] == sorted(row["communication_bytes"] for row in rows)
    assert plot_path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert predict_requests(server) == report["samples"], "Big is asked once per clip, not once per threshold"


def test_unreachable_service_at_calibration_names_the_flag(small_dataset, little_model_path, run_client) -> None:
    dead_service = f"http://127.0.0.1:{free_tcp_port()}"
    args = ["--service", dead_service, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    status, _, err = run_client([*args, "--retries", "0"])
    assert status == 2
    assert f"--service {dead_service}" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["--target-accuracy", "0"], "--target-accuracy must be in (0, 1]"),
        (["--threshold", "0.2", "--target-accuracy", "0.9"], "not allowed with argument"),
        (["--plot", "x.png"], "--plot draws the sweep"),
        (["--device", "pi kitchen"], "--device: device id 'pi kitchen' must start"),
        (["--service", "localhost:8080"], "--service must be an http:// or https:// URL"),
        (["--service", "http://"], "--service must be an http:// or https:// URL"),
    ],
)
def test_bad_flags_are_cli_errors(flags, complaint, run_client) -> None:
    status, _, err = run_client(["--data-dir", "nowhere", *flags])
    assert status == 2
    assert complaint in err and "Traceback" not in err


def test_missing_model_names_the_flag(tmp_path, run_client) -> None:
    status, _, err = run_client(["--data-dir", str(tmp_path), "--model", str(tmp_path / "none"), "--threshold", "0.1"])
    assert status == 2 and "--model" in err


# --------------------------------------------------------------------------- #
# A broken, hostile or locked Big: the run finishes on Little's answers, fallbacks counted by reason
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("behaviour", all_broken())
def test_run_against_a_broken_big_keeps_little_answers(
    behaviour, small_dataset, little_model_path, tmp_path, run_client
) -> None:
    report_path = tmp_path / "report.json"
    with BrokenBig(behaviour) as broken:
        status, out, err = run_client([
            "--service", broken.url, "--data-dir", str(small_dataset), "--model", str(little_model_path),
            "--threshold", "1.0", "--timeout", "0.5", "--report", str(report_path),  # every clip is sent to Big
        ])
        asked = broken.predict_requests
    assert status == 0, err
    assert "Traceback" not in err
    report = json.loads(report_path.read_text())
    assert report["big_requests"] == report["samples"] == report["fallbacks"]
    assert report["accuracy"] == report["little_accuracy"]
    assert all(clip["big"] is None and clip["fallback"] for clip in report["clips"])
    reasons = report["fallback_reasons"]
    assert reasons[EXPECTED_REASON[behaviour]] == asked == 3, "three failures open the breaker"
    assert reasons.get("circuit_open", 0) == report["samples"] - 3
    summary = f"{report['fallbacks']} fallbacks (circuit_open {report['samples'] - 3}, {EXPECTED_REASON[behaviour]} 3)"
    assert summary in out


def test_malformed_model_metadata_is_a_clear_error_naming_the_service(
    small_dataset, little_model_path, run_client
) -> None:
    with BrokenBig("good", model_body=b"<html>hello</html>") as fake:
        status, _, err = run_client([
            "--service", fake.url, "--data-dir", str(small_dataset), "--model", str(little_model_path),
            "--threshold", "0.5",
        ])
    assert status == 2
    assert f"error: --service {fake.url} does not answer as a Big service" in err and "/model" in err
    assert "Traceback" not in err


def test_token_and_https_end_to_end(
    big_model_path, small_dataset, little_model_path, tmp_path, run_client, test_pki, token_file
) -> None:
    from kws.rest.auth import read_token_file
    from kws.rest.tls import server_context

    service = BigService(big_model_path)
    service.load()
    context = server_context(test_pki.cert, test_pki.key)
    token = read_token_file(token_file)
    with start_server(service, port=0, threads=2, token=token, ssl_context=context) as handle:
        common = ["--service", handle.url, "--data-dir", str(small_dataset), "--model", str(little_model_path),
                  "--threshold", "1.0"]
        report_path = tmp_path / "r.json"
        status, _, err = run_client([*common, "--token-file", str(token_file), "--cafile", str(test_pki.ca),
                                     "--report", str(report_path)])
        assert status == 0, err
        report = json.loads(report_path.read_text())
        assert report["fallbacks"] == 0 and report["big_requests"] == report["samples"] == predict_requests(handle)

        wrong = tmp_path / "wrong-token"
        wrong.write_text("not-the-token-0123456789\n")
        wrong.chmod(0o600)
        # /model needs no token, so the breaker opens after three refused clips; an untrusted
        # certificate fails /model as well, which is the first of the three failures.
        for flags, reason, failed_clips in (
            (["--token-file", str(wrong), "--cafile", str(test_pki.ca)], "unauthorized", 3),
            (["--cafile", str(test_pki.ca)], "unauthorized", 3),
            (["--token-file", str(token_file), "--cafile", str(test_pki.other_ca)], "tls", 2),
        ):
            status, _, err = run_client([*common, *flags, "--report", str(report_path)])
            assert status == 0, err
            report = json.loads(report_path.read_text())
            assert report["fallbacks"] == report["samples"], flags
            assert report["fallback_reasons"] == {
                reason: failed_clips, "circuit_open": report["samples"] - failed_clips
            }, flags
            assert "Traceback" not in err


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--token-file", "/nonexistent"], "--token-file: cannot read /nonexistent"),
        (["--cafile", "/nonexistent.pem"], "--cafile /nonexistent.pem is not a file"),
        (["--breaker-failures", "0"], "--breaker-failures must be at least 1"),
    ],
)
def test_bad_security_flags_are_cli_errors(flags, complaint, run_client) -> None:
    status, _, err = run_client(["--data-dir", "nowhere", "--service", "https://127.0.0.1:1", *flags])
    assert status == 2 and complaint in err and "Traceback" not in err
