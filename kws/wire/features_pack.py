"""The features pack: one clip's features as a SenML pack (RFC 8428), with their shape and FeatureConfig.

The wire format every path shares for features: the cooperative client publishes
it over MQTT, and inference clients decode it. The base name names the clip::

    [{"bn":"urn:kws:clip:3f9a2c-00017:","bt":1732390000.123,"n":"features","vd":"<base64url float32 LE>"},
     {"n":"shape","vs":"49x40"},
     {"n":"config","vs":"{\\"clip_samples\\":16000,...}"}]

The whole FeatureConfig travels in every pack (about 250 bytes next to the
features) so that a receiver can tell from the message alone that the features
were made for another model, and skip the clip instead of answering it wrongly.

The features are little-endian float32 unless an ``encoding`` record says
otherwise: ``float16``, or ``int8`` with ``scale`` and ``zero_point`` records
(``value = (q - zero_point) * scale``, the TFLite convention). The MQTT path sends
float32; the Pi sends int8 over REST, where every byte is the Pi's radio time::

    [{"bn":"urn:kws:clip:pi-kitchen-17:","bt":1795465000.5,"n":"features","vd":"<base64url int8>"},
     {"n":"shape","vs":"49x40"},
     {"n":"config","vs":"{...}"},
     {"n":"encoding","vs":"int8"},
     {"n":"scale","v":0.0712},
     {"n":"zero_point","v":71}]

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

from kws.errors import KwsError
from kws.features import FeatureConfig
from kws.wire import senml

CLIP_BASE_NAME_PREFIX = "urn:kws:clip:"
FEATURES_RECORD = "features"
SHAPE_RECORD = "shape"
CONFIG_RECORD = "config"
ENCODING_RECORD = "encoding"
SCALE_RECORD = "scale"
ZERO_POINT_RECORD = "zero_point"
#: Features travel little-endian, whatever the sender's byte order; float32 when no encoding is named.
FEATURES_DTYPE = np.dtype("<f4")
ENCODINGS = {"float32": FEATURES_DTYPE, "float16": np.dtype("<f2"), "int8": np.dtype("i1")}

#: Features are logarithms (log-mel, or MFCCs of them): tens at most, for any FeatureConfig. Finite
#: values far beyond (3.4e38 is a valid float32) would overflow a model into NaN scores.
MAX_FEATURE_MAGNITUDE = 1e4
#: Clip ids and client names: one MQTT topic level, and part of a SenML name.
IDENTIFIER = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_SHAPE = re.compile(r"([1-9][0-9]{0,5})x([1-9][0-9]{0,5})")


class FeaturesPackError(KwsError, ValueError):
    """A features pack that cannot be used; the text says what is wrong."""

    http_status = 422
    summary = "not a usable features pack"


class ConfigMismatch(FeaturesPackError):
    """A valid features pack made with another FeatureConfig than the receiver's model."""

    summary = "features made for another model"


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
    """float32, of ``config.shape`` (decoded from the pack's encoding)."""
    config: FeatureConfig
    sent_at: float
    """Unix seconds when the pack was made (its SenML time)."""
    encoding: str = "float32"


@functools.lru_cache(maxsize=16)
def config_json(config: FeatureConfig) -> str:
    """Canonical JSON of a FeatureConfig: sorted keys, no spaces, same text on every machine.

    Cached, like its inverse, because every pack carries it: a run has one config.
    """
    return json.dumps(config.to_dict(), sort_keys=True, separators=(",", ":"))


#: A FeatureConfig's JSON is one flat object of about 250 characters.
MAX_CONFIG_CHARS = 2048


def config_from_json(text: str, where: str = "config") -> FeatureConfig:
    """The FeatureConfig a pack carries, checked as strictly as the pack itself: one flat JSON object of
    at most :data:`MAX_CONFIG_CHARS`, every field of its type and in its range (``FeatureConfig.from_dict``)."""
    if len(text) > MAX_CONFIG_CHARS:
        raise FeaturesPackError(f"{where}: {len(text)} characters, over the {MAX_CONFIG_CHARS} a FeatureConfig needs")
    try:
        return _parse_config(text)
    except (senml.SenMLError, ValueError, TypeError) as error:  # FeatureConfig raises both of the latter
        raise FeaturesPackError(f"{where}: not a FeatureConfig ({error})") from error


@functools.lru_cache(maxsize=16)
def _parse_config(text: str) -> FeatureConfig:
    data = senml.strict_json(text, max_depth=1)
    if not isinstance(data, dict):
        raise TypeError(f"expected a JSON object, got {type(data).__name__}")
    return FeatureConfig.from_dict(data)


def quantize_int8(values: np.ndarray) -> tuple[np.ndarray, float, int]:
    """Asymmetric per-pack int8, as TFLite does it: the pack's range, widened to hold 0 so that
    the zero point is always a valid int8 (a silent, constant window included), mapped onto -128..127."""
    low, high = min(float(values.min()), 0.0), max(float(values.max()), 0.0)
    scale = max(high - low, 1e-6) / 255.0
    zero_point = int(np.clip(round(-128 - low / scale), -128, 127))
    quantized = np.clip(np.round(values / scale) + zero_point, -128, 127).astype(np.int8)
    return quantized, scale, zero_point


def encode_features_pack(
    clip_id: str,
    features: np.ndarray,
    config: FeatureConfig,
    sent_at: float | None = None,
    encoding: str = "float32",
) -> str:
    """The SenML JSON text carrying one clip's features, in ``encoding`` (float32, float16 or int8)."""
    return senml.dumps(_records(clip_id, features, config, sent_at, encoding, as_bytes=False))


def features_pack_body(
    clip_id: str,
    features: np.ndarray,
    config: FeatureConfig,
    sent_at: float | None = None,
    encoding: str = "float32",
) -> bytes:
    """:func:`encode_features_pack` as the UTF-8 bytes an HTTP body is, made without the text in between
    (:func:`senml.dumps_bytes`)."""
    return senml.dumps_bytes(_records(clip_id, features, config, sent_at, encoding, as_bytes=True))


def _records(
    clip_id: str, features: np.ndarray, config: FeatureConfig, sent_at: float | None, encoding: str, as_bytes: bool
) -> list[dict[str, Any]]:
    check_clip_id(clip_id)
    values = np.asarray(features, dtype=np.float32)
    if values.shape != config.shape:
        raise FeaturesPackError(f"features of shape {values.shape} do not match the config's {config.shape}")
    if encoding not in ENCODINGS:
        raise FeaturesPackError(f"encoding {encoding!r} is not one of {sorted(ENCODINGS)}")
    extra: list[dict[str, Any]] = []
    if encoding == "int8":
        data, scale, zero_point = quantize_int8(values)
        extra = [{"n": SCALE_RECORD, "v": scale}, {"n": ZERO_POINT_RECORD, "v": zero_point}]
    else:
        data = values.astype(ENCODINGS[encoding], copy=False)
    raw = memoryview(np.ascontiguousarray(data))
    pack = [
        {
            "bn": f"{CLIP_BASE_NAME_PREFIX}{clip_id}:",
            "bt": round(time.time() if sent_at is None else sent_at, 3),
            "n": FEATURES_RECORD,
            "vd": senml.EncodedData.of(raw) if as_bytes else senml.encode_data(raw),
        },
        {"n": SHAPE_RECORD, "vs": "x".join(str(size) for size in values.shape)},
        {"n": CONFIG_RECORD, "vs": config_json(config)},
    ]
    if encoding != "float32":  # float32 packs stay exactly what the MQTT path has always sent
        pack.append({"n": ENCODING_RECORD, "vs": encoding})
    return pack + extra


def is_features_pack(records: list[dict[str, Any]]) -> bool:
    """Whether resolved SenML records are a features pack (rather than, say, an audio pack)."""
    return any(record["n"].endswith(f":{FEATURES_RECORD}") for record in records)


def decode_features_pack(payload: bytes | str) -> FeaturesMessage:
    """Validate a features pack and return its contents; FeaturesPackError says what is wrong."""
    try:
        records = senml.loads(payload)
    except senml.SenMLError as error:
        raise FeaturesPackError(f"not a SenML pack: {error}") from error
    return features_from_records(records)


def clip_records(records: list[dict[str, Any]], record: str) -> tuple[dict[str, dict[str, Any]], str, str]:
    """A clip's pack by record name, its base name and its clip id: the one ``urn:kws:clip:<id>:<record>``
    record names the clip. Shared by the features and mel packs; a FeaturesPackError says what is wrong."""
    by_name = {entry["n"]: entry for entry in records}
    if len(by_name) != len(records):
        raise FeaturesPackError("pack repeats a record name")
    names = [name for name in by_name if name.endswith(f":{record}")]
    if len(names) != 1 or not names[0].startswith(CLIP_BASE_NAME_PREFIX):
        raise FeaturesPackError(f"pack needs exactly one '{CLIP_BASE_NAME_PREFIX}<clip id>:{record}' record")
    base = names[0][: -len(record)]
    return by_name, base, check_clip_id(base[len(CLIP_BASE_NAME_PREFIX):-1], "clip id in the pack's base name")


def features_from_records(records: list[dict[str, Any]]) -> FeaturesMessage:
    """The features pack in resolved SenML records (for a receiver that parsed the SenML already)."""
    by_name, base, clip_id = clip_records(records, FEATURES_RECORD)
    features_record = by_name[base + FEATURES_RECORD]
    shape = shape_of(string_value(by_name, base + SHAPE_RECORD))
    config = config_from_json(string_value(by_name, base + CONFIG_RECORD), f"record {base + CONFIG_RECORD!r}")
    if shape != config.shape:
        raise FeaturesPackError(f"shape {shape_text(shape)} does not match its config's {shape_text(config.shape)}")
    if "vd" not in features_record:
        raise FeaturesPackError(f"record {base + FEATURES_RECORD!r} must carry the features as a data value 'vd'")
    try:
        data = senml.decode_data(features_record["vd"])
    except senml.SenMLError as error:
        raise FeaturesPackError(f"features: {error}") from error
    encoding = string_value(by_name, base + ENCODING_RECORD) if base + ENCODING_RECORD in by_name else "float32"
    if encoding not in ENCODINGS:
        raise FeaturesPackError(f"encoding {encoding!r} is not one of {sorted(ENCODINGS)}")
    dtype = ENCODINGS[encoding]
    expected_bytes = math.prod(shape) * dtype.itemsize
    if len(data) != expected_bytes:
        raise FeaturesPackError(
            f"features hold {len(data)} bytes; shape {shape_text(shape)} of {encoding} needs {expected_bytes}"
        )
    raw = np.frombuffer(data, dtype=dtype).reshape(shape)
    if encoding == "int8":
        scale = number_value(by_name, base + SCALE_RECORD)
        zero_point = number_value(by_name, base + ZERO_POINT_RECORD)
        if not scale > 0 or zero_point != int(zero_point) or not -128 <= zero_point <= 127:
            raise FeaturesPackError("int8 features need a positive 'scale' and an integer 'zero_point' in -128..127")
        features = ((raw.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)).astype(np.float32)
    else:
        features = raw.astype(np.float32)
    if not np.isfinite(features).all():
        raise FeaturesPackError("features contain NaN or infinity")
    if float(np.abs(features).max(initial=0.0)) > MAX_FEATURE_MAGNITUDE:
        raise FeaturesPackError(f"features reach {float(np.abs(features).max()):.3g}; log-mel and MFCC values "
                                f"lie within ±{MAX_FEATURE_MAGNITUDE:g}")
    return FeaturesMessage(clip_id, features, config, float(features_record["t"]), encoding)


def check_config(message: FeaturesMessage, expected: FeatureConfig) -> None:
    """Raise :class:`ConfigMismatch`, naming the fields, when a pack was made for another model."""
    if message.config == expected:
        return
    ours, theirs = expected.to_dict(), message.config.to_dict()
    differences = ", ".join(f"{key} {theirs[key]} (model: {ours[key]})" for key in ours if ours[key] != theirs[key])
    raise ConfigMismatch(f"clip {message.clip_id}: features were made with another FeatureConfig: {differences}")


def _value(by_name: dict[str, dict[str, Any]], name: str, field: str, kind: str) -> Any:
    """The ``field`` value of record ``name``; FeaturesPackError when the record or the value is missing."""
    record = by_name.get(name)
    if record is None:
        raise FeaturesPackError(f"pack has no {name!r} record")
    if field not in record:
        raise FeaturesPackError(f"record {name!r} must carry a {kind} value {field!r}")
    return record[field]


def string_value(by_name: dict[str, dict[str, Any]], name: str) -> str:
    """The string value (``vs``) of record ``name`` of a clip pack; a FeaturesPackError when it has none."""
    return _value(by_name, name, "vs", "string")


def number_value(by_name: dict[str, dict[str, Any]], name: str) -> float:
    """The number value (``v``, a double by SenML's own checks) of record ``name``; a FeaturesPackError when none."""
    return float(_value(by_name, name, "v", "number"))


def shape_of(text: str) -> tuple[int, int]:
    match = _SHAPE.fullmatch(text)
    if not match:
        raise FeaturesPackError(f"shape {text!r} is not '<frames>x<features>' (e.g. '98x40')")
    return int(match.group(1)), int(match.group(2))


def shape_text(shape: Sequence[int]) -> str:
    return "x".join(str(size) for size in shape)
