"""One cooperative run over MQTT: publish every clip's features, collect and combine the answers.

The run announces the FeatureConfig (retained on ``<prefix>/config``), waits until
``expect`` answer sources are online (their retained status), then publishes
clip after clip without waiting for answers. Two limits keep a big split from
flooding the broker's queues: at most ``max_pending`` clips are unfinished at
once, and ``rate`` (optional) paces publishing like a live microphone would.
Answers are handed from paho's network thread to the run through a queue and
stamped on arrival, so latency figures do not include the run's own bookkeeping.

Nothing on the prediction topics is trusted until checked: the sender must be a
member of the roster (:mod:`kws.mqtt.roster`) answering for the model it
announced, and the answer must be for a clip of this run, the first from its
source, over our labels and a probability vector (:mod:`kws.mqtt.tracker`).
Whatever fails is counted in the report's ``rejected_answers`` and logged once per
sender and reason, never combined.
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

from kws.errors import KwsError
from kws.features import FeatureConfig
from kws.mqtt.connection import DEFAULT_SESSION_EXPIRY_S, ConnectionSettings, MqttConnection
from kws.mqtt.fleet import InferenceFleet
from kws.mqtt.protocol import BrokerAddress, ClientStatus, Prediction, ProtocolError, Topics
from kws.mqtt.report import build_report
from kws.mqtt.roster import Roster
from kws.mqtt.security import BrokerSecurity
from kws.mqtt.tracker import ACCEPTED, DUPLICATE, FINISHED_CLIP, EnsembleTracker
from kws.util.logs import progress_wanted
from kws.wire.features_pack import config_json, encode_features_pack

log = logging.getLogger(__name__)

MALFORMED_ANSWER = "malformed"
#: Rejections that ordinary delivery produces (QoS 1 redelivery, an answer after its clip's deadline).
DELIVERY_REASONS = (DUPLICATE, FINISHED_CLIP)
#: How often the wait for clients to come online checks that the spawned ones are still alive.
POLL_S = 0.1
#: How long to wait for the broker itself before saying it cannot be reached.
BROKER_TIMEOUT_S = 10.0


class BrokerUnavailable(KwsError, ConnectionError):
    """The broker refused us or did not answer in time; the text says why and what to do."""


class NoClientsOnline(KwsError, TimeoutError):
    """No inference client announced itself in time, so no clip could be answered."""


@dataclass(frozen=True)
class RunSettings:
    """What the run waits for and how it combines."""

    expect: int = 0
    """Answers per clip, one per model. A session (:mod:`kws.mqtt.session`) fills in 0: as many as
    ``expect_models``, or as the clients it spawns; a run itself needs at least 1."""
    expect_models: tuple[str, ...] = ()
    """Only clients announcing one of these models may answer (empty: any with our FeatureConfig; a
    session fills in the models it spawns)."""
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
        security: BrokerSecurity | None = None,
    ) -> None:
        self.topics = topics
        self.config = config
        self.labels = tuple(labels)
        self.settings = settings
        self.fleet = fleet
        self.run_id = secrets.token_hex(3)
        self.roster = Roster(config, settings.expect_models)
        self.tracker = EnsembleTracker(self.labels, settings.expect, settings.timeout_s, settings.policy)
        self._logged_rejections: set[tuple[str, str]] = set()
        self._events: queue.Queue[tuple[str, bytes, float]] = queue.Queue()
        self.connection = MqttConnection(
            ConnectionSettings(
                broker,
                client_id=f"kws-coop-{self.run_id}",
                mqtt_version=mqtt_version,
                subscriptions=[(topics.all_predictions, settings.qos_prediction), (topics.all_status, 1)],
                session_expiry_s=session_expiry_s,
                security=security or BrokerSecurity(),
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
        """Send every clip, wait for the answers or the deadlines, and return the report.

        Ctrl-C stops sending and waiting: the clips sent so far are reported with the answers they
        have (those still waiting count as timed out) and the report says ``interrupted``.
        """
        self.wait_until_ready()
        self.connection.publish(self.topics.config, config_json(self.config), qos=1, retain=True)
        tracker = self.tracker
        interrupted = False
        with tqdm(total=len(clips), desc="clips finished", unit="clip", disable=not progress_wanted()) as progress:
            started_at = time.monotonic()
            try:
                self._publish_all(clips, progress)
                while tracker.pending:
                    self._handle_events(progress, wait_until=tracker.next_deadline())
            except KeyboardInterrupt:
                interrupted = True
                log.warning("interrupted after %d of %d clips were sent: reporting those", len(tracker), len(clips))
                tracker.give_up(time.monotonic())
        report_context = {
            "qos": {"audio": self.settings.qos_audio, "prediction": self.settings.qos_prediction},
            "timeout_s": self.settings.timeout_s,
            "max_pending": self.settings.max_pending,
            "rate": self.settings.rate,
            "run_id": self.run_id,
            "expect_models": sorted(self.settings.expect_models),
            "interrupted": interrupted,
            "roster": {client: member.model for client, member in sorted(self.roster.members.items())},
            **(context or {}),
        }
        return build_report(tracker, started_at, **report_context)

    # Readiness ---------------------------------------------------------------------------
    def answer_sources(self) -> set[str]:
        """Online members (clients or share groups) of the roster: whose answers will count."""
        return self.roster.online_sources()

    def wait_for_broker(self) -> None:
        """Raise :class:`BrokerUnavailable`, saying why, when the broker refuses us or is not reached in
        BROKER_TIMEOUT_S."""
        if self.connection.wait_connected(BROKER_TIMEOUT_S):
            return
        if self.connection.refusal is not None:
            raise BrokerUnavailable(self.connection.refusal)
        broker = self.connection.settings.broker.url
        why = self.connection.last_failure or "no answer to the MQTT handshake"
        raise BrokerUnavailable(
            f"cannot reach the MQTT broker at {broker} ({why}) within {BROKER_TIMEOUT_S:.0f} s: start one "
            "(e.g. mosquitto), point --broker at it, or pass --embedded-broker"
        )

    def wait_until_ready(self) -> None:
        """Wait until ``expect`` answer sources announced themselves, so no early clip goes unheard."""
        self.wait_for_broker()
        deadline = time.monotonic() + self.settings.ready_timeout_s
        wanted = f" ({', '.join(self.settings.expect_models)})" if self.settings.expect_models else ""
        log.info("waiting for %d inference client(s)%s on %s", self.settings.expect, wanted,
                 self.connection.settings.broker.url)
        while not self.roster.ready(self.settings.expect):
            if self.fleet is not None:
                self.fleet.check_alive()
            if self.connection.refusal is not None:
                raise BrokerUnavailable(self.connection.refusal)
            if time.monotonic() > deadline:
                online = len(self.answer_sources())
                if not online:
                    raise NoClientsOnline(
                        f"no inference client came online within {self.settings.ready_timeout_s:.0f} s"
                        + (f" with one of the models {wanted.strip(' ()')}" if wanted else "")
                    )
                log.warning("only %d of %d answer sources online after %.0f s (models %s); clips will be incomplete",
                            online, self.settings.expect, self.settings.ready_timeout_s,
                            ", ".join(sorted(self.roster.online_models())))
                return
            self._handle_events(None, wait_until=time.monotonic() + POLL_S)
        log.info("ready: %s", ", ".join(sorted(self.answer_sources())))

    # Publishing and collecting -----------------------------------------------------------
    def _publish_all(self, clips: Sequence[LabelledFeatures], progress: tqdm) -> None:
        tracker = self.tracker
        interval = 1.0 / self.settings.rate if self.settings.rate else 0.0
        next_send = time.monotonic()
        for index, clip in enumerate(clips):
            while tracker.pending >= self.settings.max_pending:  # window full: wait for answers or deadlines
                self._handle_events(progress, wait_until=tracker.next_deadline())
            while time.monotonic() < next_send:  # pacing: keep handling answers meanwhile
                self._handle_events(progress, wait_until=next_send)
            clip_id = f"{self.run_id}-{index:05d}"
            payload = encode_features_pack(clip_id, clip.features, self.config)
            now = time.monotonic()
            tracker.sent(clip_id, clip.true_label, now)
            info = self.connection.publish(self.topics.audio(clip_id), payload, qos=self.settings.qos_audio)
            if info.rc == mqtt.MQTT_ERR_NO_CONN and self.settings.qos_audio == 0:
                log.warning("clip %s lost: not connected, and QoS 0 messages are not queued", clip_id)
                tracker.lost(clip_id, now)
            next_send = max(next_send + interval, now)
            self._handle_events(progress, wait_until=None)

    def _handle_events(self, progress: tqdm | None, wait_until: float | None) -> None:
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
            self._handle_message(topic, payload, received_at)
        self.tracker.expire(time.monotonic())
        if progress is not None:
            progress.update(self.tracker.finished - progress.n)

    def _handle_message(self, topic: str, payload: bytes, received_at: float) -> None:
        if topic.startswith(f"{self.topics.prefix}/status/"):
            self._update_status(topic, payload)
            return
        if not topic.startswith(f"{self.topics.prefix}/prediction/"):
            # amqtt 0.12 sends a connecting client the retained messages of *every* client's subscriptions
            log.debug("ignored a message on %s, a topic we did not subscribe to", topic)
            return
        try:
            sender, clip_id = self.topics.answer_of(topic)
        except ProtocolError as error:  # the level after prediction/, shown safely: it came from the network
            level = topic[len(f"{self.topics.prefix}/prediction/"):].split("/")[0]
            self._reject(MALFORMED_ANSWER, ascii(level[:64]), str(error))
            return
        try:
            prediction = Prediction.from_json(payload)
        except ProtocolError as error:
            self._reject(MALFORMED_ANSWER, sender, f"clip {clip_id}: {error}")
            return
        member = self.roster.check(sender, prediction)
        if isinstance(member, str):
            self._reject(member, sender, f"clip {clip_id}, client {prediction.client!r}, model {prediction.model!r}")
            return
        outcome = self.tracker.add(clip_id, prediction, received_at, member.answer_source)
        if outcome != ACCEPTED:
            self._log_rejection(outcome, sender, f"clip {clip_id}")

    def _reject(self, reason: str, sender: str, detail: str) -> None:
        self.tracker.reject(reason, sender)
        self._log_rejection(reason, sender, detail)

    def _log_rejection(self, reason: str, sender: str, detail: str) -> None:
        """Once per sender and reason: a forger answering every clip is one line, and the report has the count."""
        if (sender, reason) in self._logged_rejections:
            return
        self._logged_rejections.add((sender, reason))
        level = logging.INFO if reason in DELIVERY_REASONS else logging.WARNING
        log.log(level, "rejected an answer from %s (%s): %s; further ones like it are counted in the report, "
                "not logged", sender, detail, reason)

    def _update_status(self, topic: str, payload: bytes) -> None:
        if not payload:  # a retained status being cleared
            return
        try:
            client = self.topics.client_of_status(topic)
            status = ClientStatus.from_json(payload)
        except ProtocolError as error:
            log.warning("ignored a malformed status on %s: %s", topic, error)
            return
        if status.client != client:
            log.warning("ignored a status on %s that speaks for another client, %r", topic, status.client)
            return
        previous = self.roster.statuses.get(client)
        problem = self.roster.update(status)
        if previous == status:
            return
        if problem is not None:
            log.warning("client %s (model %s) may not answer this run: %s", client, status.model, problem)
        elif previous is not None and previous.state != status.state:
            log.info("client %s (model %s) is now %s", client, status.model, status.state)
