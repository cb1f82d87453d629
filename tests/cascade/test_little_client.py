"""The Little client end to end against a real Big service: runs with the shipped threshold, both payloads,
unlabelled clips, outages and CLI errors; and against broken Bigs (bench/broken_big.py), a token and HTTPS:
fallbacks counted by reason, never a crash. Recalibrating and the sweep are calibrate.py's (tests/tuning/)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
import time
from pathlib import Path

import pytest
from conftest import predict_requests, start_big_service

from bench.broken_big import EXPECTED_REASON, BrokenBig, all_broken
from kws.audio import read_clip
from kws.cascade.run import run_cascade, summarize
from kws.data.clips import select_clips
from kws.model.runtime import load_model
from kws.rest.client import BigClient
from kws.rest.service import BigService, start_server
from kws.util.net import free_tcp_port


@pytest.fixture(scope="module")
def big_model_path(shipped_model) -> Path:
    return shipped_model("big")


@pytest.fixture(scope="module")
def little_model_path(shipped_model) -> Path:
    return shipped_model("little")


@pytest.fixture
def run_client(cli):
    """little_client.py as a process; returns (exit status, stdout, stderr)."""

    def run(args: list[str]) -> tuple[int, str, str]:
        done = cli("little_client.py", *args, "--no-progress")
        return done.returncode, done.stdout, done.stderr

    return run


def shipped_threshold(model_path: Path) -> float:
    return json.loads(model_path.with_suffix(".json").read_text())["cascade"]["threshold"]


#: A request body's size, per payload, as its SenML pack and deflated (what the service answered).
PACK_BYTES = {"pcm": (42_000, 43_000), "features": (2_500, 3_500), "mel": (4_000, 5_200)}
DEFLATED_BYTES = {"pcm": (22_000, 32_000), "features": (1_600, 2_800), "mel": (2_400, 4_000)}


@pytest.mark.parametrize("payload", ["pcm", "mel"])
@pytest.mark.parametrize("compress", ["auto", "none"])
def test_run_with_the_shipped_threshold(
    payload, compress, paired_big_server, small_dataset, little_model_path, tmp_path, run_client
) -> None:
    big_server = paired_big_server
    report_path = tmp_path / "cascade.json"
    common = ["--service", big_server.url, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    status, out, err = run_client([*common, "--payload", payload, "--compress", compress, "--report", str(report_path)])
    assert status == 0, err
    low, high = (DEFLATED_BYTES if compress == "auto" else PACK_BYTES)[payload]

    report = json.loads(report_path.read_text())
    test_clips = select_clips(small_dataset, "test")
    threshold = shipped_threshold(little_model_path)
    assert report["mode"] == "cascade" and report["big_model"]["payload"] == payload
    assert report["samples"] == report["labelled"] == len(test_clips) == len(report["clips"])
    assert report["threshold"] == threshold and report["calibration"]["shipped"]
    assert report["big_model"]["calibrated_with"], "the shipped threshold was calibrated against this very Big"
    asked = sum(clip["margin"] < threshold for clip in report["clips"])
    assert report["big_requests"] == predict_requests(big_server) == asked
    assert report["big_fraction"] == pytest.approx(report["big_requests"] / report["samples"], abs=1e-6)
    assert report["fallbacks"] == 0
    assert report["big_requests"] > 0, "the small dataset has clips Little is unsure of, so bytes are counted"
    assert low * report["big_requests"] <= report["communication_bytes"] <= high * report["big_requests"]
    pack_low, pack_high = PACK_BYTES[payload]
    assert pack_low * report["big_requests"] <= report["pack_bytes"] <= pack_high * report["big_requests"]
    encoding = "deflate" if compress == "auto" else "identity"  # the service lists deflate in /health
    assert report["big_model"]["content_encoding"] == encoding
    assert {clip["content_encoding"] for clip in report["clips"] if clip["big"]} <= {encoding}
    assert report["bytes_by_payload"] == ({payload: report["communication_bytes"]} if report["big_requests"] else {})
    if report["big_requests"]:  # heads both ways come on top of the request bodies
        assert report["wire_bytes"] > report["communication_bytes"] + 300 * report["big_requests"]
    correct = sum((clip["big"] or clip["little"]) == clip["label"] for clip in report["clips"])
    assert report["accuracy"] == pytest.approx(correct / report["samples"], abs=1e-6)
    for name in ("little_median", "little_p95", "end_to_end_median"):
        assert report["latency_ms"][name] > 0
    assert "accuracy" in out and f"report written to {report_path}" in out


def test_features_and_pcm_get_the_same_answers_from_big(big_server, small_dataset, little_model_path) -> None:
    """Big answers its own int8 features as it answers the clip (a near-tie may flip, no more)."""
    clips = select_clips(small_dataset, "all")
    labels = {}
    for payload in ("pcm", "features"):
        with BigClient(big_server.url, payload=payload) as big:
            labels[payload] = [big.predict(read_clip(clip.path)).label for clip in clips]
    agree = sum(a == b for a, b in zip(labels["pcm"], labels["features"]))
    assert agree >= len(clips) - 1


def test_unlabelled_clips_are_classified_and_accuracy_is_not_invented(
    big_server, small_dataset, little_model_path, tmp_path, run_client
) -> None:
    recordings = tmp_path / "recordings"  # what a Pi records: no label folders
    recordings.mkdir()
    for index, clip in enumerate(select_clips(small_dataset, "test")[:6]):
        shutil.copyfile(clip.path, recordings / f"take-{index}.wav")
    report_path = tmp_path / "unlabelled.json"
    status, out, err = run_client(["--service", big_server.url, "--model", str(little_model_path), str(recordings),
                                   "--report", str(report_path)])
    assert status == 0, err
    report = json.loads(report_path.read_text())
    assert report["samples"] == 6 and report["labelled"] == 0
    assert report["accuracy"] is None and report["little_accuracy"] is None
    assert sum(report["predictions"].values()) == 6
    assert out.startswith("6 unlabelled clips")


def test_without_report_prints_a_summary_and_no_json(big_server, small_dataset, little_model_path, run_client) -> None:
    common = ["--service", big_server.url, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    status, out, _ = run_client([*common, "--threshold", "0.5"])
    assert status == 0
    assert out.startswith("accuracy ") and len(out.splitlines()) == 1, out[:500]


def test_a_big_that_differs_from_the_calibrated_one_is_warned_about(
    shipped_model, small_dataset, little_model_path, run_client
) -> None:
    other_big = start_big_service(shipped_model("ensemble_2"))  # same labels and features, another model
    with other_big:
        args = ["--service", other_big.url, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
        status, _, err = run_client(args)
    assert status == 0
    assert "is not the one Little's threshold was calibrated with" in err and "calibrate.py cascade" in err


def test_a_model_without_a_shipped_threshold_names_the_way_out(
    big_server, small_dataset, little_model_path, tmp_path, run_client
) -> None:
    copy = tmp_path / "little"
    for path in little_model_path.parent.glob(little_model_path.name + ".*"):
        shutil.copy(path, tmp_path)
    metadata = json.loads((tmp_path / "little.json").read_text())
    del metadata["cascade"]
    (tmp_path / "little.json").write_text(json.dumps(metadata))
    status, _, err = run_client(["--service", big_server.url, "--data-dir", str(small_dataset), "--model", str(copy)])
    assert status == 2 and "no cascade threshold" in err and "pass --threshold T" in err
    assert f"error: --model {copy}: " in err


def test_big_going_away_mid_run_leaves_little_answers_standing(
    big_model_path, small_dataset, little_model_path, caplog
) -> None:
    little = load_model(little_model_path, prefer="zlib")
    clips = select_clips(small_dataset, "test", little.labels)
    handle = start_big_service(big_model_path)
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


def test_unreachable_service_leaves_every_answer_to_little(small_dataset, little_model_path, run_client) -> None:
    dead_service = f"http://127.0.0.1:{free_tcp_port()}"
    args = ["--service", dead_service, "--data-dir", str(small_dataset), "--model", str(little_model_path)]
    status, out, err = run_client([*args, "--retries", "0"])
    assert status == 0, err
    assert "fallbacks" in out and "unreachable" in err


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--threshold", "1.5"], "--threshold must be between 0 and 1"),
        (["--calibrate", "x"], "--calibrate is offline work, done by: python calibrate.py cascade"),
        (["--sweep"], "--sweep is offline work, done by: python calibrate.py sweep"),
        (["--plot", "x.png"], "--plot is offline work, done by: python calibrate.py sweep --plot PNG"),
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--payload", "mp3"], "argument --payload: invalid choice"),
        (["--device", "pi kitchen"], "--device: device id 'pi kitchen' must start"),
        (["--service", "localhost:8080"], "--service must be an http:// or https:// URL"),
        (["--service", "http://"], "--service must be an http:// or https:// URL"),
        (["--service", "http://big:8080/predict"], "give http://big:8080, not http://big:8080/predict"),
        (["--service", "https://big/kws/health/"], "give https://big/kws, not https://big/kws/health/"),
    ],
)
def test_bad_flags_are_cli_errors(flags, complaint, run_client) -> None:
    status, _, err = run_client(["--data-dir", "nowhere", *flags])
    assert status == 2
    assert complaint in err and "Traceback" not in err


def test_missing_inputs_name_what_is_wrong(tmp_path, little_model_path, run_client) -> None:
    status, _, err = run_client(["--model", str(little_model_path), str(tmp_path / "nothing.wav")])
    assert status == 2 and "CLIP_OR_DIR" in err and "neither a clip file" in err


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


def test_a_proxy_the_client_cannot_use_is_a_cli_error(cli) -> None:
    done = cli("little_client.py", "--data-dir", "nowhere", "--service", "https://127.0.0.1:1", "--no-progress",
               env={"https_proxy": "socks5://127.0.0.1:1080", "no_proxy": "", "NO_PROXY": ""})
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "--service https://127.0.0.1:1: $https_proxy names a proxy this client cannot use" in done.stderr


def test_unusable_files_are_skipped_and_reported(big_server, small_dataset, little_model_path, tmp_path, run_client):
    """A 44.1 kHz recording, an empty file and a 3 s one in the folder: each skipped with its reason,
    never classified nor sent to Big, and the run goes on."""
    import shutil

    from conftest import add_unusable_recordings

    folder = tmp_path / "clips"
    shutil.copytree(small_dataset / "yes", folder / "yes")
    unusable = add_unusable_recordings(folder / "yes")
    report_path = tmp_path / "report.json"
    status, out, err = run_client(["--service", big_server.url, "--model", str(little_model_path), "--threshold", "1.0",
                                   "--report", str(report_path), str(folder)])
    assert status == 0, err
    report = json.loads(report_path.read_text())
    reasons = {entry["clip"]: entry["reason"] for entry in report["skipped"]}
    assert set(reasons) == unusable
    assert "--listen" in reasons["yes/long_nohash_0.wav"] and "44100 Hz" in reasons["yes/cd_nohash_0.wav"]
    assert report["samples"] == report["big_requests"] == len(list((small_dataset / "yes").iterdir()))
    assert "3 files skipped" in out and not report["interrupted"]


def test_ctrl_c_keeps_the_clips_classified_so_far(big_server, data_dir, little_model_path, tmp_path) -> None:
    from conftest import interrupt_script

    report_path = tmp_path / "report.json"
    done = interrupt_script("little_client.py", "--service", big_server.url, "--model", str(little_model_path),
                            "--data-dir", str(data_dir), "--split", "all", "--report", str(report_path),
                            once="Big service")  # negotiated with Big: the clips are being classified
    out, err = done.stdout, done.stderr
    assert done.returncode == 130, err
    assert "Traceback" not in err and "interrupted after" in err
    report = json.loads(report_path.read_text())
    assert report["interrupted"] and 0 < report["samples"] < 2_755 and len(report["clips"]) == report["samples"]
    assert "interrupted: the clips classified until Ctrl-C" in out
