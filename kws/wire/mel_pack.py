"""The mel pack: one clip's log-mel frames for a Big on the pretrained front end, as a SenML pack (RFC 8428).

A Big that reads the pretrained speech embedding (:mod:`kws.frontend`) needs the front
end's own 32-band log-mel frames, which the Pi computes in numpy
(:func:`kws.frontend.mel.clip_log_mel`) and sends as int8 codes with the clip's maximum
(:mod:`kws.frontend.quantize`: 0.31 dB steps, never clipped)::

    [{"bn":"urn:kws:clip:pi-kitchen-17:","bt":1795465000.5,"n":"mel","vd":"<base64url int8, 103 x 32>"},
     {"n":"shape","vs":"103x32"},
     {"n":"front_end","vs":"854e8897c2e0210e"},
     {"n":"top","u":"dB","v":-21.37}]

Only the frames that overlap the clip travel (:attr:`FrontEndSpec.clip_rows`, 103 of 147):
the others hear nothing but the padding's zeros, and the receiver rebuilds them exactly from
``top`` (:meth:`FrontEndSpec.padding_value`). ``front_end`` is the spec's fingerprint, so a
service whose model stands on another front end refuses the pack rather than answering
it wrongly (:class:`FrontEndMismatch`).

Every decoder error is a :class:`MelPackError` (a ``ValueError``) whose message says what
is wrong, fit for a 4xx body. numpy alone: the Pi imports this.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from kws.errors import KwsError
from kws.frontend.quantize import QuantizedMel, dequantize_mel, quantize_mel
from kws.frontend.spec import FrontEndSpec
from kws.wire import senml
from kws.wire.features_pack import (
    CLIP_BASE_NAME_PREFIX,
    FeaturesPackError,
    check_clip_id,
    clip_records,
    number_value,
    shape_of,
    shape_text,
    string_value,
)

MEL_RECORD = "mel"
SHAPE_RECORD = "shape"
FRONT_END_RECORD = "front_end"
TOP_RECORD = "top"
#: The loudest a clip's maximum can be: a full-scale square wave gives about +70 dB (float in [-1, 1]).
MAX_TOP_DB = 200.0


class MelPackError(KwsError, ValueError):
    """A mel pack that cannot be used; the text says what is wrong."""

    http_status = 422
    summary = "not a usable mel pack"


class FrontEndMismatch(MelPackError):
    """A valid mel pack made for another front end than the receiver's model stands on."""

    summary = "mel frames made for another front end"


@dataclass(frozen=True)
class MelMessage:
    """One clip's log-mel frames as the service receives them, padding rows rebuilt."""

    clip_id: str
    frames: np.ndarray
    """float32 dB, the spec's whole ``mel_shape`` (147, 32)."""
    sent_at: float


def mel_pack_body(clip_id: str, frames: np.ndarray, spec: FrontEndSpec, sent_at: float | None = None) -> bytes:
    """The pack of one clip's log-mel frames (the spec's whole ``mel_shape``), as UTF-8 bytes for an HTTP body."""
    check_clip_id(clip_id)
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape != spec.mel_shape:
        raise MelPackError(f"frames of shape {frames.shape} do not match the front end's {spec.mel_shape}")
    quantized = quantize_mel(frames)
    first, end = spec.clip_rows
    pack = [
        {
            "bn": f"{CLIP_BASE_NAME_PREFIX}{clip_id}:",
            "bt": round(time.time() if sent_at is None else sent_at, 3),
            "n": MEL_RECORD,
            "vd": senml.EncodedData.of(memoryview(np.ascontiguousarray(quantized.codes[first:end]))),
        },
        {"n": SHAPE_RECORD, "vs": shape_text((end - first, frames.shape[1]))},
        {"n": FRONT_END_RECORD, "vs": spec.fingerprint},
        {"n": TOP_RECORD, "u": "dB", "v": round(quantized.top, 4)},
    ]
    return senml.dumps_bytes(pack)


def is_mel_pack(records: list[dict[str, Any]]) -> bool:
    """Whether resolved SenML records are a mel pack (rather than an audio or features pack)."""
    return any(record["n"].endswith(f":{MEL_RECORD}") for record in records)


def mel_from_records(records: list[dict[str, Any]], spec: FrontEndSpec) -> MelMessage:
    """The mel pack in resolved SenML records, checked against the receiver's front end ``spec``."""
    try:  # the records every clip pack has are read as the features pack reads them
        by_name, base, clip_id = clip_records(records, MEL_RECORD)
        shape = shape_of(string_value(by_name, base + SHAPE_RECORD))
        fingerprint = string_value(by_name, base + FRONT_END_RECORD)
        top = number_value(by_name, base + TOP_RECORD)
    except FeaturesPackError as error:
        raise MelPackError(str(error)) from error
    if fingerprint != spec.fingerprint:
        raise FrontEndMismatch(f"clip {clip_id}: made for front end {fingerprint[:16]!r}, the model stands on "
                               f"{spec.fingerprint} ({spec.package} {spec.version})")
    if not math.isfinite(top) or abs(top) > MAX_TOP_DB:
        raise MelPackError(f"top {top} dB is not a clip's maximum (within ±{MAX_TOP_DB:g} dB)")
    first, end = spec.clip_rows
    expected = (end - first, spec.mel_shape[1])
    if shape != expected:
        raise MelPackError(f"shape {shape_text(shape)}; this front end's clip frames are {shape_text(expected)}")
    record = by_name[base + MEL_RECORD]
    if "vd" not in record:
        raise MelPackError(f"record {base + MEL_RECORD!r} must carry the frames as a data value 'vd'")
    try:
        data = senml.decode_data(record["vd"])
    except senml.SenMLError as error:
        raise MelPackError(f"mel: {error}") from error
    if len(data) != math.prod(expected):
        raise MelPackError(f"mel holds {len(data)} bytes; {shape_text(expected)} int8 codes need {math.prod(expected)}")
    codes = np.frombuffer(data, dtype=np.int8).reshape(expected)
    frames = np.full(spec.mel_shape, spec.padding_value(top), dtype=np.float32)
    frames[first:end] = dequantize_mel(QuantizedMel(codes=codes.copy(), top=top))
    return MelMessage(clip_id, frames, float(record["t"]))

