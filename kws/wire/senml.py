"""SenML (RFC 8428) in JSON: parse, validate, resolve and serialise packs.

Both transports of the project (REST with the Big service, MQTT) carry clips as
SenML packs, so this module holds the format rules in one place and every
receiver rejects a broken pack with the same precise message::

    records = senml.loads(body)                  # validated, resolved records
    pcm = senml.decode_data(records[0]["vd"])    # bytes of a Data Value
    body = senml.dumps([{"n": "audio", "vd": senml.encode_data(pcm)}])
    body = senml.dumps_bytes([{"n": "audio", "vd": senml.EncodedData.of(pcm)}])  # the same, as bytes

What "resolved" means here (RFC 8428, section 4.6): every base field is gone,
``bn`` is prefixed to ``n``, ``bt`` is added to ``t`` and relative times are
made absolute (times below 2**28 count from *now*), ``bu`` fills in a missing
``u``, ``bv`` is added to ``v`` and ``bs`` to ``s``, and records come in
chronological order. Every resolved record has ``n`` and ``t``; ``bver`` is
kept only for packs of an older version than 10, as the RFC asks. Unknown
fields are ignored (dropped) unless their label ends in ``_``, which the RFC
makes an error ("must understand").

The MUST-rejects raise :class:`SenMLError`, a ``ValueError`` whose message names
the record and the field, fit to be an HTTP 400 body or an MQTT log line.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kws.errors import KwsError
from kws.util.numbers import is_finite_number

#: The SenML version this module implements (RFC 8428); packs with a higher ``bver`` are refused.
SUPPORTED_VERSION = 10

#: Media type of SenML in JSON (RFC 8428, section 12.3).
MEDIA_TYPE = "application/senml+json"

#: Times below this are relative to the current time (RFC 8428, section 4.5.3).
RELATIVE_TIME_LIMIT = 2**28

VALUE_FIELDS = ("v", "vs", "vb", "vd")

#: RFC 8428, section 4.5.1: letters, digits and ``- : . / _``, starting with a letter or digit.
_NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9\-:./_]*")
#: Both base64 alphabets (RFC 4648 sections 4 and 5), for bytes.translate's delete argument.
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/-_"
_URLSAFE_TO_STANDARD = bytes.maketrans(b"-_", b"+/")


class SenMLError(KwsError, ValueError):
    """A pack that breaks RFC 8428; the message says exactly what and where."""

    http_status = 400
    summary = "not a valid SenML pack"


# --------------------------------------------------------------------------- #
# Field types
# --------------------------------------------------------------------------- #


def _is_version(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _is_string(value: Any) -> bool:
    return isinstance(value, str)


def _is_boolean(value: Any) -> bool:
    return isinstance(value, bool)


# bool is an int in Python but a different JSON type; non-finite numbers are not JSON.
_NUMBER = (is_finite_number, "a number")
_STRING = (_is_string, "a string")

#: Every field RFC 8428 defines for JSON, with the JSON type it must have.
FIELD_TYPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "bn": _STRING,
    "bt": _NUMBER,
    "bu": _STRING,
    "bv": _NUMBER,
    "bs": _NUMBER,
    "bver": (_is_version, "a positive integer"),
    "n": _STRING,
    "u": _STRING,
    "v": _NUMBER,
    "vs": _STRING,
    "vb": (_is_boolean, "true or false"),
    "vd": _STRING,
    "s": _NUMBER,
    "t": _NUMBER,
    "ut": _NUMBER,
}

BASE_FIELDS = ("bn", "bt", "bu", "bv", "bs", "bver")


# --------------------------------------------------------------------------- #
# Data values
# --------------------------------------------------------------------------- #


def encode_data(data: bytes) -> str:
    """A Data Value (``vd``) as RFC 8428 wants it: base64url without padding."""
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def decode_data(text: str) -> bytes:
    """Bytes of a Data Value.

    Accepts the RFC form (base64url, no padding) and, for older clients, standard
    base64 with padding. Anything else (stray characters, both alphabets mixed, a
    length no encoding produces, misplaced padding) is a :class:`SenMLError`.

    The checks run as bytes operations in C (a clip is 43 KB of base64, which a
    regular expression walked at a few nanoseconds a character).
    """
    if not isinstance(text, str):
        raise SenMLError(f"data value must be a string, got {type(text).__name__}")
    unpadded = text.rstrip("=")
    ascii_text = unpadded.encode("ascii") if unpadded.isascii() else b"\x80"  # str.isascii is O(1)
    if len(text) - len(unpadded) > 2 or ascii_text.translate(None, _BASE64_ALPHABET):
        raise SenMLError("data value is not base64: only A-Z a-z 0-9 - _ (or + /) and final '=' padding may appear")
    if (b"-" in ascii_text or b"_" in ascii_text) and (b"+" in ascii_text or b"/" in ascii_text):
        raise SenMLError("data value mixes the base64url (- _) and standard base64 (+ /) alphabets")
    if len(text) != len(unpadded) and len(text) % 4:
        raise SenMLError(f"padded base64 data value has length {len(text)}, not a multiple of 4")
    if len(unpadded) % 4 == 1:
        raise SenMLError(f"base64 data value has impossible length {len(unpadded)} (one character over a 4-block)")
    try:
        return binascii.a2b_base64(ascii_text.translate(_URLSAFE_TO_STANDARD) + b"=" * (-len(unpadded) % 4))
    except binascii.Error as error:  # defensive: the checks above should leave nothing for here
        raise SenMLError(f"data value is not base64 ({error})") from error


@dataclass(frozen=True)
class EncodedData:
    """A Data Value already in its wire form, base64url without padding as ASCII bytes.

    :func:`dumps_bytes` writes it into the pack as it is: base64url needs no JSON
    escaping, so the largest field of a pack (a clip is 43 KB of it) skips the JSON
    encoder's scan and the copies between str and bytes.
    """

    ascii: bytes

    @classmethod
    def of(cls, data: bytes | memoryview) -> EncodedData:
        """``data`` (any contiguous buffer, e.g. a memoryview of an array) encoded as :func:`encode_data` does."""
        return cls(base64.urlsafe_b64encode(data).rstrip(b"="))


def data_record(
    base_name: str, name: str, data: bytes | memoryview, base_time: float | None = None, as_bytes: bool = False
) -> dict[str, Any]:
    """The first record of a pack that carries bytes: base name, base time, name and ``vd``.

    ``base_time`` defaults to now; it is rounded to the millisecond, which is all
    a receiver needs and keeps the JSON short. ``as_bytes``: ``vd`` is an
    :class:`EncodedData` for :func:`dumps_bytes`, else the text :func:`dumps` takes.
    """
    return {
        "bn": base_name,
        "bt": round(time.time() if base_time is None else base_time, 3),
        "n": name,
        "vd": EncodedData.of(data) if as_bytes else encode_data(data),
    }


# --------------------------------------------------------------------------- #
# Validation and resolution
# --------------------------------------------------------------------------- #


def _check_types(record: dict[str, Any], where: str) -> None:
    for label, value in record.items():
        if not isinstance(label, str):  # only reachable for packs built in Python
            raise SenMLError(f"{where}: field label {label!r} is not a string")
        if label in FIELD_TYPES:
            accepts, expected = FIELD_TYPES[label]
            if not accepts(value):
                raise SenMLError(f"{where}: field {label!r} must be {expected}, got {json.dumps(value)}")
        elif label.endswith("_"):
            raise SenMLError(f"{where}: unknown field {label!r} ends in '_' and so must be understood")


def _check_value_fields(record: dict[str, Any], where: str) -> None:
    present = [label for label in VALUE_FIELDS if label in record]
    if len(present) > 1:
        raise SenMLError(f"{where}: has {len(present)} value fields {present}; a record carries exactly one")
    if not present and "s" not in record:
        raise SenMLError(f"{where}: has no value field (one of v, vs, vb, vd) and no sum (s)")


def _check_name(name: str, where: str) -> None:
    if not name:
        raise SenMLError(f"{where}: resolved name is empty; give the record an 'n' or the pack a 'bn'")
    if not _NAME_PATTERN.fullmatch(name):
        raise SenMLError(
            f"{where}: resolved name {name!r} is not a SenML name: it must start with a letter or digit "
            "and hold only A-Z a-z 0-9 - : . / _"
        )


def _absolute_time(relative_or_absolute: float, now: float) -> float:
    if relative_or_absolute < RELATIVE_TIME_LIMIT:
        return now + relative_or_absolute
    return relative_or_absolute


def resolve(pack: Any, now: float | None = None) -> list[dict[str, Any]]:
    """Validate a parsed SenML pack and return its resolved records.

    ``now`` (Unix seconds, default the clock) is what relative times count from;
    tests pass it to get repeatable answers. Raises :class:`SenMLError` on any
    MUST-violation of RFC 8428.
    """
    if not isinstance(pack, list):
        raise SenMLError(f"a SenML pack is a JSON array of records, got {_json_type(pack)}")
    now = time.time() if now is None else now
    base: dict[str, Any] = {"bn": "", "bt": 0, "bv": 0, "bs": 0, "bver": SUPPORTED_VERSION}
    resolved = []
    for position, record in enumerate(pack):
        where = f"record {position}"
        if not isinstance(record, dict):
            raise SenMLError(f"{where}: a SenML record is a JSON object, got {_json_type(record)}")
        _check_types(record, where)
        for label in BASE_FIELDS:
            if label in record:
                base[label] = record[label]
        if base["bver"] > SUPPORTED_VERSION:
            raise SenMLError(
                f"{where}: bver {base['bver']} is newer than the supported SenML version {SUPPORTED_VERSION}"
            )
        _check_value_fields(record, where)
        resolved.append(_resolve_record(record, base, now, where))
    resolved.sort(key=lambda record: record["t"])  # stable: equal times keep their order
    return resolved


def _resolve_record(record: dict[str, Any], base: dict[str, Any], now: float, where: str) -> dict[str, Any]:
    name = base["bn"] + record.get("n", "")
    _check_name(name, where)
    out: dict[str, Any] = {"n": name}
    unit = record.get("u", base.get("bu"))
    if unit is not None:
        out["u"] = unit
    for label in VALUE_FIELDS:
        if label in record:
            out[label] = record[label] + base["bv"] if label == "v" else record[label]
    if "s" in record:
        out["s"] = record["s"] + base["bs"]
    out["t"] = _absolute_time(base["bt"] + record.get("t", 0), now)
    if "ut" in record:
        out["ut"] = record["ut"]
    if base["bver"] != SUPPORTED_VERSION:
        out["bver"] = base["bver"]
    return out


def _json_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if value is None:
        return "null"
    return {dict: "an object", list: "an array", str: "a string"}.get(type(value), "a number")


# --------------------------------------------------------------------------- #
# JSON text
# --------------------------------------------------------------------------- #


#: How deep a pack may nest. A SenML pack is an array of objects of scalars (depth 2); the margin
#: keeps messages about non-SenML JSON precise while the parser's recursion stays far from Python's limit.
MAX_JSON_DEPTH = 8
#: Longest integer literal read (digits): 19 hold any int64; longer ones are no SenML number (an
#: IEEE double) a sender meant, and Python would spend time converting or refuse past 4 300 digits.
MAX_INTEGER_DIGITS = 19

_JSON_STRUCTURE = re.compile(r'[\[\]{}"]')
#: The rest of a JSON string after its opening quote, up to and including the closing one.
_JSON_STRING_REST = re.compile(r'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def _reject_constant(name: str) -> None:
    raise SenMLError(f"{name} is not a JSON number")


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INTEGER_DIGITS:
        raise SenMLError(f"integer {text[:24]}... has {digits} digits, over the {MAX_INTEGER_DIGITS} a number may have")
    return int(text)


def _parse_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise SenMLError(f"number {text[:40]} is out of the range of a double")
    return value


def _check_depth(text: str, limit: int = MAX_JSON_DEPTH) -> None:
    """Refuse JSON nested deeper than ``limit`` before parsing it: deep nesting would otherwise end in
    a RecursionError. Linear, and skips string contents (a clip's base64 is one long string): a string
    with no backslash is skipped with one ``str.find`` (C), the rest with a regular expression."""
    depth = position = 0
    while (match := _JSON_STRUCTURE.search(text, position)) is not None:
        char = match.group()
        if char == '"':
            start = match.end()
            end = text.find('"', start)
            if end < 0:  # an unterminated string: the parser says where
                return
            if text.find("\\", start, end) < 0:  # no escape before the next quote: it closes the string
                position = end + 1
                continue
            rest = _JSON_STRING_REST.match(text, start)
            if rest is None:
                return
            position = rest.end()
            continue
        depth += 1 if char in "[{" else -1
        if depth > limit:
            raise SenMLError(f"JSON nested deeper than {limit} levels" + (
                "; a SenML pack is an array of flat records" if limit == MAX_JSON_DEPTH else ""))
        position = match.end()


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    record = dict(pairs)
    if len(record) != len(pairs):
        labels = [label for label, _ in pairs]
        duplicated = sorted({label for label in labels if labels.count(label) > 1})
        raise SenMLError(f"a record repeats the field(s) {duplicated}")
    return record


def loads(payload: bytes | str, now: float | None = None) -> list[dict[str, Any]]:
    """Parse SenML JSON text (UTF-8 bytes or str) and :func:`resolve` it.

    Whatever the text, the outcome is records or a :class:`SenMLError`: bytes must be UTF-8
    (RFC 8259 section 8.1; no UTF-16 guessing), nesting is bounded, and numbers must fit a double.
    """
    try:
        text = payload.decode("utf-8") if isinstance(payload, (bytes, bytearray)) else payload
    except UnicodeDecodeError as error:
        raise SenMLError(f"SenML JSON must be UTF-8 ({error.reason} at byte {error.start})") from error
    return resolve(strict_json(text), now=now)


def strict_json(text: str, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """JSON text from the network, parsed as strictly as a pack: nesting bounded by ``max_depth``
    (checked before parsing), numbers that fit a double, no NaN or Infinity, no repeated keys.

    Also for JSON carried *inside* a pack (a features pack's config), which must be no
    looser than the pack around it. Anything else is a :class:`SenMLError`.
    """
    _check_depth(text, max_depth)
    try:
        return json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            parse_float=_parse_float,
            object_pairs_hook=_object_without_duplicates,
        )
    except json.JSONDecodeError as error:
        raise SenMLError(f"malformed JSON: {error.msg} at line {error.lineno} column {error.colno}") from error
    except RecursionError as error:  # defensive: _check_depth bounds the nesting well below this
        raise SenMLError("JSON nested too deeply") from error


def dumps(records: list[dict[str, Any]]) -> str:
    """Compact SenML JSON text of a pack (records, resolved or with base fields)."""
    try:
        return json.dumps(records, separators=(",", ":"), allow_nan=False)
    except ValueError as error:
        raise SenMLError(f"pack cannot be written as JSON: {error}") from error


def dumps_bytes(records: list[dict[str, Any]]) -> bytes:
    """:func:`dumps` as UTF-8 bytes, ready to send, with each :class:`EncodedData` ``vd`` copied in once.

    The same bytes as ``dumps(records).encode()`` with those values given as
    :func:`encode_data` text, provided ``vd`` is the record's last field (as in
    :func:`data_record`); elsewhere it is moved last, which JSON does not mind.
    """
    parts: list[bytes] = [b"["]
    try:
        for position, record in enumerate(records):
            if position:
                parts.append(b",")
            data = record.get("vd")
            if not isinstance(data, EncodedData):
                parts.append(json.dumps(record, separators=(",", ":"), allow_nan=False).encode("utf-8"))
                continue
            rest = {label: value for label, value in record.items() if label != "vd"}
            opening = json.dumps(rest, separators=(",", ":"), allow_nan=False)[:-1] + (',"vd":"' if rest else '"vd":"')
            parts += [opening.encode("utf-8"), data.ascii, b'"}']
    except ValueError as error:
        raise SenMLError(f"pack cannot be written as JSON: {error}") from error
    parts.append(b"]")
    return b"".join(parts)
