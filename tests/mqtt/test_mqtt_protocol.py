"""The MQTT wire protocol and the answer bookkeeping, without a broker.

Every way a message can be wrong must end in a ProtocolError (or, for the features
pack, a FeaturesPackError; see tests/wire/test_features_pack.py) that says what is
wrong (the inference client logs it and carries on), and the ensemble must
combine, deduplicate and account for answers exactly; the broker tests build on both.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest

from kws.features import FeatureConfig
from kws.mqtt.inference import InferenceService
from kws.mqtt.policies import combine
from kws.mqtt.protocol import (
    OFFLINE,
    ONLINE,
    BrokerAddress,
    ClientStatus,
    Prediction,
    ProtocolError,
    Topics,
    parse_broker_url,
)
from kws.mqtt.report import build_report, format_summary
from kws.mqtt.tracker import ACCEPTED, DUPLICATE, FINISHED_CLIP, OTHER_LABELS, UNKNOWN_CLIP, EnsembleTracker
from kws.wire.features_pack import ConfigMismatch, encode_features_pack

CONFIG = FeatureConfig(frame_length=640, frame_step=640, num_mel_bins=20, num_coefficients=10)
OTHER_CONFIG = FeatureConfig(frame_length=640, frame_step=640, num_mel_bins=20, num_coefficients=8)
LABELS = ("down", "stop", "right", "left", "up", "yes", "no", "go")


def features(seed: int = 0, config: FeatureConfig = CONFIG) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=config.shape).astype(np.float32)


def test_prediction_round_trips() -> None:
    prediction = Prediction("e1-7", "ensemble_1", LABELS, tuple(np.full(8, 0.125)), 1.5)
    assert Prediction.from_json(prediction.to_json()) == prediction


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"client": ""}, "'client'"),
        ({"labels": ["a", "a"]}, "repeats"),
        ({"scores": [0.5]}, "8 finite numbers"),
        ({"scores": [True] * 8}, "8 finite numbers"),
        ({"inference_ms": -1}, "non-negative"),
    ],
)
def test_malformed_predictions_are_refused(change: dict, message: str) -> None:
    data = json.loads(Prediction("e1", "ensemble_1", LABELS, (0.125,) * 8, 1.0).to_json()) | change
    with pytest.raises(ProtocolError, match=message):
        Prediction.from_json(json.dumps(data))


def test_status_round_trips_and_names_its_answer_source() -> None:
    online = ClientStatus("e1-a", ONLINE, "ensemble_1", "ensemble_1", CONFIG)
    assert ClientStatus.from_json(online.to_json()) == online
    assert online.answer_source == "share:ensemble_1"
    offline = ClientStatus.from_json(ClientStatus("e2", OFFLINE, "ensemble_2").to_json())
    assert offline.state == OFFLINE and offline.answer_source == "client:e2"


def test_topics() -> None:
    topics = Topics("kws")
    assert topics.audio("run-1") == "kws/audio/run-1"
    assert topics.shared(topics.all_audio, "ensemble_1") == "$share/ensemble_1/kws/audio/+"
    assert topics.prediction("e1", "run-1") == "kws/prediction/e1/run-1"
    assert topics.answer_of("kws/prediction/e1/run-1") == ("e1", "run-1")
    assert topics.client_of_status("kws/status/e1") == "e1"
    assert topics.clip_id_of("kws/audio/run-1", "audio") == "run-1"
    with pytest.raises(ProtocolError):
        topics.clip_id_of("kws/audio/run-1", "prediction")
    with pytest.raises(ProtocolError, match="<client>/<clip id>"):
        topics.answer_of("kws/prediction/run-1")  # the layout before answers named their sender
    with pytest.raises(ProtocolError):
        topics.answer_of("kws/prediction/e1/run-1/extra")
    with pytest.raises(ProtocolError):
        topics.prediction("e1/e2", "run-1")
    with pytest.raises(ProtocolError):
        topics.audio("a/b")
    with pytest.raises(ProtocolError):
        Topics("kws/#")


@pytest.mark.parametrize(
    ("url", "address"),
    [
        ("mqtt://127.0.0.1:1884", BrokerAddress("127.0.0.1", 1884)),
        ("mqtt://broker.local", BrokerAddress("broker.local", 1883)),
        ("localhost:1999", BrokerAddress("localhost", 1999)),
        ("mqtts://broker.local", BrokerAddress("broker.local", 8883, tls=True)),
        ("mqtts://127.0.0.1:18883", BrokerAddress("127.0.0.1", 18883, tls=True)),
    ],
)
def test_parse_broker_url(url: str, address: BrokerAddress) -> None:
    assert parse_broker_url(url) == address
    assert parse_broker_url(address.url) == address


@pytest.mark.parametrize(
    "url", ["ws://host:8883", "http://host", "mqtt://host:99999", "mqtt://:1883", "mqtt://h/x", "mqtt://user:pw@h"]
)
def test_parse_broker_url_refuses(url: str) -> None:
    with pytest.raises(ProtocolError):
        parse_broker_url(url)


# --------------------------------------------------------------------------- #
# The inference service (a stub model: no interpreter needed)
# --------------------------------------------------------------------------- #


@pytest.fixture
def service() -> InferenceService:
    model = SimpleNamespace(
        name="stub", labels=LABELS, feature_config=CONFIG,
        predict_features=lambda values: np.eye(8, dtype=np.float32)[int(values.sum() > 0)],
    )
    return InferenceService(model, "stub-1", Topics("kws"))


def test_service_answers_on_the_prediction_topic(service: InferenceService) -> None:
    topic, prediction = service.answer("kws/audio/run-00001", encode_features_pack("run-00001", features(), CONFIG))
    assert topic == "kws/prediction/stub-1/run-00001"
    assert prediction.client == "stub-1" and prediction.model == "stub" and prediction.labels == LABELS


def test_service_refuses_mismatched_ids_and_configs(service: InferenceService) -> None:
    with pytest.raises(ProtocolError, match="pack names clip run-00002"):
        service.answer("kws/audio/run-00001", encode_features_pack("run-00002", features(), CONFIG))
    with pytest.raises(ConfigMismatch):
        service.answer("kws/audio/x", encode_features_pack("x", features(config=OTHER_CONFIG), OTHER_CONFIG))


# --------------------------------------------------------------------------- #
# Combining and tracking answers
# --------------------------------------------------------------------------- #


def test_sum_and_vote_can_disagree_and_vote_ties_go_to_the_larger_sum() -> None:
    scores = np.array([[0.6, 0.4, 0], [0.55, 0.45, 0], [0.0, 1.0, 0]])
    assert combine(scores, "vote") == 0  # two votes against one
    assert combine(scores, "sum") == 1  # 1.85 against 1.15
    tied = np.array([[0.9, 0.1, 0], [0.3, 0.7, 0]])
    assert combine(tied, "vote") == 0  # one vote each; 1.2 beats 0.8


def answer(client: str, winner: str, labels=LABELS) -> Prediction:
    scores = [0.9 if label == winner else 0.1 / 7 for label in labels]
    return Prediction(client, client.split("-")[0], tuple(labels), tuple(scores), 1.0)


def test_tracker_deduplicates_maps_labels_and_ignores_strays() -> None:
    tracker = EnsembleTracker(LABELS, expect=2, timeout_s=5.0, policy="sum")
    tracker.sent("c1", "yes", now=0.0)
    assert tracker.add("c1", answer("a-1", "yes"), 0.1) == ACCEPTED
    assert tracker.add("c1", answer("a-1", "yes"), 0.2) == DUPLICATE  # a QoS 1 redelivery
    assert tracker.add("c9", answer("a-1", "yes"), 0.2) == UNKNOWN_CLIP
    assert tracker.add("c1", answer("x-1", "yes", labels=LABELS[:7] + ("maybe",)), 0.2) == OTHER_LABELS
    assert tracker.add("c1", answer("b-1", "yes", labels=tuple(reversed(LABELS))), 0.3) == ACCEPTED
    assert tracker.add("c1", answer("c-1", "yes"), 0.4) == FINISHED_CLIP
    (clip,) = tracker
    assert clip.complete and clip.predicted_label == "yes" and clip.finished_at == 0.3
    assert tracker.pending == 0


def test_report_counts_incomplete_and_missing_clips_as_they_are() -> None:
    tracker = EnsembleTracker(LABELS, expect=2, timeout_s=1.0, policy="vote")
    for clip_id, label in (("c1", "yes"), ("c2", "no"), ("c3", "up"), ("c4", "go")):
        tracker.sent(clip_id, label, now=0.0)
    tracker.add("c1", answer("a-1", "yes"), 0.1)
    tracker.add("c1", answer("b-1", "yes"), 0.2)
    tracker.add("c2", answer("a-1", "no"), 0.2)  # b never answers c2
    tracker.lost("c4", 0.0)  # QoS 0 publication while disconnected
    assert tracker.expire(now=1.0) == 2  # c2 (one answer) and c3 (none)
    report = build_report(tracker, started_at=0.0, qos={"audio": 0, "prediction": 0})
    assert report["samples"] == 4
    assert report["incomplete"] == 3 and report["missing"] == 2
    assert report["accuracy"] == 0.5  # c1 and c2 right; the missing c3 and c4 count as wrong
    assert report["answers_per_clip"] == {"min": 0, "mean": 0.75, "max": 2}
    assert report["per_model_accuracy"] == {"a": 1.0, "b": 1.0}
    assert report["latency_ms"]["median"] == pytest.approx(200.0)
    assert "2 missing" in format_summary(report)
