"""A Big whose TFLite file holds the pretrained embedding itself, served for real: the clip and the Pi's mel
frames get the answers the model gives in process, and /health and /model say the model holds the embedding."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests
from conftest import start_big_service

from kws.audio import read_clip
from kws.data.clips import select_clips, spread_evenly
from kws.frontend.mel import clip_log_mel
from kws.model.runtime import KeywordModel, load_model
from kws.rest.client import BigClient
from kws.rest.server import ServerHandle
from kws.wire import audio_pack, mel_pack, senml

SENML_HEADERS = {"Content-Type": senml.MEDIA_TYPE}


@pytest.fixture(scope="module")
def model(tuned_embedding_model) -> KeywordModel:
    return load_model(tuned_embedding_model.stem)


@pytest.fixture(scope="module")
def server(tuned_embedding_model) -> Iterator[ServerHandle]:
    with start_big_service(tuned_embedding_model.stem, threads=2) as handle:
        yield handle


@pytest.fixture(scope="module")
def clips(data_dir: Path) -> list[np.ndarray]:
    return [read_clip(clip.path) for clip in spread_evenly(select_clips(data_dir, "test"), 6)]


def post(server: ServerHandle, body: bytes) -> requests.Response:
    response = requests.post(f"{server.url}/predict", data=body, headers=SENML_HEADERS, timeout=10)
    assert response.status_code == 200, response.text
    return response


def test_health_and_model_say_the_model_holds_the_embedding(server, model) -> None:
    health = requests.get(f"{server.url}/health", timeout=5).json()
    spec = model.metadata.front_end
    assert health["payloads"] == ["pcm", "mel"]
    assert health["front_end"] == {"package": spec.package, "version": spec.version,
                                   "fingerprint": spec.fingerprint, "embedding_in_model": True}
    info = requests.get(f"{server.url}/model", timeout=5).json()
    assert info["front_end"]["embedding_in_model"] is True and info["input_shape"] == [9, 76, 32, 1]


def test_the_clip_and_its_mel_frames_get_the_in_process_answers(server, model, clips) -> None:
    """PCM: the answer ``predict_audio`` gives. Mel: the answer the model gives to the frames the pack carries
    (int8, dequantized), and close to the clip's own, as for a head on the embeddings."""
    spec = model.metadata.front_end
    for index, pcm in enumerate(clips):
        by_pcm = post(server, audio_pack.encode_audio_pack(pcm, device="pi").encode()).json()
        np.testing.assert_allclose(by_pcm["scores"], model.predict_audio(pcm), atol=1e-5)
        body = mel_pack.mel_pack_body(f"pi-{index}", clip_log_mel(pcm, spec), spec)
        by_mel = post(server, body).json()
        sent = mel_pack.mel_from_records(senml.loads(body), spec).frames
        expected = model.predict_features(model.front_end.model_input_from_mel(sent))
        np.testing.assert_allclose(by_mel["scores"], expected, atol=1e-5)
        np.testing.assert_allclose(by_mel["scores"], by_pcm["scores"], atol=0.05)


def test_the_client_reads_the_block_and_sends_mel(server, model, clips) -> None:
    """The Pi's client takes the front end from /model, flag and all, and its mel answers match the clip's."""
    with BigClient(server.url, payload="auto") as big:
        answers = [big.predict(pcm) for pcm in clips]
    assert all(answer.payload == "mel" for answer in answers)
    for pcm, answer in zip(clips, answers, strict=True):
        np.testing.assert_allclose(answer.scores, model.predict_audio(pcm), atol=0.05)
