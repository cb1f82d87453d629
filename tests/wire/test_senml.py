"""SenML (RFC 8428): the RFC's own examples, round trips and every MUST-reject."""

from __future__ import annotations

import base64
import json

import pytest

from kws.wire import senml
from kws.wire.senml import SenMLError

NOW = 1_700_000_000.0

# RFC 8428, section 5.1.3: multiple measurements with base time, base unit and bver 5.
RFC_MULTIPLE_DATAPOINTS = """[
  {"bn":"urn:dev:ow:10e2073a0108006:","bt":1.276020076001e+09,
   "bu":"A","bver":5,
   "n":"voltage","u":"V","v":120.1},
  {"n":"current","t":-5,"v":1.2},
  {"n":"current","t":-4,"v":1.3},
  {"n":"current","t":-3,"v":1.4},
  {"n":"current","t":-2,"v":1.5},
  {"n":"current","t":-1,"v":1.6},
  {"n":"current","v":1.7}
]"""


def test_rfc_single_datapoint() -> None:
    records = senml.loads('[{"n":"urn:dev:ow:10e2073a01080063","u":"Cel","v":23.1}]', now=NOW)
    assert records == [{"n": "urn:dev:ow:10e2073a01080063", "u": "Cel", "v": 23.1, "t": NOW}]


def test_rfc_base_name_is_prefixed() -> None:
    pack = '[{"bn":"urn:dev:ow:10e2073a01080063:","n":"voltage","u":"V","v":120.1},{"n":"current","u":"A","v":1.2}]'
    names = [record["n"] for record in senml.loads(pack, now=NOW)]
    assert names == ["urn:dev:ow:10e2073a01080063:voltage", "urn:dev:ow:10e2073a01080063:current"]


def test_rfc_resolution_example() -> None:
    """Section 5.1.4: base fields applied, bver kept (it is not 10), chronological order."""
    records = senml.loads(RFC_MULTIPLE_DATAPOINTS, now=NOW)
    assert [record["t"] for record in records] == sorted(record["t"] for record in records)
    voltage = next(record for record in records if record["n"].endswith("voltage"))
    assert voltage == {
        "n": "urn:dev:ow:10e2073a0108006:voltage",
        "u": "V",
        "v": 120.1,
        "t": 1.276020076001e09,
        "bver": 5,
    }
    currents = [record for record in records if record["n"] == "urn:dev:ow:10e2073a0108006:current"]
    assert [record["v"] for record in currents] == [1.2, 1.3, 1.4, 1.5, 1.6, 1.7]
    assert all(record["u"] == "A" for record in currents)
    assert currents[0]["t"] == pytest.approx(1.276020076001e09 - 5)
    assert not any(label.startswith("b") and label != "bver" for record in records for label in record)


def test_relative_times_count_from_now() -> None:
    records = senml.loads('[{"n":"a","v":1,"t":-10},{"n":"b","v":2}]', now=NOW)
    assert [record["t"] for record in records] == [NOW - 10, NOW]


def test_relative_base_time_plus_time_is_made_absolute() -> None:
    records = senml.loads('[{"bt":-60,"n":"a","v":1,"t":30}]', now=NOW)
    assert records[0]["t"] == NOW - 30


def test_base_value_sum_and_unit_are_applied() -> None:
    pack = [{"bn": "dev/", "bv": 100, "bs": 10, "bu": "W", "n": "p", "v": 5, "s": 1}, {"n": "q", "s": 2, "u": "kW"}]
    first, second = senml.resolve(pack, now=NOW)
    assert first == {"n": "dev/p", "u": "W", "v": 105, "s": 11, "t": NOW}
    assert second == {"n": "dev/q", "u": "kW", "s": 12, "t": NOW}


def test_later_base_fields_override_earlier_ones() -> None:
    pack = [{"bn": "a:", "n": "x", "v": 1}, {"bn": "b:", "n": "x", "v": 2}, {"n": "y", "v": 3}]
    assert [record["n"] for record in senml.resolve(pack, now=NOW)] == ["a:x", "b:x", "b:y"]


def test_every_value_type_passes_through() -> None:
    pack = [{"n": "s", "vs": "text"}, {"n": "b", "vb": False}, {"n": "d", "vd": "AAE"}, {"n": "u", "v": 0, "ut": 5}]
    values = [{k: v for k, v in record.items() if k != "t"} for record in senml.resolve(pack, now=NOW)]
    assert values == [
        {"n": "s", "vs": "text"},
        {"n": "b", "vb": False},
        {"n": "d", "vd": "AAE"},
        {"n": "u", "v": 0, "ut": 5},
    ]


def test_unknown_fields_are_ignored() -> None:
    assert senml.resolve([{"n": "a", "v": 1, "ct": "60"}], now=NOW) == [{"n": "a", "v": 1, "t": NOW}]


def test_empty_pack_is_valid() -> None:
    assert senml.loads("[]") == []


def test_bver_10_is_accepted_and_not_kept() -> None:
    assert senml.resolve([{"bver": 10, "n": "a", "v": 1}], now=NOW) == [{"n": "a", "v": 1, "t": NOW}]


def test_dumps_is_compact_and_round_trips() -> None:
    records = [{"n": "urn:dev:kws:pi:audio", "vd": senml.encode_data(b"\x01\x02\x03"), "t": NOW}]
    text = senml.dumps(records)
    assert " " not in text
    assert senml.loads(text, now=NOW) == records


# --------------------------------------------------------------------------- #
# Data values
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("data", [b"", b"\x00", b"\xfb\xff", b"\xfb\xff\xbf", bytes(range(256))])
def test_data_round_trip_without_padding(data: bytes) -> None:
    text = senml.encode_data(data)
    assert "=" not in text and "+" not in text and "/" not in text
    assert senml.decode_data(text) == data


@pytest.mark.parametrize("data", [b"\xfb\xff", b"\xfb\xff\xbf\x00", bytes(range(256))])
def test_standard_padded_base64_is_accepted(data: bytes) -> None:
    assert senml.decode_data(base64.b64encode(data).decode()) == data


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("AAE*", "not base64"),
        ("AA E", "not base64"),
        ("A", "impossible length"),
        ("AAE=A", "not base64"),
        ("AA=", "multiple of 4"),
        ("+-AA", "mixes"),
        ("AAAA===", "not base64"),
        ("AAé=", "not base64"),  # not ASCII
        ("AA\u0660A", "not base64"),  # an Arabic-Indic digit: a digit to str.isdigit, not to base64
        ("====", "not base64"),
    ],
)
def test_bad_data_values_are_rejected(text: str, complaint: str) -> None:
    with pytest.raises(SenMLError, match=complaint):
        senml.decode_data(text)


def test_data_value_must_be_a_string() -> None:
    with pytest.raises(SenMLError, match="must be a string"):
        senml.decode_data(b"AAAA")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# MUST-rejects
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("pack", "complaint"),
    [
        ({"n": "a", "v": 1}, "JSON array"),
        ("[]", "JSON array"),
        ([["n", "a"]], "record 0: a SenML record is a JSON object"),
        ([{"n": "a", "v": 1}, 5], "record 1: a SenML record is a JSON object"),
        ([{"n": "a"}], "no value field"),
        ([{"n": "a", "v": 1, "vs": "x"}], "2 value fields"),
        ([{"n": "a", "vb": True, "vd": "AA"}], "2 value fields"),
        ([{"n": "-a", "v": 1}], "must start with a letter or digit"),
        ([{"n": "a b", "v": 1}], "not a SenML name"),
        ([{"bn": "dev#1/", "n": "a", "v": 1}], "not a SenML name"),
        ([{"v": 1}], "resolved name is empty"),
        ([{"n": "a", "v": 1, "foo_": 1}], "'foo_' ends in '_'"),
        ([{"bver": 11, "n": "a", "v": 1}], "bver 11 is newer"),
        ([{"n": "a", "v": 1}, {"bver": 12, "n": "b", "v": 1}], "record 1: bver 12"),
    ],
)
def test_must_rejects(pack: object, complaint: str) -> None:
    with pytest.raises(SenMLError, match=complaint):
        senml.resolve(pack)


def test_sum_alone_is_allowed() -> None:
    assert senml.resolve([{"n": "energy", "s": 42}], now=NOW)[0]["s"] == 42


WRONG_TYPES = {
    "bn": 1,
    "bt": "0",
    "bu": 1,
    "bv": "1",
    "bs": True,
    "bver": 10.5,
    "n": 1,
    "u": 1,
    "v": "1",
    "vs": 1,
    "vb": "true",
    "vd": 1,
    "s": None,
    "t": "now",
    "ut": [1],
}


@pytest.mark.parametrize(("label", "bad_value"), sorted(WRONG_TYPES.items()))
def test_wrong_json_type_of_each_known_field_is_rejected(label: str, bad_value: object) -> None:
    record = {"n": "a", "v": 1} if label not in senml.VALUE_FIELDS else {"n": "a"}
    record[label] = bad_value
    with pytest.raises(SenMLError, match=f"field '{label}' must be"):
        senml.resolve([record])


def test_every_known_field_has_a_wrong_type_test() -> None:
    assert set(WRONG_TYPES) == set(senml.FIELD_TYPES)


def test_booleans_are_not_numbers() -> None:
    with pytest.raises(SenMLError, match="'v' must be a number, got true"):
        senml.resolve([{"n": "a", "v": True}])


@pytest.mark.parametrize(
    "payload", [b"[", b'[{"n":"a","v":1},]', b"", b'[{"n":"a","v":NaN}]', b'[{"n":"a","v":Infinity}]']
)
def test_malformed_json_is_rejected(payload: bytes) -> None:
    with pytest.raises(SenMLError, match="malformed JSON|not a JSON number"):
        senml.loads(payload)


def test_non_utf8_is_rejected() -> None:
    with pytest.raises(SenMLError, match="UTF-8"):
        senml.loads(b'[{"n":"a","vs":"\xff"}]')


@pytest.mark.parametrize(
    ("payload", "complaint"),
    [
        (b"[" * 5000 + b"]" * 5000, "nested deeper than 8 levels"),  # was a RecursionError
        (b"[" * 100_000, "nested deeper than 8 levels"),
        (b'[{"n":"a","v":1e999}]', "number 1e999 is out of the range of a double"),
        (b'[{"n":"a","v":-2.5e400}]', "out of the range of a double"),
        (b'[{"n":"a","v":1' + b"0" * 400 + b"}]", "has 401 digits"),  # was an OverflowError in float()
        (b'[{"n":"a","v":-1' + b"0" * 5000 + b"}]", "has 5001 digits"),  # was Python's 4 300-digit ValueError
        ('[{"n":"a","v":1}]'.encode("utf-16"), "must be UTF-8"),  # json.loads(bytes) would guess UTF-16
        ('[{"n":"a","v":1}]'.encode("utf-32"), "must be UTF-8"),
        (b'\xef\xbb\xbf[{"n":"a","v":1}]', "Unexpected UTF-8 BOM"),
    ],
    ids=["deep", "deep-unclosed", "huge-float", "huge-negative-float", "int-400-digits", "int-5000-digits",
         "utf-16", "utf-32", "utf-8-bom"],
)
def test_hostile_json_is_a_senml_error(payload: bytes, complaint: str) -> None:
    with pytest.raises(SenMLError, match=complaint):
        senml.loads(payload)


def test_nesting_limit_counts_structure_not_string_contents() -> None:
    deep_but_legal = b"[[[[[[[[" + b"]]]]]]]]"  # 8 levels: parsed, then refused as a pack, not as deep
    with pytest.raises(SenMLError, match="a SenML record is a JSON object"):
        senml.loads(deep_but_legal)
    brackets_in_strings = '[{"n":"a","vs":"[[[[[[[[[[[[{{{{{{{\\"[[[["}]'
    assert senml.loads(brackets_in_strings, now=NOW)[0]["vs"] == '[[[[[[[[[[[[{{{{{{{"[[[['


def test_largest_accepted_integer_keeps_its_value() -> None:
    assert senml.loads('[{"n":"a","v":-9223372036854775808}]', now=NOW)[0]["v"] == -(2**63)


def test_duplicate_labels_are_rejected() -> None:
    with pytest.raises(SenMLError, match=r"repeats the field\(s\) \['v'\]"):
        senml.loads('[{"n":"a","v":1,"v":2}]')


def test_dumps_refuses_non_finite_numbers() -> None:
    with pytest.raises(SenMLError):
        senml.dumps([{"n": "a", "v": float("nan")}])


def test_senml_error_is_a_value_error() -> None:
    assert issubclass(SenMLError, ValueError)
    with pytest.raises(ValueError):
        senml.loads(json.dumps({"not": "a pack"}))


def test_data_record_heads_a_pack_with_bytes() -> None:
    record = senml.data_record("urn:dev:kws:pi:", "audio", b"\x01\x02", base_time=1_700_000_000.12345)
    assert record == {"bn": "urn:dev:kws:pi:", "bt": 1_700_000_000.123, "n": "audio", "vd": "AQI"}
    assert senml.resolve([record], now=NOW)[0]["n"] == "urn:dev:kws:pi:audio"


@pytest.mark.parametrize("data", [b"", b"\x01", b"\x01\x02", b"\xff\xfe\xfd", bytes(range(256)) * 3])
def test_dumps_bytes_writes_what_dumps_writes(data: bytes) -> None:
    """The HTTP body made as bytes is byte for byte the text made by json.dumps, whatever the padding."""
    as_text = [senml.data_record("urn:dev:kws:pi:", "audio", data, base_time=NOW), {"n": "rate", "u": "Hz", "v": 8000}]
    as_bytes = [senml.data_record("urn:dev:kws:pi:", "audio", data, base_time=NOW, as_bytes=True), as_text[1]]
    body = senml.dumps_bytes(as_bytes)
    assert body == senml.dumps(as_text).encode("utf-8")
    assert senml.decode_data(senml.loads(body, now=NOW)[0]["vd"]) == data


def test_dumps_bytes_takes_a_data_value_anywhere_and_refuses_what_dumps_refuses() -> None:
    record = {"vd": senml.EncodedData.of(b"\x01\x02"), "n": "x", "t": 1.5}  # vd not last: moved last
    assert json.loads(senml.dumps_bytes([record])) == [{"n": "x", "t": 1.5, "vd": "AQI"}]
    assert senml.dumps_bytes([{"vd": senml.EncodedData.of(b"\x01")}]) == b'[{"vd":"AQ"}]'
    with pytest.raises(SenMLError, match="cannot be written as JSON"):
        senml.dumps_bytes([{"n": "x", "v": float("nan"), "vd": senml.EncodedData.of(b"")}])
