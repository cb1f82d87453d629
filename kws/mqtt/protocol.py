"""The MQTT wire protocol of cooperative inference: topics, the features pack, answers, status.

The cooperative client computes each clip's features once and publishes them; every
inference client (one per model, or several replicas sharing a subscription) answers
with its class probabilities. Everything a message means is in this module so that
both sides, the tests and the benchmark agree on it::

    <prefix>/config              retained   FeatureConfig JSON of the running session
    <prefix>/audio/<clip id>                features pack (SenML, below)
    <prefix>/prediction/<clip id>           prediction JSON of one model for one clip
    <prefix>/status/<client>     retained   {"state": "online"|"offline", ...}; offline is the will

The features pack itself is :mod:`kws.wire.features_pack` (it raises
:class:`~kws.wire.features_pack.FeaturesPackError`, and
:class:`~kws.wire.features_pack.ConfigMismatch` for a pack made for another model).
The decoders here raise :class:`ProtocolError` (a ``ValueError``) whose message says
what is wrong, fit for a log line.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from kws.features import FeatureConfig
from kws.util.numbers import is_finite_number
from kws.wire.features_pack import FeaturesPackError, check_clip_id, config_from_json

DEFAULT_TOPIC_PREFIX = "kws"
DEFAULT_MQTT_PORT = 1883


class ProtocolError(ValueError):
    """A message that breaks the protocol; the text says what is wrong."""


# --------------------------------------------------------------------------- #
# Broker address
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = DEFAULT_MQTT_PORT

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:port]`` (or a bare ``host[:port]``) to a :class:`BrokerAddress`.

    TLS (``mqtts://``) and WebSockets are not supported: say so rather than connect
    in plain text to what the user believes is an encrypted port.
    """
    text = url.strip()
    parts = urlsplit(text if "://" in text else f"mqtt://{text}")
    if parts.scheme not in ("mqtt", "tcp"):
        raise ProtocolError(f"broker URL {url!r}: scheme {parts.scheme!r} is not supported; use mqtt://host:port")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ProtocolError(f"broker URL {url!r}: expected mqtt://host:port with nothing after the port")
    try:
        port = parts.port or DEFAULT_MQTT_PORT
    except ValueError as error:
        raise ProtocolError(f"broker URL {url!r}: {error}") from error
    if not parts.hostname:
        raise ProtocolError(f"broker URL {url!r} names no host")
    return BrokerAddress(parts.hostname, port)


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

    def prediction(self, clip_id: str) -> str:
        return f"{self.prefix}/prediction/{check_identifier(clip_id, 'clip id')}"

    def status(self, client: str) -> str:
        return f"{self.prefix}/status/{check_identifier(client, 'client name')}"

    @property
    def all_audio(self) -> str:
        return f"{self.prefix}/audio/+"

    @property
    def all_predictions(self) -> str:
        return f"{self.prefix}/prediction/+"

    @property
    def all_status(self) -> str:
        return f"{self.prefix}/status/+"

    def shared(self, topic_filter: str, group: str) -> str:
        """An MQTT 5 shared subscription: each message goes to one member of ``group``."""
        return f"$share/{check_identifier(group, 'share group')}/{topic_filter}"

    def clip_id_of(self, topic: str, kind: str) -> str:
        """The last level of ``<prefix>/<kind>/<clip id>``; a ProtocolError for any other topic."""
        head = f"{self.prefix}/{kind}/"
        if not topic.startswith(head):
            raise ProtocolError(f"topic {topic!r} is not under {head}")
        return check_identifier(topic[len(head):], "clip id in topic")


# --------------------------------------------------------------------------- #
# Prediction
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class Prediction:
    """One model's answer for one clip (the clip id is in the topic)."""

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
