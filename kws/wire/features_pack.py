"""The features pack: one clip's features as a SenML pack (RFC 8428), with their shape and FeatureConfig.

The wire format every path shares for features: the cooperative client publishes
it over MQTT, and inference clients decode it. The base name names the clip::

    [{"bn":"urn:kws:clip:3f9a2c-00017:","bt":1732390000.123,"n":"features","vd":"<base64url float32 LE>"},
     {"n":"shape","vs":"49x40"},
     {"n":"config","vs":"{\\"clip_samples\\":16000,...}"}]

The whole FeatureConfig travels in every pack (about 250 bytes next to the
features) so that a receiver can tell from the message alone that the features
were made for another model, and skip the clip instead of answering it wrongly.

Every decoder raises :class:`FeaturesPackError` (a ``ValueError``) whose message
says what is wrong, fit for a log line or a 4xx body; :class:`ConfigMismatch` is
the one subclass a receiver treats differently (a valid pack it must not answer).
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

import numpy as np

from kws.features import FeatureConfig
from kws.wire import senml

CLIP_BASE_NAME_PREFIX = "urn:kws:clip:"
FEATURES_RECORD = "features"
SHAPE_RECORD = "shape"
CONFIG_RECORD = "config"
#: Features travel as little-endian float32, whatever the sender's byte order.
FEATURES_DTYPE = np.dtype("<f4")

#: Clip ids and client names: one MQTT topic level, and part of a SenML name.
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHAPE = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")


class FeaturesPackError(ValueError):
    """A features pack that cannot be used; the text says what is wrong."""


class ConfigMismatch(FeaturesPackError):
    """A valid features pack made with another FeatureConfig than the receiver's model."""


def check_clip_id(value: str, what: str = "clip id") -> str:
    """A clip id usable as one topic level and inside a SenML name."""
    if not isinstance(value, str) or not IDENTIFIER.fullmatch(value):
        raise FeaturesPackError(
            f"{what} {value!r} must be 1-128 characters of A-Z a-z 0-9 . _ -, starting with a letter or digit"
        )
    return value


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
        raise FeaturesPackError(f"{where}: not a FeatureConfig ({error})") from error


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
    check_clip_id(clip_id)
    values = np.asarray(features)
    if values.shape != config.shape:
        raise FeaturesPackError(f"features of shape {values.shape} do not match the config's {config.shape}")
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
    """Validate a features pack and return its contents; FeaturesPackError says what is wrong."""
    try:
        records = senml.loads(payload)
    except senml.SenMLError as error:
        raise FeaturesPackError(f"not a SenML pack: {error}") from error
    by_name = {record["n"]: record for record in records}
    if len(by_name) != len(records):
        raise FeaturesPackError("pack repeats a record name")
    features_names = [name for name in by_name if name.endswith(f":{FEATURES_RECORD}")]
    if len(features_names) != 1 or not features_names[0].startswith(CLIP_BASE_NAME_PREFIX):
        raise FeaturesPackError(f"pack needs exactly one '{CLIP_BASE_NAME_PREFIX}<clip id>:{FEATURES_RECORD}' record")
    base = features_names[0][: -len(FEATURES_RECORD)]
    clip_id = check_clip_id(base[len(CLIP_BASE_NAME_PREFIX):-1], "clip id in the pack's base name")
    features_record = by_name[base + FEATURES_RECORD]
    shape = _shape_of(_string_value(by_name, base + SHAPE_RECORD))
    config = config_from_json(_string_value(by_name, base + CONFIG_RECORD), f"record {base + CONFIG_RECORD!r}")
    if shape != config.shape:
        raise FeaturesPackError(f"shape {_shape_text(shape)} does not match its config's {_shape_text(config.shape)}")
    if "vd" not in features_record:
        raise FeaturesPackError(f"record {base + FEATURES_RECORD!r} must carry the features as a data value 'vd'")
    try:
        data = senml.decode_data(features_record["vd"])
    except senml.SenMLError as error:
        raise FeaturesPackError(f"features: {error}") from error
    expected_bytes = math.prod(shape) * FEATURES_DTYPE.itemsize
    if len(data) != expected_bytes:
        raise FeaturesPackError(
            f"features hold {len(data)} bytes; shape {_shape_text(shape)} of float32 needs {expected_bytes}"
        )
    features = np.frombuffer(data, dtype=FEATURES_DTYPE).astype(np.float32).reshape(shape)
    if not np.isfinite(features).all():
        raise FeaturesPackError("features contain NaN or infinity")
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
        raise FeaturesPackError(f"pack has no {name!r} record")
    if "vs" not in record:
        raise FeaturesPackError(f"record {name!r} must carry a string value 'vs'")
    return record["vs"]


def _shape_of(text: str) -> tuple[int, int]:
    match = _SHAPE.fullmatch(text)
    if not match:
        raise FeaturesPackError(f"shape {text!r} is not '<frames>x<features>' (e.g. '98x40')")
    return int(match.group(1)), int(match.group(2))


def _shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(size) for size in shape)
