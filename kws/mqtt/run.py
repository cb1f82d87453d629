"""One cooperative run over MQTT: publish every clip's features, collect and combine the answers.

The run announces the FeatureConfig (retained on ``<prefix>/config``), waits until
``expect`` answer sources are online (their retained status), then publishes
clip after clip without waiting for answers. Two limits keep a big split from
flooding the broker's queues: at most ``max_pending`` clips are unfinished at
once, and ``rate`` (optional) paces publishing like a live microphone would.
Answers are handed from paho's network thread to the run through a queue and
stamped on arrival, so latency figures do not include the run's own bookkeeping.
"""

from __future__ import annotations

import logging
import queue
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import paho.mqtt.client as mqtt
from tqdm import tqdm

from kws.features import FeatureConfig
from kws.mqtt.connection import DEFAULT_SESSION_EXPIRY_S, ConnectionSettings, MqttConnection
from kws.mqtt.fleet import InferenceFleet
from kws.mqtt.protocol import ONLINE, BrokerAddress, ClientStatus, Prediction, ProtocolError, Topics
from kws.mqtt.report import build_report
from kws.mqtt.tracker import ACCEPTED, EnsembleTracker
from kws.wire.features_pack import config_json, encode_features_pack

log = logging.getLogger(__name__)

MALFORMED_ANSWER = "malformed"
#: How often the wait for clients to come online checks that the spawned ones are still alive.
POLL_S = 0.1
#: How long to wait for the broker itself before saying it cannot be reached.
BROKER_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class RunSettings:
    """What the run waits for and how it combines."""

    expect: int
    timeout_s: float = 10.0
    """Per clip, counted from its publication."""
    policy: str = "sum"
    qos_audio: int = 1
    qos_prediction: int = 1
    max_pending: int = 256
    rate: float | None = None
    """Clips per second to publish at; None publishes as fast as ``max_pending`` allows."""
    ready_timeout_s: float = 60.0


@dataclass(frozen=True)
class LabelledFeatures:
    """A clip ready to send: its true label (kept here, never sent) and its features."""

    true_label: str
    features: np.ndarray


class CooperativeRun:
    """A cooperative client connected to a broker, ready to run clips through the ensemble."""

    def __init__(
        self,
        broker: BrokerAddress,
        topics: Topics,
        config: FeatureConfig,
        labels: Sequence[str],
        settings: RunSettings,
        mqtt_version: str = "5",
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        fleet: InferenceFleet | None = None,
    ) -> None:
        self.topics = topics
        self.config = config
        self.labels = tuple(labels)
        self.settings = settings
        self.fleet = fleet
        self.run_id = secrets.token_hex(3)
        self.statuses: dict[str, ClientStatus] = {}
        self._events: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self.connection = MqttConnection(
            ConnectionSettings(
                broker,
                client_id=f"kws-coop-{self.run_id}",
                mqtt_version=mqtt_version,
                subscriptions=[(topics.all_predictions, settings.qos_prediction), (topics.all_status, 1)],
                session_expiry_s=session_expiry_s,
            ),
            lambda message: self._events.put((message.topic, message.payload, time.monotonic())),
        )

    # Life cycle ----------------------------------------------------------------------
    def __enter__(self) -> CooperativeRun:
        self.connection.start()
        return self

    def __exit__(self, *_exc_info: object) -> None:
        self.connection.stop()

    def run(self, clips: Sequence[LabelledFeatures], context: dict[str, Any] | None = None) -> dict[str, Any]:
        """Send every clip, wait for the answers or the deadlines, and return the report."""
        self.wait_until_ready()
        self.connection.publish(self.topics.config, config_json(self.config), qos=1, retain=True)
        tracker = EnsembleTracker(self.labels, self.settings.expect, self.settings.timeout_s, self.settings.policy)
        with tqdm(total=len(clips), desc="clips finished", unit="clip") as progress:
            started_at = time.monotonic()
            self._publish_all(clips, tracker, progress)
            while tracker.pending:
                self._handle_events(tracker, progress, wait_until=tracker.next_deadline())
        report_context = {
            "qos": {"audio": self.settings.qos_audio, "prediction": self.settings.qos_prediction},
            "timeout_s": self.settings.timeout_s,
            "max_pending": self.settings.max_pending,
            "rate": self.settings.rate,
            "run_id": self.run_id,
            **(context or {}),
        }
        return build_report(tracker, started_at, **report_context)

    # Readiness ---------------------------------------------------------------------------
    def answer_sources(self) -> set[str]:
        """Online clients (or share groups) whose model uses our FeatureConfig."""
        return {
            status.answer_source
            for status in self.statuses.values()
            if status.state == ONLINE and status.config == self.config
        }

    def wait_for_broker(self) -> None:
        """Raise ConnectionError, saying why, when the broker cannot be reached within BROKER_TIMEOUT_S."""
        if self.connection.wait_connected(BROKER_TIMEOUT_S):
            return
        broker = self.connection.settings.broker.url
        why = self.connection.last_failure or "no answer to the MQTT handshake"
        raise ConnectionError(
            f"cannot reach the MQTT broker at {broker} ({why}) within {BROKER_TIMEOUT_S:.0f} s: start one "
            "(e.g. mosquitto), point --broker at it, or pass --embedded-broker"
        )

    def wait_until_ready(self) -> None:
        """Wait until ``expect`` answer sources announced themselves, so no early clip goes unheard."""
        self.wait_for_broker()
        deadline = time.monotonic() + self.settings.ready_timeout_s
        log.info("waiting for %d inference client(s) on %s", self.settings.expect, self.connection.settings.broker.url)
        while len(self.answer_sources()) < self.settings.expect:
            if self.fleet is not None:
                self.fleet.check_alive()
            if time.monotonic() > deadline:
                online = len(self.answer_sources())
                if not online:
                    raise TimeoutError(f"no inference client came online within {self.settings.ready_timeout_s:.0f} s")
                log.warning("only %d of %d answer sources online after %.0f s; clips will be incomplete",
                            online, self.settings.expect, self.settings.ready_timeout_s)
                return
            self._handle_events(None, None, wait_until=time.monotonic() + POLL_S)
        log.info("ready: %s", ", ".join(sorted(self.answer_sources())))

    # Publishing and collecting -----------------------------------------------------------
    def _publish_all(self, clips: Sequence[LabelledFeatures], tracker: EnsembleTracker, progress: tqdm) -> None:
        interval = 1.0 / self.settings.rate if self.settings.rate else 0.0
        next_send = time.monotonic()
        for index, clip in enumerate(clips):
            while tracker.pending >= self.settings.max_pending:  # window full: wait for answers or deadlines
                self._handle_events(tracker, progress, wait_until=tracker.next_deadline())
            while time.monotonic() < next_send:  # pacing: keep handling answers meanwhile
                self._handle_events(tracker, progress, wait_until=next_send)
            clip_id = f"{self.run_id}-{index:05d}"
            payload = encode_features_pack(clip_id, clip.features, self.config)
            now = time.monotonic()
            tracker.sent(clip_id, clip.true_label, now)
            info = self.connection.publish(self.topics.audio(clip_id), payload, qos=self.settings.qos_audio)
            if info.rc == mqtt.MQTT_ERR_NO_CONN and self.settings.qos_audio == 0:
                log.warning("clip %s lost: not connected, and QoS 0 messages are not queued", clip_id)
                tracker.lost(clip_id, now)
            next_send = max(next_send + interval, now)
            self._handle_events(tracker, progress, wait_until=None)

    def _handle_events(
        self, tracker: EnsembleTracker | None, progress: tqdm | None, wait_until: float | None
    ) -> None:
        """Wait (until ``wait_until`` at most) for a message, handle all queued ones, expire deadlines.

        Returns as soon as something was handled, so callers re-check their
        condition after every answer rather than after a fixed sleep.
        """
        timeout = None if wait_until is None else wait_until - time.monotonic()
        try:
            if timeout is None or timeout <= 0:
                events = [self._events.get_nowait()]
            else:
                events = [self._events.get(timeout=timeout)]
            while not self._events.empty():
                events.append(self._events.get_nowait())
        except queue.Empty:
            events = []
        for topic, payload, received_at in events:
            self._handle_message(topic, payload, received_at, tracker)
        if tracker is not None:
            tracker.expire(time.monotonic())
            if progress is not None:
                progress.update(tracker.finished - progress.n)

    def _handle_message(self, topic: str, payload: bytes, received_at: float, tracker: EnsembleTracker | None) -> None:
        if topic.startswith(f"{self.topics.prefix}/status/"):
            self._update_status(topic, payload)
            return
        if not topic.startswith(f"{self.topics.prefix}/prediction/"):
            # amqtt 0.12 sends a connecting client the retained messages of *every* client's subscriptions
            log.debug("ignored a message on %s, a topic we did not subscribe to", topic)
            return
        if tracker is None:
            log.debug("answer on %s before the run started; ignored", topic)
            return
        try:
            clip_id = self.topics.clip_id_of(topic, "prediction")
            prediction = Prediction.from_json(payload)
        except ProtocolError as error:
            tracker.ignore(MALFORMED_ANSWER)
            log.warning("ignored a malformed answer on %s: %s", topic, error)
            return
        outcome = tracker.add(clip_id, prediction, received_at)
        if outcome != ACCEPTED:
            log.info("ignored an answer from %s for clip %s: %s", prediction.client, clip_id, outcome)

    def _update_status(self, topic: str, payload: bytes) -> None:
        if not payload:  # a retained status being cleared
            return
        try:
            status = ClientStatus.from_json(payload)
        except ProtocolError as error:
            log.warning("ignored a malformed status on %s: %s", topic, error)
            return
        previous = self.statuses.get(status.client)
        self.statuses[status.client] = status
        if status.state == ONLINE and status.config is not None and status.config != self.config:
            log.warning("client %s (model %s) uses another FeatureConfig: it would skip every clip",
                        status.client, status.model)
        elif previous is not None and previous.state != status.state:
            log.info("client %s (model %s) is now %s", status.client, status.model, status.state)
