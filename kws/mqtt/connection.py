"""A paho-mqtt client set up the way every program of cooperative inference needs it.

The inference clients and the cooperative client share the hard parts of MQTT:

* **Surviving a broker restart.** paho reconnects by itself (``reconnect_delay_set``),
  but a broker forgets subscriptions made on a clean session, so subscriptions are
  (re)made in ``on_connect``, every time it fires.
* **Not losing QoS 1 messages across that restart.** With MQTT 5 the session is
  persistent (``clean_start`` false, a session expiry interval), so a broker that
  persists sessions (mosquitto ``persistence true``) keeps the subscriptions and
  the messages queued for us while we are away; paho itself re-sends our
  unacknowledged QoS 1 publications after reconnecting. Clean start stays false
  even on the first connect because mosquitto 2.0 writes to disk only the sessions
  that began that way; a leftover session of the same client id is resumed
  instead, which is harmless (client ids carry a run id or a process id) and even
  useful (a restarted client picks up the clips queued for it). The session is
  discarded on a clean stop (session expiry 0 in DISCONNECT) so brokers do not fill
  up with sessions nobody comes back for.
* **Announcing presence.** An ``online`` status is published (retained) on every
  connect and an ``offline`` one on a clean stop, with the same ``offline`` as the
  will, so whoever waits for clients never waits on a crashed one.

MQTT 3.1.1 (for brokers such as amqtt that speak nothing newer) gets clean sessions:
its persistent sessions never expire on mosquitto, and amqtt keeps nothing across a
restart anyway.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kws.mqtt.protocol import BrokerAddress

log = logging.getLogger(__name__)

MQTT_VERSIONS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
DEFAULT_SESSION_EXPIRY_S = 120
DEFAULT_KEEPALIVE_S = 15
#: paho waits this long before its first reconnect attempt, doubling up to the maximum.
RECONNECT_DELAY_S = (1, 8)

MessageHandler = Callable[[mqtt.MQTTMessage], None]


@dataclass(frozen=True)
class Retained:
    """A retained message: what to publish, and with which QoS."""

    topic: str
    payload: str
    qos: int = 1


@dataclass(frozen=True)
class ConnectionSettings:
    """How to reach the broker and what to keep there while connected."""

    broker: BrokerAddress
    client_id: str
    mqtt_version: str = "5"
    subscriptions: Sequence[tuple[str, int]] = ()
    """(topic filter, QoS) pairs, subscribed on every connect."""
    online: Retained | None = None
    """Published on every connect; the will carries ``offline`` on the same topic."""
    offline: Retained | None = None
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    keepalive_s: int = DEFAULT_KEEPALIVE_S

    def __post_init__(self) -> None:
        if self.mqtt_version not in MQTT_VERSIONS:
            raise ValueError(f"MQTT version {self.mqtt_version!r}: choose one of {sorted(MQTT_VERSIONS)}")


class MqttConnection:
    """A started paho client: connects in the background, resubscribes, re-announces.

    ``on_message`` runs on paho's network thread; keep it short or hand the message
    to a queue.
    """

    def __init__(self, settings: ConnectionSettings, on_message: MessageHandler) -> None:
        self.settings = settings
        self._on_message = on_message
        self.connected = threading.Event()
        self.connections = 0
        #: Consecutive failed attempts to reach the broker, and why the last one failed.
        self.failed_attempts = 0
        self.last_failure: str | None = None
        protocol = MQTT_VERSIONS[settings.mqtt_version]
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=protocol,
            clean_session=True if protocol == mqtt.MQTTv311 else None,
        )
        self.client.reconnect_delay_set(*RECONNECT_DELAY_S)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_message = lambda _client, _userdata, message: self._on_message(message)
        if settings.offline is not None:
            self.client.will_set(settings.offline.topic, settings.offline.payload, settings.offline.qos, retain=True)

    @property
    def is_v5(self) -> bool:
        return self.settings.mqtt_version == "5"

    def start(self) -> MqttConnection:
        """Connect in the background; paho keeps retrying until the broker answers."""
        address = self.settings.broker
        if self.is_v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.SessionExpiryInterval = self.settings.session_expiry_s
            self.client.connect_async(address.host, address.port, keepalive=self.settings.keepalive_s,
                                      clean_start=False, properties=properties)
        else:  # MQTT 3.1.1: clean_session=True was given to the Client
            self.client.connect_async(address.host, address.port, keepalive=self.settings.keepalive_s)
        self.client.loop_start()
        return self

    def wait_connected(self, timeout_s: float) -> bool:
        return self.connected.wait(timeout_s)

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool = False) -> mqtt.MQTTMessageInfo:
        return self.client.publish(topic, payload, qos=qos, retain=retain)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say offline, discard the session on the broker and stop the network thread."""
        if self.client.is_connected():
            if self.settings.offline is not None:
                offline = self.settings.offline
                info = self.client.publish(offline.topic, offline.payload, qos=offline.qos, retain=True)
                _wait_published(info, timeout_s)
            properties = None
            if self.is_v5:
                properties = Properties(PacketTypes.DISCONNECT)
                properties.SessionExpiryInterval = 0
            self.client.disconnect(properties=properties)
        else:
            self.client.disconnect()
        self.client.loop_stop()

    # paho callbacks (network thread) ---------------------------------------------
    def _handle_connect(self, client: mqtt.Client, _userdata, flags, reason_code, _properties) -> None:
        if reason_code.is_failure:
            hint = " (a broker that speaks only MQTT 3.1.1 needs --mqtt-version 3.1.1)" if self.is_v5 else ""
            log.error("%s: broker %s refused the connection: %s%s",
                      self.settings.client_id, self.settings.broker.url, reason_code, hint)
            return
        self.connections += 1
        self.failed_attempts, self.last_failure = 0, None
        resumed = "resumed its session" if flags.session_present else "new session"
        log.info("%s: connected to %s (%s)", self.settings.client_id, self.settings.broker.url, resumed)
        if self.settings.subscriptions:
            client.subscribe(list(self.settings.subscriptions))
        if self.settings.online is not None:
            online = self.settings.online
            client.publish(online.topic, online.payload, qos=online.qos, retain=True)
        self.connected.set()

    def _handle_connect_fail(self, _client, _userdata) -> None:
        """The broker could not be reached at all (refused, unreachable, timed out): say so at once."""
        self.failed_attempts += 1
        self.last_failure = _why_unreachable(self.settings.broker)
        delay = min(RECONNECT_DELAY_S[1], RECONNECT_DELAY_S[0] * 2 ** (self.failed_attempts - 1))
        log.warning("%s: cannot reach the MQTT broker at %s (%s); retrying in %d s (attempt %d)",
                    self.settings.client_id, self.settings.broker.url, self.last_failure, delay, self.failed_attempts)

    def _handle_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        self.connected.clear()
        if reason_code == 0 or reason_code == "Normal disconnection":
            log.debug("%s: disconnected", self.settings.client_id)
        else:
            log.warning("%s: lost the broker (%s); reconnecting", self.settings.client_id, reason_code)


def _why_unreachable(broker: BrokerAddress) -> str:
    """The operating system's reason a TCP connection to the broker fails now (paho does not pass it on)."""
    try:
        with socket.create_connection((broker.host, broker.port), timeout=2):
            return "the TCP connection opens, but the MQTT handshake failed"
    except OSError as error:
        return error.strerror or str(error)


def _wait_published(info: mqtt.MQTTMessageInfo, timeout_s: float) -> None:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError) as error:  # not connected any more, or the queue refused it
        log.debug("could not publish before stopping: %s", error)
