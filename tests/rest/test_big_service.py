"""The Big service over real sockets: every bad input answered in JSON, real clips, 32 clients at once."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import requests

from kws.audio import read_clip
from kws.data.clips import select_clips
from kws.model.runtime import load_model
from kws.rest import compression
from kws.rest import service as big_service
from kws.wire import audio_pack, senml

SENML_HEADERS = {"Content-Type": senml.MEDIA_TYPE}


@pytest.fixture(scope="module")
def big_model_path(shipped_model) -> Path:
    return shipped_model("big")


@pytest.fixture(scope="module")
def server(big_model_path: Path) -> Iterator[big_service.ServerHandle]:
    service = big_service.BigService(big_model_path)
    service.load()
    with big_service.start_server(service, port=0, threads=8) as handle:
        yield handle


@pytest.fixture(scope="module")
def test_clips(data_dir: Path) -> list:
    """The first test-split clip of each label."""
    firsts = {}
    for clip in select_clips(data_dir, "test"):
        firsts.setdefault(clip.label, clip)
    return list(firsts.values())


@pytest.fixture(scope="module")
def pcm(test_clips: list) -> np.ndarray:
    return read_clip(test_clips[0].path)


def post(
    server: big_service.ServerHandle, body: str | bytes, headers: dict[str, str] = SENML_HEADERS
) -> requests.Response:
    return requests.post(f"{server.url}/predict", data=body, headers=headers, timeout=10)


def assert_json_error(response: requests.Response, status: int, complaint: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    assert response.json() == {"error": response.json()["error"], "status": status}
    assert complaint in response.json()["error"]


def pack_with(records: list[dict]) -> str:
    return senml.dumps(records)


def audio_record(pcm_bytes: bytes, name: str = "audio") -> dict:
    return {"bn": "urn:dev:kws:test:", "n": name, "vd": senml.encode_data(pcm_bytes)}


RATE = {"n": "sample_rate", "u": "Hz", "v": 16000}


# --------------------------------------------------------------------------- #
# Predictions
# --------------------------------------------------------------------------- #


def test_predicts_real_clips_like_the_model_in_process(server, test_clips, big_model_path) -> None:
    model = load_model(big_model_path)
    correct = 0
    for clip in test_clips:
        samples = read_clip(clip.path)
        response = post(server, audio_pack.encode_audio_pack(samples, device="test"))
        assert response.status_code == 200, response.text
        answer = response.json()
        expected = model.predict_audio(samples)
        assert answer["labels"] == list(model.labels)
        assert answer["label"] == model.labels[answer["index"]] == model.labels[int(np.argmax(expected))]
        np.testing.assert_allclose(answer["scores"], expected, atol=1e-5)
        assert answer["model"] == {"name": model.name, "sha256": model.sha256}
        assert answer["inference_ms"] > 0
        correct += answer["label"] == clip.label
    # Judged against the accuracy the model's metadata records, so provisional models pass too:
    # a service that garbled clips on the way would fall far below it.
    expected = model.metadata.raw["accuracy"]["test"] * len(test_clips)
    assert correct >= int(expected) - 2, (
        f"{correct} of {len(test_clips)} right; the model's test accuracy says ~{expected:.1f}"
    )


def test_standard_padded_base64_from_older_clients_is_accepted(server, pcm) -> None:
    import base64

    record = {"bn": "urn:dev:kws:old:", "n": "audio", "vd": base64.b64encode(pcm.astype("<i2").tobytes()).decode()}
    assert post(server, pack_with([record, RATE])).status_code == 200


def test_short_clip_is_padded_not_refused(server, pcm) -> None:
    assert post(server, audio_pack.encode_audio_pack(pcm[:8000], device="test")).status_code == 200


def test_32_concurrent_clients(server, test_clips) -> None:
    bodies = [audio_pack.encode_audio_pack(read_clip(clip.path), device=f"pi-{i}") for i, clip in enumerate(test_clips)]
    expected = {body: post(server, body).json()["label"] for body in bodies}

    def client(number: int) -> list[str]:
        with requests.Session() as session:  # one keep-alive connection per client
            labels = []
            for body in (bodies[number % len(bodies)], bodies[(number + 1) % len(bodies)]):
                response = session.post(f"{server.url}/predict", data=body, headers=SENML_HEADERS, timeout=30)
                assert response.status_code == 200, response.text
                labels.append((body, response.json()["label"]))
            return labels

    with ThreadPoolExecutor(max_workers=32) as pool:
        results = [pair for answers in pool.map(client, range(32)) for pair in answers]
    assert len(results) == 64
    assert all(label == expected[body] for body, label in results)


# --------------------------------------------------------------------------- #
# Bad input: one test each, a JSON error, and the service stays up
# --------------------------------------------------------------------------- #


def test_malformed_json_is_400(server) -> None:
    assert_json_error(post(server, b'[{"n":"audio",'), 400, "malformed JSON")


def test_json_that_is_not_senml_is_400(server) -> None:
    assert_json_error(post(server, json.dumps({"audio": "AAAA"})), 400, "JSON array")


def test_senml_must_violation_is_400(server, pcm) -> None:
    record = {**audio_record(pcm.tobytes()), "v": 1}
    assert_json_error(post(server, pack_with([record, RATE])), 400, "2 value fields")


def test_bad_base64_is_400(server) -> None:
    record = {"bn": "urn:dev:kws:test:", "n": "audio", "vd": "AAAA*AAA"}
    assert_json_error(post(server, pack_with([record, RATE])), 400, "not base64")


def test_no_audio_record_is_422(server) -> None:
    assert_json_error(post(server, pack_with([RATE])), 422, "no 'audio' records")


def test_two_audio_records_is_422(server, pcm) -> None:
    record = audio_record(pcm[:1000].tobytes())
    assert_json_error(post(server, pack_with([record, record, RATE])), 422, "2 'audio' records")


def test_missing_sample_rate_is_422(server, pcm) -> None:
    assert_json_error(post(server, pack_with([audio_record(pcm.tobytes())])), 422, "no 'sample_rate' records")


def test_wrong_sample_rate_is_422(server, pcm) -> None:
    body = audio_pack.encode_audio_pack(pcm, sample_rate=8000, device="test")
    assert_json_error(post(server, body), 422, "sample rate is 8000 Hz; this service expects 16000 Hz")


def test_odd_byte_count_is_422(server, pcm) -> None:
    assert_json_error(post(server, pack_with([audio_record(pcm.tobytes()[:-1]), RATE])), 422, "odd count")


def test_clip_over_one_second_is_422(server) -> None:
    long_clip = np.zeros(16_001, dtype=np.int16)
    assert_json_error(post(server, audio_pack.encode_audio_pack(long_clip, device="test")), 422, "16001 samples")


def test_empty_clip_is_422(server) -> None:
    assert_json_error(post(server, pack_with([audio_record(b""), RATE])), 422, "0 samples")


def test_body_over_the_limit_is_413(server) -> None:
    assert_json_error(post(server, b"[" + b" " * big_service.MAX_BODY_BYTES + b"]"), 413, "over the 65536-byte limit")


def test_chunked_body_over_the_limit_is_413(server) -> None:
    chunks = iter([b"[", b" " * big_service.MAX_BODY_BYTES, b"]"])  # a generator: sent chunked, no Content-Length
    assert_json_error(post(server, chunks), 413, "over the 65536-byte limit")


def test_wrong_content_type_is_415(server, pcm) -> None:
    body = audio_pack.encode_audio_pack(pcm, device="test")
    assert_json_error(post(server, body, {"Content-Type": "application/json"}), 415, "application/senml+json")


def test_missing_content_type_is_415(server) -> None:
    response = requests.post(f"{server.url}/predict", data=b"[]", timeout=10)
    assert_json_error(response, 415, "got 'none'")


def test_get_on_predict_is_405(server) -> None:
    response = requests.get(f"{server.url}/predict", timeout=10)
    assert_json_error(response, 405, "method")
    assert response.headers["Allow"] == "POST"


def test_post_on_health_is_405(server) -> None:
    response = requests.post(f"{server.url}/health", timeout=10)
    assert_json_error(response, 405, "method")
    assert "GET" in response.headers["Allow"]


def test_unknown_path_is_404(server) -> None:
    assert_json_error(requests.get(f"{server.url}/no/such/path", timeout=10), 404, "/no/such/path")


def test_errors_do_not_break_a_keep_alive_connection(server, pcm) -> None:
    with requests.Session() as session:
        url = f"{server.url}/predict"
        assert session.post(url, data=b"[" + b" " * 70_000 + b"]", headers=SENML_HEADERS, timeout=10).status_code == 413
        assert session.post(url, data=b"x", headers={"Content-Type": "text/plain"}, timeout=10).status_code == 415
        good = audio_pack.encode_audio_pack(pcm, device="test")
        assert session.post(url, data=good, headers=SENML_HEADERS, timeout=10).status_code == 200


# --------------------------------------------------------------------------- #
# Compressed bodies (Content-Encoding)
# --------------------------------------------------------------------------- #


def coded_headers(encoding: str) -> dict[str, str]:
    return {**SENML_HEADERS, "Content-Encoding": encoding}


@pytest.mark.parametrize("encoding", ["deflate", "gzip", "Deflate"])
def test_a_compressed_body_gets_the_answer_the_plain_one_gets(server, pcm, encoding) -> None:
    pack = audio_pack.audio_pack_body(pcm, device="test")
    coded = compression.compress(pack, encoding.lower())
    assert len(coded) < 0.7 * len(pack), "speech PCM in base64 deflates to well under 70 %"
    plain, compressed = post(server, pack), post(server, coded, coded_headers(encoding))
    assert plain.status_code == compressed.status_code == 200, compressed.text
    assert compressed.json()["scores"] == plain.json()["scores"]


def test_health_lists_the_request_codings(server) -> None:
    assert requests.get(f"{server.url}/health", timeout=10).json()["content_encodings"] == ["deflate", "gzip"]


def test_a_body_that_inflates_past_the_limit_is_413_and_the_service_stays_up(server, pcm) -> None:
    bomb = compression.compress(b"[" + b" " * 50_000_000 + b"]")  # 50 MB of JSON whitespace in ~49 KB
    assert len(bomb) <= big_service.MAX_BODY_BYTES
    assert_json_error(post(server, bomb, coded_headers("deflate")), 413, "once deflate-decoded")
    assert post(server, audio_pack.encode_audio_pack(pcm, device="test")).status_code == 200


@pytest.mark.parametrize(
    ("mangle", "complaint"),
    [
        (lambda coded: b"not deflate at all", "not valid deflate data"),
        (lambda coded: coded[: len(coded) // 2], "cut short"),
        (lambda coded: coded + b"more", "bytes follow the end"),
    ],
    ids=["garbage", "cut-short", "trailing-bytes"],
)
def test_a_broken_compressed_body_is_400(server, pcm, mangle, complaint) -> None:
    coded = compression.compress(audio_pack.audio_pack_body(pcm, device="test"))
    assert_json_error(post(server, mangle(coded), coded_headers("deflate")), 400, complaint)


@pytest.mark.parametrize("encoding", ["br", "gzip, deflate", "compress"])
def test_an_unknown_or_stacked_coding_is_415_naming_the_ones_that_work(server, pcm, encoding) -> None:
    response = post(server, audio_pack.audio_pack_body(pcm, device="test"), coded_headers(encoding))
    assert_json_error(response, 415, "deflate, gzip")
    assert response.headers["Accept-Encoding"] == "deflate, gzip", "RFC 7694: say which codings would do"


# --------------------------------------------------------------------------- #
# /health, /model, /metrics
# --------------------------------------------------------------------------- #


def test_health_is_503_until_the_model_is_loaded(big_model_path, pcm) -> None:
    service = big_service.BigService(big_model_path)
    with big_service.start_server(service, port=0, threads=2) as handle:
        loading = requests.get(f"{handle.url}/health", timeout=10)
        assert loading.status_code == 503 and loading.json()["status"] == "loading"
        assert_json_error(post(handle, audio_pack.encode_audio_pack(pcm, device="test")), 503, "still loading")
        service.load()
        ready = requests.get(f"{handle.url}/health", timeout=10)
        assert ready.status_code == 200 and ready.json()["status"] == "ready"


def test_model_endpoint_returns_the_metadata(server, big_model_path) -> None:
    response = requests.get(f"{server.url}/model", timeout=10)
    assert response.status_code == 200
    assert response.json() == json.loads(big_model_path.with_suffix(".json").read_text())


def test_metrics_in_prometheus_text_format(server, pcm) -> None:
    post(server, audio_pack.encode_audio_pack(pcm, device="test"))
    post(server, b"[", SENML_HEADERS)
    response = requests.get(f"{server.url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    assert samples['kws_http_requests_total{path="/predict",status="200"}'] >= 1
    assert samples['kws_http_requests_total{path="/predict",status="400"}'] >= 1
    assert samples['kws_http_errors_total{status="400"}'] >= 1
    assert samples['kws_predict_latency_seconds_bucket{le="+Inf"}'] == samples["kws_predict_latency_seconds_count"]
    assert samples["kws_predict_latency_seconds_sum"] > 0
    assert samples["kws_model_ready"] == 1
    assert "# TYPE kws_predict_latency_seconds histogram" in response.text
    assert samples["process_resident_memory_bytes"] > 10_000_000  # the process collector is registered


def test_cli_refuses_a_busy_port(server, big_model_path, cli) -> None:
    done = cli("big_service.py", "--port", str(server.port), "--model", str(big_model_path))
    assert done.returncode == 2 and f"--port {server.port}" in done.stderr


def test_cli_refuses_a_missing_model(tmp_path, cli) -> None:
    done = cli("big_service.py", "--port", "0", "--model", str(tmp_path / "nothing"))
    assert done.returncode == 2 and "--model" in done.stderr
    assert "serving model" not in done.stderr, "nothing is served before the model has loaded"


def test_request_failing_before_routing_still_gets_json(server) -> None:
    """HTTP/1.1 without a Host header fails in CherryPy's header stage, before any app config applies."""
    with socket.create_connection((server.host, server.port), timeout=10) as connection:
        connection.sendall(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n")
        raw = b""
        while chunk := connection.recv(65536):
            raw += chunk
    head, body = raw.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 400 ")
    assert b"Content-Type: application/json" in head
    assert json.loads(body) == {"error": "HTTP/1.1 requires a 'Host' request header.", "status": 400}


# --------------------------------------------------------------------------- #
# The features payload
# --------------------------------------------------------------------------- #


def big_features_pack(pcm: np.ndarray, config, encoding: str = "int8", clip_id: str = "pi-1") -> str:
    from kws.features import compute_features
    from kws.wire.features_pack import encode_features_pack

    return encode_features_pack(clip_id, compute_features(pcm, config), config, encoding=encoding)


@pytest.mark.parametrize("encoding", ["int8", "float16", "float32"])
def test_features_pack_gets_the_answer_the_clip_gets(server, big_model_path, test_clips, encoding) -> None:
    model = load_model(big_model_path)
    health = requests.get(f"{server.url}/health", timeout=10).json()
    assert health["payloads"] == ["pcm", "features"]
    for clip in test_clips:
        pcm = read_clip(clip.path)
        by_audio = post(server, audio_pack.encode_audio_pack(pcm, device="test")).json()
        by_features = post(server, big_features_pack(pcm, model.feature_config, encoding))
        assert by_features.status_code == 200, by_features.text
        assert by_features.json()["label"] == by_audio["label"]
        np.testing.assert_allclose(by_features.json()["scores"], by_audio["scores"], atol=0.05)


def test_features_of_another_config_or_shape_are_422_naming_the_difference(server, big_model_path, pcm) -> None:
    import dataclasses

    from kws.wire.features_pack import encode_features_pack

    config = load_model(big_model_path).feature_config
    other = dataclasses.replace(config, num_mel_bins=32)
    assert_json_error(post(server, big_features_pack(pcm, other)), 422,
                      "features made for another model: clip pi-1: features were made with another FeatureConfig: "
                      f"num_mel_bins 32 (model: {config.num_mel_bins})")
    records = json.loads(encode_features_pack("pi-2", np.zeros(config.shape, np.float32), config))
    next(r for r in records if r["n"] == "shape")["vs"] = "10x40"
    assert_json_error(post(server, json.dumps(records)), 422, "shape 10x40 does not match its config's 49x40")
    records = json.loads(big_features_pack(pcm, config))
    next(r for r in records if r.get("vd"))["vd"] = "AAAA"
    assert_json_error(post(server, json.dumps(records)), 422, "features hold 3 bytes; shape 49x40 of int8 needs 1960")
    assert requests.get(f"{server.url}/health", timeout=10).status_code == 200, "the service stays up"
    assert post(server, big_features_pack(pcm, config)).status_code == 200


def test_no_access_line_per_request(server, pcm, caplog) -> None:
    """/metrics counts the requests; a line per request would cost the service CPU and fill its log."""
    with caplog.at_level(logging.DEBUG):
        assert post(server, audio_pack.encode_audio_pack(pcm, device="test")).status_code == 200
        assert requests.get(f"{server.url}/health", timeout=10).status_code == 200
    assert not [record for record in caplog.records if record.name.startswith("cherrypy.access")]


def test_an_https_client_on_this_plain_http_service_is_told_at_once(server) -> None:
    """A TLS ClientHello has no CRLF: the service answers it at once instead of waiting for a head, and
    the client says the service speaks plain HTTP, instead of reporting a timeout."""
    import time

    from kws.rest.client import BigClient, BigUnavailable

    started = time.monotonic()
    with BigClient(server.url.replace("http://", "https://"), timeout=5.0, retries=0) as big:
        with pytest.raises(BigUnavailable) as failure:
            big.health()
    assert failure.value.reason == "tls" and "answered in plain HTTP" in str(failure.value)
    assert time.monotonic() - started < 3.0
    assert requests.get(f"{server.url}/health", timeout=5).status_code == 200
