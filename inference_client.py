"""An MQTT inference client: one keyword-spotting model answering every clip it is sent.

It subscribes to ``<prefix>/audio/+``, decodes each features pack (see
``mqtt_protocol``), runs its model and publishes the class probabilities on
``<prefix>/prediction/<clip id>``. A pack made with another FeatureConfig than the
model's is skipped, never answered wrongly; a malformed one is logged and skipped
too, and the client stays up. Counts of both are logged when it stops.

Run one per model; the cooperative client combines their answers::

    python inference_client.py --model models/ensemble_1 --broker mqtt://127.0.0.1:1883

To scale one model, start replicas with ``--share``: they join one MQTT 5 shared
subscription (``$share/<group>/kws/audio/+``), so each clip goes to one replica of
that model while every other model still sees every clip. The group defaults to the
model's name; mosquitto supports it, amqtt (the embedded broker) does not.

It reconnects and resubscribes by itself after a broker restart, and stops cleanly
on SIGTERM or Ctrl-C (announcing itself offline and dropping its session).
"""

# ruff: noqa: E402 - imports follow the environment line on purpose
from __future__ import annotations

import os

# One clip at a time: OpenBLAS's thread pool only adds hand-offs to the small matrix
# products of one clip's features (see little_client.py for the measurement).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import dataclasses
import logging
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Sequence

import paho.mqtt.client as mqtt

from kws_model import KeywordModel, ModelError, load_model
from mqtt_connection import (
    DEFAULT_SESSION_EXPIRY_S,
    MQTT_VERSIONS,
    ConnectionSettings,
    MqttConnection,
    Retained,
)
from mqtt_protocol import (
    DEFAULT_TOPIC_PREFIX,
    OFFLINE,
    ONLINE,
    ClientStatus,
    ConfigMismatch,
    Prediction,
    ProtocolError,
    Topics,
    check_config,
    check_identifier,
    config_from_json,
    decode_features_pack,
    parse_broker_url,
)

log = logging.getLogger("inference_client")

ANSWERED = "answered"
CONFIG_MISMATCH = "skipped: other FeatureConfig"
MALFORMED = "skipped: malformed"
OTHER_TOPIC = "ignored: not subscribed"
FAILED = "failed"


class InferenceService:
    """Features pack in, prediction out; knows nothing of MQTT, so it is easy to test."""

    def __init__(self, model: KeywordModel, client_name: str, topics: Topics) -> None:
        self.model = model
        self.client_name = check_identifier(client_name, "client name")
        self.topics = topics

    def answer(self, topic: str, payload: bytes) -> tuple[str, Prediction]:
        """The prediction topic and answer for one audio message.

        Raises :class:`ConfigMismatch` for features made for another model and
        :class:`ProtocolError` for anything malformed.
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
        return self.topics.prediction(clip_id), prediction


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
        log.info("%s: serving model %s (%s) on %s", self.service.client_name, self.service.model.name,
                 self.service.model.interpreter_name, self.connection.settings.broker.url)
        self.connection.start()

    def stop(self) -> None:
        self.connection.stop()
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
        except ProtocolError as error:
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
        except ProtocolError as error:
            log.warning("ignoring %s: %s", self.service.topics.config, error)
            return
        if config == self.service.model.feature_config:
            log.info("the announced FeatureConfig matches model %s", self.service.model.name)
        else:
            log.warning("the announced FeatureConfig differs from model %s's: its clips will be skipped",
                        self.service.model.name)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Answer keyword-spotting features received over MQTT with one model.",
        epilog="examples:\n"
        "  python inference_client.py --model models/ensemble_1 --broker mqtt://127.0.0.1:1883\n"
        "  # two replicas of one model splitting its clips (shared subscription; mosquitto, not amqtt):\n"
        "  python inference_client.py --model models/ensemble_1 --share &\n"
        "  python inference_client.py --model models/ensemble_1 --share &",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model stem or file, e.g. models/ensemble_1")
    parser.add_argument(
        "--broker", default="mqtt://127.0.0.1:1883", metavar="URL", help="broker URL (default: %(default)s)"
    )
    parser.add_argument("--name", help="client name in answers, status and client id (default: <model>-<pid>)")
    parser.add_argument(
        "--topic-prefix", default=DEFAULT_TOPIC_PREFIX, metavar="PREFIX", help="topic prefix (default: %(default)s)"
    )
    parser.add_argument(
        "--share", nargs="?", const="", metavar="GROUP",
        help="join shared subscription GROUP so replicas split the clips (GROUP defaults to the model's name)",
    )
    parser.add_argument(
        "--qos", type=int, choices=(0, 1, 2), default=1,
        help="QoS of the audio subscription and of the answers (default: %(default)s)",
    )
    parser.add_argument(
        "--mqtt-version", choices=sorted(MQTT_VERSIONS), default="5",
        help="MQTT protocol version; 3.1.1 for amqtt (default: %(default)s)",
    )
    parser.add_argument(
        "--session-expiry", type=int, default=DEFAULT_SESSION_EXPIRY_S, metavar="S",
        help="seconds the broker keeps our session and queued clips while we are away (MQTT 5; default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N", help="TFLite interpreter threads (default: %(default)s)"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        broker = parse_broker_url(args.broker)
        model = load_model(args.model, num_threads=args.threads)
        name = args.name or f"{model.name}-{os.getpid()}"
        share = (args.share or model.name) if args.share is not None else None
        service = InferenceService(model, name, Topics(args.topic_prefix))
        settings = ConnectionSettings(
            broker, client_id=f"kws-{name}", mqtt_version=args.mqtt_version, session_expiry_s=args.session_expiry
        )
        client = InferenceClient(service, settings, qos=args.qos, share=share)
    except (ModelError, ProtocolError) as error:
        log.error("%s", error)
        return 2

    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda _number, _frame: stop.set())
    client.start()
    stop.wait()
    client.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
