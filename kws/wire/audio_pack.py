"""One audio clip as a SenML pack: the wire format of the Little client and the Big service.

A pack carries one clip of 16-bit little-endian mono PCM and its sample rate::

    [{"bn":"urn:dev:kws:pi-kitchen:","bt":1732390000.123,"n":"audio","vd":"<base64url PCM>"},
     {"n":"sample_rate","u":"Hz","v":16000}]

``vd`` is base64url without padding, as RFC 8428 wants. The audio record has no
``u`` because the SenML unit registry has none for PCM samples; its format is
fixed by this module instead. Records are found by the last segment of their
resolved name (``urn:dev:kws:<device>:audio`` -> ``audio``), so the device id in
the base name is free; other records are ignored, so the pack can grow.

Two kinds of error, because a service answers them differently:

* :class:`senml.SenMLError` -- not valid SenML at all (HTTP 400);
* :class:`AudioPackError` -- valid SenML, but not one acceptable clip (HTTP 422):
  no audio record or two, no sample rate, a rate other than expected, an odd
  byte count, no samples or more than one second.
"""

from __future__ import annotations

import re
import socket
from dataclasses import dataclass
from typing import Any

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.errors import KwsError
from kws.wire import senml

AUDIO_RECORD = "audio"
SAMPLE_RATE_RECORD = "sample_rate"
SAMPLE_RATE_UNIT = "Hz"
#: The rate the whole system works at (Speech Commands clips, every model's input).
EXPECTED_SAMPLE_RATE = SAMPLE_RATE
MAX_CLIP_SECONDS = 1.0
BASE_NAME_PREFIX = "urn:dev:kws:"
_PCM_DTYPE = np.dtype("<i2")
_DEVICE_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-._]*")


class AudioPackError(KwsError, ValueError):
    """A valid SenML pack that is not one acceptable clip; the message says why."""

    http_status = 422
    summary = "not a usable audio pack"


@dataclass(frozen=True)
class AudioClip:
    """A clip as a receiver gets it from a pack."""

    samples: np.ndarray
    """int16 PCM, at most one second."""
    sample_rate: int
    device: str
    """The resolved name's prefix before ``audio`` (e.g. ``urn:dev:kws:pi-kitchen:``)."""
    time: float
    """When it was recorded, Unix seconds (resolved SenML time)."""


def default_device_id() -> str:
    """This machine's host name, made safe for a SenML name."""
    return re.sub(r"[^A-Za-z0-9\-._]", "-", socket.gethostname()).lstrip("-._") or "device"


def check_device_id(device: str) -> str:
    """``device`` itself if it can stand in a SenML base name, else AudioPackError."""
    if not _DEVICE_PATTERN.fullmatch(device):
        raise AudioPackError(f"device id {device!r} must start with a letter or digit and hold only A-Z a-z 0-9 - . _")
    return device


def encode_audio_pack(
    samples: np.ndarray,
    sample_rate: int = EXPECTED_SAMPLE_RATE,
    device: str | None = None,
    recorded_at: float | None = None,
) -> str:
    """The SenML JSON text of one int16 clip."""
    return senml.dumps(_records(samples, sample_rate, device, recorded_at, as_bytes=False))


def audio_pack_body(
    samples: np.ndarray,
    sample_rate: int = EXPECTED_SAMPLE_RATE,
    device: str | None = None,
    recorded_at: float | None = None,
) -> bytes:
    """:func:`encode_audio_pack` as the UTF-8 bytes an HTTP body is, made without the text in between
    (:func:`senml.dumps_bytes`): the samples are read in place and their base64 copied once."""
    return senml.dumps_bytes(_records(samples, sample_rate, device, recorded_at, as_bytes=True))


def _records(
    samples: np.ndarray, sample_rate: int, device: str | None, recorded_at: float | None, as_bytes: bool
) -> list[dict[str, Any]]:
    pcm = np.asarray(samples)
    if pcm.dtype != np.int16 or pcm.ndim != 1:
        raise AudioPackError(f"a clip is one-dimensional int16 PCM, got {pcm.dtype} of shape {pcm.shape}")
    device = default_device_id() if device is None else check_device_id(device)
    pcm_bytes = memoryview(np.ascontiguousarray(pcm, dtype=_PCM_DTYPE))  # no copy of a little-endian clip
    return [
        senml.data_record(f"{BASE_NAME_PREFIX}{device}:", AUDIO_RECORD, pcm_bytes, recorded_at, as_bytes=as_bytes),
        {"n": SAMPLE_RATE_RECORD, "u": SAMPLE_RATE_UNIT, "v": sample_rate},
    ]


def decode_audio_pack(
    payload: bytes | str,
    expected_rate: int = EXPECTED_SAMPLE_RATE,
    max_seconds: float = MAX_CLIP_SECONDS,
) -> AudioClip:
    """The clip in a SenML pack; raises SenMLError (bad SenML) or AudioPackError (bad clip)."""
    return audio_from_records(senml.loads(payload), expected_rate, max_seconds)


def audio_from_records(
    records: list[dict[str, Any]],
    expected_rate: int = EXPECTED_SAMPLE_RATE,
    max_seconds: float = MAX_CLIP_SECONDS,
) -> AudioClip:
    """The clip in already resolved records (for transports that resolve themselves)."""
    audio = _the_one_record(records, AUDIO_RECORD)
    device = audio["n"][: -len(AUDIO_RECORD)]
    rate_record = _the_one_record(records, SAMPLE_RATE_RECORD)
    if rate_record["n"][: -len(SAMPLE_RATE_RECORD)] != device:
        raise AudioPackError(f"the sample rate record {rate_record['n']!r} names another device than {audio['n']!r}")
    sample_rate = _sample_rate(rate_record, expected_rate)
    if "vd" not in audio:
        raise AudioPackError(f"record {audio['n']!r} must carry the PCM samples as a data value 'vd'")
    pcm = senml.decode_data(audio["vd"])
    if len(pcm) % _PCM_DTYPE.itemsize:
        raise AudioPackError(f"audio holds {len(pcm)} bytes, an odd count: 16-bit PCM has 2 bytes a sample")
    samples = np.frombuffer(pcm, dtype=_PCM_DTYPE).astype(np.int16)
    max_samples = int(sample_rate * max_seconds)
    if not 0 < samples.size <= max_samples:
        raise AudioPackError(
            f"audio holds {samples.size} samples; expected 1 to {max_samples} ({max_seconds:g} s at {sample_rate} Hz)"
        )
    return AudioClip(samples=samples, sample_rate=sample_rate, device=device, time=audio["t"])


def _record_kind(name: str) -> str:
    """``urn:dev:kws:pi:audio`` -> ``audio``: the last ':' or '/' segment."""
    return re.split(r"[:/]", name)[-1]


def _the_one_record(records: list[dict[str, Any]], kind: str) -> dict[str, Any]:
    matching = [record for record in records if _record_kind(record["n"]) == kind]
    if len(matching) != 1:
        found = "no" if not matching else str(len(matching))
        raise AudioPackError(f"pack has {found} '{kind}' records; an audio pack has exactly one")
    return matching[0]


def _sample_rate(record: dict[str, Any], expected_rate: int) -> int:
    rate = record.get("v")
    if rate is None:
        raise AudioPackError(f"record {record['n']!r} must give the rate as a number 'v'")
    if record.get("u", SAMPLE_RATE_UNIT) != SAMPLE_RATE_UNIT:
        raise AudioPackError(f"record {record['n']!r} has unit {record['u']!r}; the sample rate is in Hz")
    if rate != expected_rate:
        raise AudioPackError(f"sample rate is {rate:g} Hz; this service expects {expected_rate} Hz")
    return int(rate)
