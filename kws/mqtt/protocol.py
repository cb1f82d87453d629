"""The MQTT wire protocol of cooperative inference: topics, the features pack, answers, status.

The cooperative client computes each clip's features once and publishes them; every
inference client (one per model, or several replicas sharing a subscription) answers
with its class probabilities. Everything a message means is in this module so that
both sides, the tests and the benchmark agree on it::

    <prefix>/config                        retained   FeatureConfig JSON of the running session
    <prefix>/audio/<clip id>                          features pack (SenML, below)
    <prefix>/prediction/<client>/<clip id>            prediction JSON of one model for one clip
    <prefix>/status/<client>               retained   {"state": "online"|"offline", ...}; offline is the will

The sender's name is a topic level of its answers and of its status so that a broker
can pin it to the account that logged in (Mosquitto: ``pattern write
kws/prediction/%u/+``, see deploy/mosquitto/acl): then no client can answer, or
announce itself, in another's name. The cooperative client checks that the name in
the payload is the one in the topic.

The features pack itself is :mod:`kws.wire.features_pack` (it raises
:class:`~kws.wire.features_pack.FeaturesPackError`, and
:class:`~kws.wire.features_pack.ConfigMismatch` for a pack made for another model).
The decoders here raise :class:`ProtocolError` (a ``ValueError``) whose message says
what is wrong, fit for a log line.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kws.errors import KwsError
from kws.features import FeatureConfig
from kws.util.numbers import is_finite_number
from kws.wire.features_pack import FeaturesPackError, check_clip_id, config_from_json

DEFAULT_TOPIC_PREFIX = "kws"
DEFAULT_MQTT_PORT = 1883
DEFAULT_MQTTS_PORT = 8883
DEFAULT_BROKER = "mqtt://127.0.0.1:1883"
#: How far an answer's scores may sum from 1: an int8 model's dequantized softmax is off by up
#: to half a step (1/256) per label, and the JSON keeps six decimals.
PROBABILITY_SUM_TOLERANCE = 0.02
#: URL schemes: plain TCP, and MQTT over TLS (the names Mosquitto's own clients accept).
PLAIN_SCHEMES = ("mqtt", "tcp")
TLS_SCHEMES = ("mqtts", "ssl")


class ProtocolError(KwsError, ValueError):
    """A message that breaks the protocol; the text says what is wrong."""


# --------------------------------------------------------------------------- #
# Broker address
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = DEFAULT_MQTT_PORT
    tls: bool = False
    """Speak TLS to the broker (an ``mqtts://`` URL)."""

    @property
    def url(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]``, ``mqtts://host[:port]`` (TLS) or a bare ``host[:port]`` to a :class:`BrokerAddress`.

    The port defaults to 1883, or 8883 for ``mqtts://``. WebSockets are not
    supported: say so rather than connect to what the user believes is another kind of port.
    """
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"mqtt://{text}")
    if parts.scheme not in PLAIN_SCHEMES + TLS_SCHEMES:
        raise ProtocolError(
            f"broker URL {url!r}: scheme {parts.scheme!r} is not supported; use mqtt://host:port or mqtts://host:port"
        )
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password:
        raise ProtocolError(
            f"broker URL {url!r}: expected {parts.scheme}://host:port with nothing else "
            "(credentials go in --username and --password-file)"
        )
    tls = parts.scheme in TLS_SCHEMES
    try:
        port = parts.port or (DEFAULT_MQTTS_PORT if tls else DEFAULT_MQTT_PORT)
    except ValueError as error:
        raise ProtocolError(f"broker URL {url!r}: {error}") from error
    if not parts.hostname:
        raise ProtocolError(f"broker URL {url!r} names no host")
    return BrokerAddress(parts.hostname, port, tls)


# --------------------------------------------------------------------------- #
# Topics
# --------------------------------------------------------------------------- #


def check_identifier(value: str, what: str) -> str:
    """A clip id or client name usable as one topic level and inside a SenML name (the features pack's rule)."""
    try:
        return check_clip_id(value, what)
    except FeaturesPackError as error:
        raise ProtocolError(str(error)) from error


@dataclass(frozen=True)
class Topics:
    """The topic names under one prefix (``kws`` by default)."""

    prefix: str = DEFAULT_TOPIC_PREFIX

    def __post_init__(self) -> None:
        if not self.prefix or any(char in self.prefix for char in "+#") or self.prefix.startswith("$"):
            raise ProtocolError(f"topic prefix {self.prefix!r} must be non-empty, without + # or a leading $")

    @property
    def config(self) -> str:
        return f"{self.prefix}/config"

    def audio(self, clip_id: str) -> str:
        return f"{self.prefix}/audio/{check_identifier(clip_id, 'clip id')}"

    def prediction(self, client: str, clip_id: str) -> str:
        """Where ``client`` answers ``clip_id``: its name is a topic level, so an ACL can pin it to its account."""
        client, clip_id = check_identifier(client, "client name"), check_identifier(clip_id, "clip id")
        return f"{self.prefix}/prediction/{client}/{clip_id}"

    def status(self, client: str) -> str:
        return f"{self.prefix}/status/{check_identifier(client, 'client name')}"

    @property
    def all_audio(self) -> str:
        return f"{self.prefix}/audio/+"

    @property
    def all_predictions(self) -> str:
        return f"{self.prefix}/prediction/+/+"

    @property
    def all_status(self) -> str:
        return f"{self.prefix}/status/+"

    def shared(self, topic_filter: str, group: str) -> str:
        """An MQTT 5 shared subscription: each message goes to one member of ``group``."""
        return f"$share/{check_identifier(group, 'share group')}/{topic_filter}"

    def clip_id_of(self, topic: str, kind: str) -> str:
        """The last level of ``<prefix>/<kind>/<clip id>``; a ProtocolError for any other topic."""
        return check_identifier(self._tail(topic, kind), "clip id in topic")

    def client_of_status(self, topic: str) -> str:
        """The client a ``<prefix>/status/<client>`` topic speaks for."""
        return check_identifier(self._tail(topic, "status"), "client name in topic")

    def answer_of(self, topic: str) -> tuple[str, str]:
        """(client, clip id) of ``<prefix>/prediction/<client>/<clip id>``; a ProtocolError for any other topic."""
        client, separator, clip_id = self._tail(topic, "prediction").partition("/")
        if not separator:
            raise ProtocolError(f"topic {topic!r} is not <prefix>/prediction/<client>/<clip id>")
        return check_identifier(client, "client name in topic"), check_identifier(clip_id, "clip id in topic")

    def _tail(self, topic: str, kind: str) -> str:
        head = f"{self.prefix}/{kind}/"
        if not topic.startswith(head):
            raise ProtocolError(f"topic {topic!r} is not under {head}")
        return topic[len(head):]


# --------------------------------------------------------------------------- #
# Prediction
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Prediction:
    """One model's answer for one clip (the sender and the clip id are also in the topic)."""

    client: str
    model: str
    labels: tuple[str, ...]
    scores: tuple[float, ...]
    """Class probabilities in ``labels`` order."""
    inference_ms: float

    def to_json(self) -> str:
        return json.dumps(
            {
                "client": self.client,
                "model": self.model,
                "labels": list(self.labels),
                "scores": [round(float(score), 6) for score in self.scores],
                "inference_ms": round(self.inference_ms, 3),
            },
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, payload: bytes | str) -> Prediction:
        data = _json_object(payload, "prediction")
        client = _non_empty_string(data, "client")
        model = _non_empty_string(data, "model")
        labels = data.get("labels")
        if not isinstance(labels, list) or not labels or not all(isinstance(label, str) for label in labels):
            raise ProtocolError("prediction: 'labels' must be a non-empty list of strings")
        if len(set(labels)) != len(labels):
            raise ProtocolError("prediction: 'labels' repeats a label")
        scores = data.get("scores")
        if not isinstance(scores, list) or len(scores) != len(labels) or not all(is_finite_number(s) for s in scores):
            raise ProtocolError(f"prediction: 'scores' must be {len(labels)} finite numbers, one per label")
        inference_ms = data.get("inference_ms")
        if not is_finite_number(inference_ms) or inference_ms < 0:
            raise ProtocolError("prediction: 'inference_ms' must be a non-negative number")
        return cls(client, model, tuple(labels), tuple(float(s) for s in scores), float(inference_ms))

    def probability_problem(self, tolerance: float = PROBABILITY_SUM_TOLERANCE) -> str | None:
        """Why ``scores`` is not a probability vector (each in [0, 1], summing to 1), or None when it is."""
        outside = [score for score in self.scores if not 0.0 <= score <= 1.0]
        if outside:
            return f"score {outside[0]!r} is outside [0, 1]"
        total = math.fsum(self.scores)
        if abs(total - 1.0) > tolerance:
            return f"scores sum to {total:.6g}, not 1 (within {tolerance})"
        return None


# --------------------------------------------------------------------------- #
# Client status
# --------------------------------------------------------------------------- #

ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True)
class ClientStatus:
    """What an inference client says about itself on ``<prefix>/status/<client>`` (retained).

    ``share`` is its shared-subscription group: replicas in one group answer each
    clip once between them, so a group counts as one answer source.
    """

    client: str
    state: str
    model: str = ""
    share: str | None = None
    config: FeatureConfig | None = None

    @property
    def answer_source(self) -> str:
        """What answers a clip once: the share group, or the client alone."""
        return f"share:{self.share}" if self.share else f"client:{self.client}"

    def to_json(self) -> str:
        data = {
            "client": self.client,
            "state": self.state,
            "model": self.model,
            "share": self.share,
            "config": self.config.to_dict() if self.config else None,
        }
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, payload: bytes | str) -> ClientStatus:
        data = _json_object(payload, "status")
        client = _non_empty_string(data, "client")
        state = data.get("state")
        if state not in (ONLINE, OFFLINE):
            raise ProtocolError(f"status: 'state' must be {ONLINE!r} or {OFFLINE!r}, got {state!r}")
        config = data.get("config")
        share = data.get("share")
        return cls(
            client=client,
            state=state,
            model=str(data.get("model") or ""),
            share=share if isinstance(share, str) and share else None,
            config=_status_config(config) if isinstance(config, dict) else None,
        )


def _status_config(config: dict[str, Any]) -> FeatureConfig:
    try:
        return config_from_json(json.dumps(config), "status config")
    except FeaturesPackError as error:
        raise ProtocolError(str(error)) from error


# --------------------------------------------------------------------------- #
# JSON helpers
# --------------------------------------------------------------------------- #


def _json_object(payload: bytes | str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(payload)
    except UnicodeDecodeError as error:
        raise ProtocolError(f"{what}: not UTF-8 ({error.reason})") from error
    except json.JSONDecodeError as error:
        raise ProtocolError(f"{what}: malformed JSON ({error.msg} at column {error.colno})") from error
    if not isinstance(data, dict):
        raise ProtocolError(f"{what}: expected a JSON object, got {type(data).__name__}")
    return data


def _non_empty_string(data: dict[str, Any], key: str) -> str:
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise ProtocolError(f"'{key}' must be a non-empty string")
    return value
