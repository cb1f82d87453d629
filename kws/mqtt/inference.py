"""An MQTT inference client: one keyword-spotting model answering every clip it is sent.

It subscribes to ``<prefix>/audio/+``, decodes each features pack
(:mod:`kws.wire.features_pack`), runs its model and publishes the class
probabilities on ``<prefix>/prediction/<client>/<clip id>``, under its own name (a
broker's ACL may pin that level to the account it logged in with). A pack made with another
FeatureConfig than the model's is skipped, never answered wrongly; a malformed one
is logged and skipped too, and the client stays up. Counts of both are logged
when it stops.

:class:`InferenceService` is the part without MQTT (features pack in, answer out);
:class:`InferenceClient` connects it to a broker.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections import Counter

import paho.mqtt.client as mqtt

from kws.model.runtime import KeywordModel, NonFiniteScores
from kws.mqtt.connection import ConnectionSettings, MqttConnection, Retained
from kws.mqtt.protocol import OFFLINE, ONLINE, ClientStatus, Prediction, ProtocolError, Topics, check_identifier
from kws.wire.features_pack import (
    ConfigMismatch,
    FeaturesPackError,
    check_config,
    config_from_json,
    decode_features_pack,
)

log = logging.getLogger(__name__)

ANSWERED = "answered"
CONFIG_MISMATCH = "skipped: other FeatureConfig"
MALFORMED = "skipped: malformed"
OTHER_TOPIC = "ignored: not subscribed"
FAILED = "failed"
REFUSED = "refused by the broker"


class InferenceService:
    """Features pack in, prediction out; knows nothing of MQTT, so it is easy to test."""

    def __init__(self, model: KeywordModel, client_name: str, topics: Topics) -> None:
        self.model = model
        self.client_name = check_identifier(client_name, "client name")
        self.topics = topics

    def answer(self, topic: str, payload: bytes) -> tuple[str, Prediction]:
        """The prediction topic and answer for one audio message.

        Raises :class:`ConfigMismatch` for features made for another model,
        :class:`FeaturesPackError` for a malformed pack and :class:`ProtocolError`
        for a topic or clip id that breaks the protocol.
        """
        clip_id = self.topics.clip_id_of(topic, "audio")
        message = decode_features_pack(payload)
        if message.clip_id != clip_id:
            raise ProtocolError(f"topic names clip {clip_id} but the pack names clip {message.clip_id}")
        check_config(message, self.model.feature_config)
        started = time.perf_counter()
        scores = self.model.predict_features(message.features)
        inference_ms = (time.perf_counter() - started) * 1e3
        prediction = Prediction(
            client=self.client_name,
            model=self.model.name,
            labels=self.model.labels,
            scores=tuple(float(score) for score in scores),
            inference_ms=inference_ms,
        )
        return self.topics.prediction(self.client_name, clip_id), prediction


class InferenceClient:
    """An :class:`InferenceService` connected to a broker.

    ``settings`` says where and as whom to connect; the subscriptions and the
    online/offline status are added here.
    """

    def __init__(
        self,
        service: InferenceService,
        settings: ConnectionSettings,
        qos: int,
        share: str | None = None,
    ) -> None:
        self.service = service
        self.qos = qos
        self.counts: Counter[str] = Counter()
        topics = service.topics
        audio_filter = topics.shared(topics.all_audio, share) if share else topics.all_audio
        status_topic = topics.status(service.client_name)
        name, model = service.client_name, service.model
        online = ClientStatus(name, ONLINE, model.name, share, model.feature_config)
        offline = ClientStatus(name, OFFLINE, model.name, share)
        settings = dataclasses.replace(
            settings,
            subscriptions=[(audio_filter, qos), (topics.config, 1)],
            online=Retained(status_topic, online.to_json()),
            offline=Retained(status_topic, offline.to_json()),
        )
        self.connection = MqttConnection(settings, self._handle_message)

    def start(self) -> None:
        log.info("%s: model %s (%s) loaded; connecting to %s", self.service.client_name, self.service.model.name,
                 self.service.model.interpreter_name, self.connection.settings.broker.url)
        self.connection.start()

    def stop(self) -> None:
        self.connection.stop()
        if self.connection.refused_publications:
            self.counts[REFUSED] = self.connection.refused_publications
        summary = ", ".join(f"{count} {what}" for what, count in sorted(self.counts.items())) or "no clips"
        log.info("%s: stopped after %s", self.service.client_name, summary)

    def _handle_message(self, message: mqtt.MQTTMessage) -> None:
        topics = self.service.topics
        if message.topic == topics.config:
            self._check_session_config(message.payload)
            return
        if not message.topic.startswith(f"{topics.prefix}/audio/"):
            # amqtt 0.12 sends a connecting client the retained messages of *every* client's subscriptions
            self.counts[OTHER_TOPIC] += 1
            log.debug("ignored a message on %s, a topic we did not subscribe to", message.topic)
            return
        try:
            reply_topic, prediction = self.service.answer(message.topic, message.payload)
        except ConfigMismatch as error:
            self.counts[CONFIG_MISMATCH] += 1
            log.warning("skipped: %s", error)
            return
        except (ProtocolError, FeaturesPackError, NonFiniteScores) as error:
            self.counts[MALFORMED] += 1
            log.warning("skipped malformed message on %s: %s", message.topic, error)
            return
        except Exception:  # a bug must cost one clip, not paho's network thread and so the client
            self.counts[FAILED] += 1
            log.exception("failed to answer %s", message.topic)
            return
        self.connection.publish(reply_topic, prediction.to_json(), qos=self.qos)
        self.counts[ANSWERED] += 1
        log.debug("answered %s in %.2f ms", reply_topic, prediction.inference_ms)

    def _check_session_config(self, payload: bytes) -> None:
        """Warn early when the cooperative client announces features this model cannot use."""
        if not payload:  # a cleared retained message
            return
        try:
            config = config_from_json(payload.decode("utf-8", errors="replace"), "announced config")
        except FeaturesPackError as error:
            log.warning("ignoring %s: %s", self.service.topics.config, error)
            return
        if config == self.service.model.feature_config:
            log.info("the announced FeatureConfig matches model %s", self.service.model.name)
        else:
            log.warning("the announced FeatureConfig differs from model %s's: its clips will be skipped",
                        self.service.model.name)
