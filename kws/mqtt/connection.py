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

* **Saying at once what is wrong for good.** A broker that refuses our account
  (wrong user name or password, none given), a certificate that does not check out
  against ``--cafile``, or a URL whose scheme does not match the port (``mqtt://`` to
  a TLS listener, ``mqtts://`` to a plain one) will not get better by retrying: the
  connection stops trying,
  :attr:`MqttConnection.refusal` says why, naming the flag to fix, and the program
  exits. A broker that is merely down is retried with backoff, each attempt logged.

The account and TLS files are :class:`~kws.mqtt.security.BrokerSecurity`'s job.
MQTT 3.1.1 (for brokers such as amqtt that speak nothing newer) gets clean sessions:
its persistent sessions never expire on mosquitto, and amqtt keeps nothing across a
restart anyway.
"""

from __future__ import annotations

import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from kws.mqtt.protocol import BrokerAddress
from kws.mqtt.security import BrokerSecurity

log = logging.getLogger(__name__)

MQTT_VERSIONS = {"5": mqtt.MQTTv5, "3.1.1": mqtt.MQTTv311}
DEFAULT_SESSION_EXPIRY_S = 120
DEFAULT_KEEPALIVE_S = 15
#: paho waits this long before its first reconnect attempt, doubling up to the maximum.
RECONNECT_DELAY_S = (1, 8)
#: CONNACK reasons that mean "not this account": Bad user name or password, Not authorized, Bad authentication method.
ACCOUNT_REFUSALS = (134, 135, 140)
PROBE_TIMEOUT_S = 2.0

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
    security: BrokerSecurity = BrokerSecurity()
    """The account to log in with and the TLS files (TLS itself follows ``broker.tls``)."""

    def __post_init__(self) -> None:
        if self.mqtt_version not in MQTT_VERSIONS:
            raise ValueError(f"MQTT version {self.mqtt_version!r}: choose one of {sorted(MQTT_VERSIONS)}")
        self.security.check_for(self.broker)


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
        #: Set, with :attr:`refusal` saying why, when retrying cannot help (account or certificate refused).
        self.refused = threading.Event()
        self.refusal: str | None = None
        #: Publications the broker answered with a failure (MQTT 5: an ACL said no).
        self.refused_publications = 0
        self._tls_context: ssl.SSLContext | None = settings.security.tls_context() if settings.broker.tls else None
        protocol = MQTT_VERSIONS[settings.mqtt_version]
        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=settings.client_id,
            protocol=protocol,
            clean_session=True if protocol == mqtt.MQTTv311 else None,
        )
        self.client.reconnect_delay_set(*RECONNECT_DELAY_S)
        if settings.security.username:
            self.client.username_pw_set(settings.security.username, settings.security.password)
        if self._tls_context is not None:
            self.client.tls_set_context(self._tls_context)
        self.client.on_connect = self._handle_connect
        self.client.on_disconnect = self._handle_disconnect
        self.client.on_connect_fail = self._handle_connect_fail
        self.client.on_publish = self._handle_publish
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
        """True once connected; False after ``timeout_s``, or as soon as the broker refused us for good."""
        deadline = time.monotonic() + timeout_s
        while not self.connected.is_set() and not self.refused.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            self.connected.wait(min(remaining, 0.1))
        return self.connected.is_set()

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
            if reason_code.value in ACCOUNT_REFUSALS:
                self._give_up(f"broker {self.settings.broker.url} refused the connection: {reason_code}: "
                              f"{self._account_hint()}")
                return
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
        """The broker could not be reached at all (refused, unreachable, timed out, TLS failed): say so at once."""
        self.failed_attempts += 1
        self.last_failure, hopeless = _why_unreachable(self.settings.broker, self._tls_context)
        if hopeless:
            self._give_up(f"cannot connect to the MQTT broker at {self.settings.broker.url}: {self.last_failure}")
            return
        delay = min(RECONNECT_DELAY_S[1], RECONNECT_DELAY_S[0] * 2 ** (self.failed_attempts - 1))
        log.warning("%s: cannot reach the MQTT broker at %s (%s); retrying in %d s (attempt %d)",
                    self.settings.client_id, self.settings.broker.url, self.last_failure, delay, self.failed_attempts)

    def _handle_disconnect(self, _client, _userdata, _flags, reason_code, _properties) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        if reason_code == 0 or reason_code == "Normal disconnection":
            log.debug("%s: disconnected", self.settings.client_id)
        elif self.refused.is_set():
            pass  # said once, in _give_up
        elif not was_connected:  # the socket opened but no CONNACK came: say what the port speaks
            self.failed_attempts += 1
            self.last_failure, hopeless = _why_unreachable(self.settings.broker, self._tls_context)
            if hopeless:
                self._give_up(f"no MQTT session with {self.settings.broker.url}: {self.last_failure}")
                return
            log.warning("%s: no MQTT session with %s (%s; %s); retrying", self.settings.client_id,
                        self.settings.broker.url, reason_code, self.last_failure)
        else:
            log.warning("%s: lost the broker (%s); reconnecting", self.settings.client_id, reason_code)

    def _handle_publish(self, _client, _userdata, mid: int, reason_code, _properties) -> None:
        """An MQTT 5 broker says why it did not take a QoS 1/2 message: an ACL, most often. Said once, counted."""
        if not reason_code.is_failure:
            return
        self.refused_publications += 1
        if self.refused_publications == 1:
            account = self.settings.security.username
            who = f"the account {account!r}" if account else "anonymous clients"
            log.error("%s: the broker refused a message we published (%s): its ACL does not let %s publish there; "
                      "further refusals are counted", self.settings.client_id, reason_code, who)

    def _account_hint(self) -> str:
        security = self.settings.security
        if security.username:
            return (f"the broker did not accept the account {security.username!r}: check --username and "
                    "--password-file")
        if security.certfile:
            return "the broker did not accept the client certificate: check --certfile and --keyfile"
        return "this broker wants an account: pass --username and --password-file"

    def _give_up(self, why: str) -> None:
        """Stop retrying (paho's network thread ends) and let the owner report ``why`` and exit."""
        self.refusal = why
        log.error("%s: %s", self.settings.client_id, why)
        self.refused.set()
        self.client.disconnect()


def _why_unreachable(broker: BrokerAddress, tls: ssl.SSLContext | None) -> tuple[str, bool]:
    """Why a connection to the broker fails now (paho does not pass the reason on), and whether retrying is hopeless.

    Hopeless, so said once and not retried: a certificate that does not verify, and a
    port that speaks TLS to a plain client or plain text to a TLS client (named, so the
    URL's scheme can be fixed).
    """
    try:
        with socket.create_connection((broker.host, broker.port), timeout=PROBE_TIMEOUT_S) as connection:
            if tls is None:
                if _speaks_tls(connection):
                    return "the port speaks TLS: use an mqtts:// URL in --broker", True
                return "the TCP connection opens, but the MQTT handshake failed", False
            try:
                with tls.wrap_socket(connection, server_hostname=broker.host):
                    return "TLS is fine, but the MQTT handshake failed", False
            except ssl.SSLCertVerificationError as error:
                return (f"TLS: the broker's certificate does not verify ({error.verify_message}): --cafile must "
                        f"be the CA that signed it, and the certificate must name {broker.host}"), True
            except ssl.SSLError as error:
                plain = error.reason == "WRONG_VERSION_NUMBER"
                why = "the port speaks plain MQTT: use an mqtt:// URL in --broker" if plain else error.reason
                return f"TLS handshake failed: {why}", plain
    except OSError as error:
        return error.strerror or str(error), False


def _speaks_tls(connection: socket.socket) -> bool:
    """Whether a TLS handshake on ``connection`` succeeds (a plain client dialled a TLS port)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE  # only asking whether the port speaks TLS; nothing is sent
    try:
        with context.wrap_socket(connection):
            return True
    except (ssl.SSLError, OSError):
        return False


def _wait_published(info: mqtt.MQTTMessageInfo, timeout_s: float) -> None:
    try:
        info.wait_for_publish(timeout_s)
    except (RuntimeError, ValueError) as error:  # not connected any more, or the queue refused it
        log.debug("could not publish before stopping: %s", error)
