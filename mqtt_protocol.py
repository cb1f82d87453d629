"""The MQTT wire protocol of cooperative inference: topics, the features pack, answers, status.

The cooperative client computes each clip's features once and publishes them; every
inference client (one per model, or several replicas sharing a subscription) answers
with its class probabilities. Everything a message means is in this module so that
both sides, the tests and the benchmark agree on it::

    <prefix>/config              retained   FeatureConfig JSON of the running session
    <prefix>/audio/<clip id>                features pack (SenML, below)
    <prefix>/prediction/<clip id>           prediction JSON of one model for one clip
    <prefix>/status/<client>     retained   {"state": "online"|"offline", ...}; offline is the will

A features pack is a SenML pack (RFC 8428) whose base name names the clip::

    [{"bn":"urn:kws:clip:3f9a2c-00017:","bt":1732390000.123,"n":"features","vd":"<base64url float32 LE>"},
     {"n":"shape","vs":"98x40"},
     {"n":"config","vs":"{\\"clip_samples\\":16000,...}"}]

The whole FeatureConfig travels in every pack (about 250 bytes next to 21 kB of
features) so that an inference client can tell from the message alone that the
features were made for another model, and skip the clip instead of answering it wrongly.

Every decoder raises :class:`ProtocolError` (a ``ValueError``) whose message says what
is wrong, fit for a log line; :class:`ConfigMismatch` is the one subclass a receiver
treats differently (a valid pack it must not answer).
"""

from __future__ import annotations

import functools
import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np

import senml
from preprocessing import FeatureConfig

DEFAULT_TOPIC_PREFIX = "kws"
DEFAULT_MQTT_PORT = 1883
CLIP_BASE_NAME_PREFIX = "urn:kws:clip:"
FEATURES_RECORD = "features"
SHAPE_RECORD = "shape"
CONFIG_RECORD = "config"
#: Features travel as little-endian float32, whatever the sender's byte order.
FEATURES_DTYPE = np.dtype("<f4")

#: Clip ids and client names are one MQTT topic level and part of a SenML name.
_IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHAPE = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")


class ProtocolError(ValueError):
    """A message that breaks the protocol; the text says what is wrong."""


class ConfigMismatch(ProtocolError):
    """A valid features pack made with another FeatureConfig than the receiver's model."""


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
    """A clip id or client name usable as one topic level and inside a SenML name."""
    if not isinstance(value, str) or not _IDENTIFIER.fullmatch(value):
        raise ProtocolError(
            f"{what} {value!r} must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return value


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
# Features pack
# --------------------------------------------------------------------------- #


@dataclass(frozen=True)
class FeaturesMessage:
    """One clip's features as the inference clients receive them."""

    clip_id: str
    features: np.ndarray
    """float32, of ``config.shape``."""
    config: FeatureConfig
    sent_at: float
    """Unix seconds when the pack was made (its SenML time)."""


@functools.lru_cache(maxsize=16)
def config_json(config: FeatureConfig) -> str:
    """Canonical JSON of a FeatureConfig: sorted keys, no spaces, same text on every machine.

    Cached, like its inverse, because every pack carries it: a run has one config.
    """
    return json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))


def config_from_json(text: str, where: str = "config") -> FeatureConfig:
    try:
        return _parse_config(text)
    except (ValueError, TypeError) as error:  # JSONDecodeError is a ValueError; FeatureConfig raises both
        raise ProtocolError(f"{where}: not a FeatureConfig ({error})") from error


@functools.lru_cache(maxsize=16)
def _parse_config(text: str) -> FeatureConfig:
    data = json.loads(text)
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return FeatureConfig.from_dict(data)


def encode_features_pack(
    clip_id: str, features: np.ndarray, config: FeatureConfig, sent_at: float | None = None
) -> str:
    """The SenML JSON text carrying one clip's features."""
    check_identifier(clip_id, "clip id")
    values = np.asarray(features)
    if values.shape != config.shape:
        raise ProtocolError(f"features of shape {values.shape} do not match the config's {config.shape}")
    pack = [
        {
            "bn": f"{CLIP_BASE_NAME_PREFIX}{clip_id}:",
            "bt": round(time.time() if sent_at is None else sent_at, 3),
            "n": FEATURES_RECORD,
            "vd": senml.encode_data(values.astype(FEATURES_DTYPE, copy=False).tobytes()),
        },
        {"n": SHAPE_RECORD, "vs": "x".join(str(size) for size in values.shape)},
        {"n": CONFIG_RECORD, "vs": config_json(config)},
    ]
    return senml.dumps(pack)


def decode_features_pack(payload: bytes | str) -> FeaturesMessage:
    """Validate a features pack and return its contents; ProtocolError says what is wrong."""
    try:
        records = senml.loads(payload)
    except senml.SenMLError as error:
        raise ProtocolError(f"not a SenML pack: {error}") from error
    by_name = {record["n"]: record for record in records}
    if len(by_name) != len(records):
        raise ProtocolError("pack repeats a record name")
    features_names = [name for name in by_name if name.endswith(f":{FEATURES_RECORD}")]
    if len(features_names) != 1 or not features_names[0].startswith(CLIP_BASE_NAME_PREFIX):
        raise ProtocolError(f"pack needs exactly one '{CLIP_BASE_NAME_PREFIX}<clip id>:{FEATURES_RECORD}' record")
    base = features_names[0][: -len(FEATURES_RECORD)]
    clip_id = check_identifier(base[len(CLIP_BASE_NAME_PREFIX):-1], "clip id in the pack's base name")
    features_record = by_name[base + FEATURES_RECORD]
    shape = _shape_of(_string_value(by_name, base + SHAPE_RECORD))
    config = config_from_json(_string_value(by_name, base + CONFIG_RECORD), f"record {base + CONFIG_RECORD!r}")
    if shape != config.shape:
        raise ProtocolError(f"shape {_shape_text(shape)} does not match its config's {_shape_text(config.shape)}")
    if "vd" not in features_record:
        raise ProtocolError(f"record {base + FEATURES_RECORD!r} must carry the features as a data value 'vd'")
    try:
        data = senml.decode_data(features_record["vd"])
    except senml.SenMLError as error:
        raise ProtocolError(f"features: {error}") from error
    expected_bytes = math.prod(shape) * FEATURES_DTYPE.itemsize
    if len(data) != expected_bytes:
        raise ProtocolError(
            f"features hold {len(data)} bytes; shape {_shape_text(shape)} of float32 needs {expected_bytes}"
        )
    features = np.frombuffer(data, dtype=FEATURES_DTYPE).astype(np.float32).reshape(shape)
    if not np.isfinite(features).all():
        raise ProtocolError("features contain NaN or infinity")
    return FeaturesMessage(clip_id, features, config, float(features_record["t"]))


def check_config(message: FeaturesMessage, expected: FeatureConfig) -> None:
    """Raise :class:`ConfigMismatch`, naming the fields, when a pack was made for another model."""
    if message.config == expected:
        return
    ours, theirs = expected.to_dict(), message.config.to_dict()
    differences = ", ".join(f"{key} {theirs[key]} (model: {ours[key]})" for key in ours if ours[key] != theirs[key])
    raise ConfigMismatch(f"clip {message.clip_id}: features were made with another FeatureConfig: {differences}")


def _string_value(by_name: dict[str, dict[str, Any]], name: str) -> str:
    record = by_name.get(name)
    if record is None:
        raise ProtocolError(f"pack has no {name!r} record")
    if "vs" not in record:
        raise ProtocolError(f"record {name!r} must carry a string value 'vs'")
    return record["vs"]


def _shape_of(text: str) -> tuple[int, int]:
    match = _SHAPE.fullmatch(text)
    if not match:
        raise ProtocolError(f"shape {text!r} is not '<frames>x<features>' (e.g. '98x40')")
    return int(match.group(1)), int(match.group(2))


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(size) for size in shape)


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
        if not isinstance(scores, list) or len(scores) != len(labels) or not all(_is_finite_number(s) for s in scores):
            raise ProtocolError(f"prediction: 'scores' must be {len(labels)} finite numbers, one per label")
        inference_ms = data.get("inference_ms")
        if not _is_finite_number(inference_ms) or inference_ms < 0:
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
            config=config_from_json(json.dumps(config), "status config") if isinstance(config, dict) else None,
        )


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


def _is_finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
