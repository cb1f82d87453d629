"""A hostile client on the broker: it answers every clip it sees with forged scores.

Used by ``bench/bench_forger.py`` and the trust tests (tests/mqtt/test_mqtt_trust.py)
to check that nobody on the broker can steer the ensemble. It is a real MQTT client
(our :class:`~kws.mqtt.connection.MqttConnection`, so it can log in and speak TLS
like any other), and it attacks in the ways a message can lie:

* under its **own name**, unannounced (the obvious forger), with scores that are no
  probabilities (1000 on one label), which would swamp a summed ensemble;
* under its own topic level, with a payload that **claims** to come from a member;
* as an **impersonator**: on a member's topic level with the member's name and model,
  and a valid one-hot vector, so nothing in the message tells it apart. Only the
  broker can stop that: an ACL that pins the topic level to the account.

Every forged answer says label ``labels[0]`` and carries ``inference_ms`` 0, which no
real model reports, so a benchmark can find any that were combined.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Mapping, Sequence

import paho.mqtt.client as mqtt

from kws.features import FeatureConfig
from kws.mqtt.connection import ConnectionSettings, MqttConnection, Retained
from kws.mqtt.protocol import OFFLINE, ONLINE, BrokerAddress, ClientStatus, Prediction, ProtocolError, Topics
from kws.mqtt.security import BrokerSecurity

FORGED_INFERENCE_MS = 0.0
OWN = "own name, inflated scores"
CLAIMED = "own topic, a member's name"
IMPERSONATED = "a member's topic and name"


class Forger:
    """Subscribes to the clips and answers each one, in every way it was told to, at once."""

    def __init__(
        self,
        broker: BrokerAddress,
        labels: Sequence[str],
        name: str = "forger",
        topics: Topics | None = None,
        own: bool = True,
        claim: Mapping[str, str] | None = None,
        impersonate: Mapping[str, str] | None = None,
        announce: FeatureConfig | None = None,
        security: BrokerSecurity | None = None,
        mqtt_version: str = "5",
    ) -> None:
        """``claim`` and ``impersonate`` map member client names to their models; ``announce``: publish an
        online status (model ``name``) with this FeatureConfig, as a client that wants into the roster would."""
        self.name = name
        self.labels = tuple(labels)
        self.topics = topics = topics or Topics()
        self.own = own
        self.claim = dict(claim or {})
        self.impersonate = dict(impersonate or {})
        self.sent: Counter[str] = Counter()
        """Forged answers published, by kind (:data:`OWN`, :data:`CLAIMED`, :data:`IMPERSONATED`)."""
        self.clips_seen = 0
        self._lock = threading.Lock()
        online = offline = None
        if announce is not None:
            online = Retained(topics.status(name), ClientStatus(name, ONLINE, name, None, announce).to_json())
            offline = Retained(topics.status(name), ClientStatus(name, OFFLINE, name).to_json())
        self.connection = MqttConnection(
            ConnectionSettings(
                broker, client_id=f"kws-{name}", mqtt_version=mqtt_version,
                subscriptions=[(topics.all_audio, 1)], online=online, offline=offline,
                security=security or BrokerSecurity(),
            ),
            self._answer,
        )

    def inflated(self) -> tuple[float, ...]:
        return (1000.0,) + (0.0,) * (len(self.labels) - 1)

    def one_hot(self) -> tuple[float, ...]:
        return (1.0,) + (0.0,) * (len(self.labels) - 1)

    def _answer(self, message: mqtt.MQTTMessage) -> None:
        try:
            clip_id = self.topics.clip_id_of(message.topic, "audio")
        except ProtocolError:
            return
        forged: list[tuple[str, str, Prediction]] = []
        if self.own:
            forged.append((OWN, self.name, Prediction(self.name, self.name, self.labels, self.inflated(),
                                                      FORGED_INFERENCE_MS)))
        for member, model in self.claim.items():
            forged.append((CLAIMED, self.name, Prediction(member, model, self.labels, self.one_hot(),
                                                          FORGED_INFERENCE_MS)))
        for member, model in self.impersonate.items():
            forged.append((IMPERSONATED, member, Prediction(member, model, self.labels, self.one_hot(),
                                                            FORGED_INFERENCE_MS)))
        for _kind, level, prediction in forged:
            self.connection.publish(self.topics.prediction(level, clip_id), prediction.to_json(), qos=1)
        with self._lock:
            self.clips_seen += 1
            for kind, _level, _prediction in forged:
                self.sent[kind] += 1

    def start(self, timeout_s: float = 10.0) -> Forger:
        """Connect and subscribe; raises ConnectionError when the broker will not have us (as an ACL'd one should)."""
        self.connection.start()
        if not self.connection.wait_connected(timeout_s):
            self.connection.stop()
            broker = self.connection.settings.broker.url
            raise ConnectionError(self.connection.refusal or f"the forger could not reach {broker}")
        return self

    def stop(self) -> None:
        self.connection.stop()

    def __enter__(self) -> Forger:
        return self.start()

    def __exit__(self, *_exc_info: object) -> None:
        self.stop()


def is_forged(inference_ms: float, scores: Sequence[float]) -> bool:
    """Whether a combined answer is one of a :class:`Forger`'s (label 0, all of it, in no time)."""
    return inference_ms == FORGED_INFERENCE_MS and float(scores[0]) >= 1.0
