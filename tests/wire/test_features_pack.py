"""The features pack: every way a pack can be wrong ends in a FeaturesPackError that says what is wrong."""

from __future__ import annotations

import base64
import json

import numpy as np
import pytest

from kws.features import FeatureConfig
from kws.wire import senml
from kws.wire.features_pack import (
    ConfigMismatch,
    FeaturesPackError,
    check_config,
    decode_features_pack,
    encode_features_pack,
)

CONFIG = FeatureConfig(frame_length=640, frame_step=640, num_mel_bins=20, num_coefficients=10)
OTHER_CONFIG = FeatureConfig(frame_length=640, frame_step=640, num_mel_bins=20, num_coefficients=8)


def features(seed: int = 0, config: FeatureConfig = CONFIG) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=config.shape).astype(np.float32)


def pack_records(clip_id: str = "run-00001") -> list[dict]:
    return json.loads(encode_features_pack(clip_id, features(), CONFIG))


def test_features_pack_round_trips_exactly() -> None:
    values = features()
    message = decode_features_pack(encode_features_pack("run-00001", values, CONFIG, sent_at=1_700_000_000.5))
    assert message.clip_id == "run-00001"
    assert message.config == CONFIG
    assert message.sent_at == pytest.approx(1_700_000_000.5)
    np.testing.assert_array_equal(message.features, values)


def test_features_pack_is_rfc_senml_with_base64url_data() -> None:
    records = senml.loads(encode_features_pack("run-00001", features(), CONFIG))
    names = {record["n"] for record in records}
    assert names == {f"urn:kws:clip:run-00001:{kind}" for kind in ("features", "shape", "config")}
    data = next(record["vd"] for record in records if record["n"].endswith(":features"))
    assert "=" not in data and "+" not in data and "/" not in data
    assert next(record["vs"] for record in records if record["n"].endswith(":shape")) == "25x10"


def test_standard_base64_is_accepted_too() -> None:
    records = pack_records()
    raw = senml.decode_data(records[0]["vd"])
    records[0]["vd"] = base64.b64encode(raw).decode()
    assert decode_features_pack(json.dumps(records)).features.shape == CONFIG.shape


def corrupt(change) -> str:
    records = pack_records()
    change(records)
    return json.dumps(records)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "malformed JSON"),
        (b"[{\"n\": \"\xff\"}]", "UTF-8"),
        (json.dumps({"features": [1, 2]}), "JSON array"),
        (json.dumps([{"n": "x", "v": 1}]), "exactly one"),
        (corrupt(lambda r: r[0].update(vd="!!!not-base64")), "not base64"),
        (
            corrupt(lambda r: r[0].update(vd=senml.encode_data(b"\0" * 12))),
            "features hold 12 bytes; shape 25x10 of float32 needs 1000",
        ),
        (corrupt(lambda r: r[1].update(vs="49x10")), "does not match its config"),
        (corrupt(lambda r: r[1].update(vs="ten by four")), "is not '<frames>x<features>'"),
        (corrupt(lambda r: r.pop(1)), "no 'urn:kws:clip:run-00001:shape' record"),
        (corrupt(lambda r: r[2].update(vs="{\"nfft\": 3}")), "not a FeatureConfig"),
        (corrupt(lambda r: r[2].update(vs="[1, 2]")), "not a FeatureConfig"),
        (corrupt(lambda r: r[0].update(bn="urn:kws:clip:a/b:")), "clip id in the pack.s base name"),
        (corrupt(lambda r: r[0].update(vd=senml.encode_data(np.full(250, np.nan, "<f4").tobytes()))), "NaN"),
        (corrupt(lambda r: r[0].pop("vd") and r[0].update(v=1.0)), "data value 'vd'"),
    ],
    ids=[
        "bad-json", "not-utf8", "not-senml", "no-features", "bad-base64", "byte-count", "wrong-shape",
        "unreadable-shape", "no-shape", "unknown-config-key", "config-not-object", "bad-clip-id", "nan", "no-vd",
    ],
)
def test_malformed_packs_say_what_is_wrong(payload, message: str) -> None:
    with pytest.raises(FeaturesPackError, match=message):
        decode_features_pack(payload)


def test_config_mismatch_names_the_differing_fields() -> None:
    message = decode_features_pack(encode_features_pack("run-00002", features(config=OTHER_CONFIG), OTHER_CONFIG))
    with pytest.raises(ConfigMismatch, match=r"num_coefficients 8 \(model: 10\)"):
        check_config(message, CONFIG)
    check_config(decode_features_pack(encode_features_pack("run-00002", features(), CONFIG)), CONFIG)


def test_encoding_refuses_features_of_another_shape() -> None:
    with pytest.raises(FeaturesPackError, match="do not match"):
        encode_features_pack("run-00001", np.zeros((49, 10), np.float32), CONFIG)


# --------------------------------------------------------------------------- #
# Predictions, status, topics, broker URLs
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(("encoding", "tolerance"), [("float32", 0.0), ("float16", 2e-3), ("int8", None)])
def test_encodings_round_trip_within_their_precision(encoding: str, tolerance: float | None) -> None:
    values = features(seed=3) * 4 - 6  # log-mel-like range
    message = decode_features_pack(encode_features_pack("run-1", values, CONFIG, encoding=encoding))
    assert message.encoding == encoding and message.features.dtype == np.float32
    if tolerance is None:  # int8: half a quantization step of the pack's range (widened to hold 0)
        tolerance = (max(values.max(), 0) - min(values.min(), 0)) / 255 / 2 + 1e-6
        assert np.abs(message.features - values).max() <= tolerance
    else:
        np.testing.assert_allclose(message.features, values, atol=tolerance * np.abs(values).max())


def test_int8_data_is_a_quarter_of_float32() -> None:
    def data_length(encoding: str) -> int:
        pack = json.loads(encode_features_pack("run-1", features(seed=4), CONFIG, encoding=encoding))
        return len(next(record["vd"] for record in pack if "vd" in record))

    assert data_length("int8") == pytest.approx(data_length("float32") / 4, abs=2)
    assert data_length("float16") == pytest.approx(data_length("float32") / 2, abs=2)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"encoding": "int4"}, "encoding 'int4' is not one of"),
        ({"scale": None}, "no 'urn:kws:clip:run-1:scale' record"),
        ({"scale": -1.0}, "positive 'scale'"),
        ({"zero_point": 300}, "zero_point' in -128..127"),
        ({"zero_point": 1.5}, "zero_point' in -128..127"),
    ],
)
def test_malformed_int8_packs_say_what_is_wrong(change: dict, message: str) -> None:
    records = json.loads(encode_features_pack("run-1", features(), CONFIG, encoding="int8"))
    for name, value in change.items():
        if name == "encoding":
            next(r for r in records if r["n"] == "encoding")["vs"] = value
        elif value is None:
            records = [r for r in records if r["n"] != name]
        else:
            next(r for r in records if r["n"] == name)["v"] = value
    with pytest.raises(FeaturesPackError, match=message):
        decode_features_pack(json.dumps(records))


def test_float32_packs_name_no_encoding() -> None:
    """What the MQTT path has always sent stays byte-for-byte the same."""
    assert all(record["n"] != "encoding" for record in pack_records())


@pytest.mark.parametrize("constant", [0.0, -13.8, 4.2])
def test_a_constant_window_quantizes_to_a_valid_pack(constant: float) -> None:
    """Silence gives every feature the same value: the zero point must still be an int8."""
    values = np.full(CONFIG.shape, constant, dtype=np.float32)
    message = decode_features_pack(encode_features_pack("run-1", values, CONFIG, encoding="int8"))
    np.testing.assert_allclose(message.features, values, atol=abs(constant) / 255 + 1e-6)


@pytest.mark.parametrize("encoding", ["float32", "float16", "int8"])
def test_the_body_as_bytes_is_the_pack_as_text(encoding: str) -> None:
    from kws.wire.features_pack import features_pack_body

    values = np.asfortranarray(features(3))  # a layout the bytes are not in: read in C order either way
    text = encode_features_pack("pi-7", values, CONFIG, sent_at=1_700_000_000.5, encoding=encoding)
    assert features_pack_body("pi-7", values, CONFIG, sent_at=1_700_000_000.5, encoding=encoding) == text.encode()
