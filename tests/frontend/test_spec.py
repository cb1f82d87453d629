"""The front_end block of a model's metadata: its geometry, its round trip, and the mistakes it refuses."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kws.frontend.spec import FrontEndSpec


def test_the_default_geometry_is_the_issue_18_one() -> None:
    spec = FrontEndSpec()
    assert spec.pad_before == 4000
    assert spec.mel_frames == 147 and spec.mel_shape == (147, 32)
    assert spec.num_windows == 9


def test_unpadded_clips_give_97_frames_and_3_windows() -> None:
    spec = FrontEndSpec(padded_samples=16000)
    assert (spec.mel_frames, spec.num_windows, spec.pad_before) == (97, 3, 0)


def test_the_block_survives_json() -> None:
    spec = FrontEndSpec()
    document = json.loads(json.dumps(spec.to_dict()))
    assert FrontEndSpec.from_dict(document) == spec
    assert document["input_scale"] == 1 / 32768 and document["mel_divisor"] == 10.0


def test_unknown_and_missing_keys_are_errors() -> None:
    document = FrontEndSpec().to_dict()
    with pytest.raises(ValueError, match=r"unknown \['input_scal'\]"):
        FrontEndSpec.from_dict({**document, "input_scal": 1.0})
    del document["mel_offset"]
    with pytest.raises(ValueError, match=r"missing \['mel_offset'\]"):
        FrontEndSpec.from_dict(document)


@pytest.mark.parametrize("change", [
    {"mel_sha256": "ABC"},
    {"embedding_sha256": "0" * 63},
    {"input_scale": 0.0},
    {"window_step": 0},
    {"clip_samples": 30000},
    {"padded_samples": 8000, "clip_samples": 8000},
])
def test_impossible_blocks_are_refused(change: dict) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(FrontEndSpec(), **change)
