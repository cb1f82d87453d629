"""The front_end block of a model's metadata: its geometry, its round trip, and the mistakes it refuses."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from kws.features import FeatureConfig
from kws.frontend.spec import FrontEndSpec
from kws.model.metadata import ModelError, ModelMetadata, build_metadata, write_metadata


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


def test_a_model_that_holds_the_embedding_survives_json_and_reads_the_mel_windows() -> None:
    """The flag goes through the block like every field, names another front end (its own fingerprint), and
    changes what the model reads: the embeddings for a head, the embedding model's mel windows otherwise."""
    head, holds = FrontEndSpec(), FrontEndSpec(embedding_in_model=True)
    document = json.loads(json.dumps(holds.to_dict()))
    assert document["embedding_in_model"] is True and FrontEndSpec.from_dict(document) == holds
    assert FrontEndSpec.from_dict(json.loads(json.dumps(head.to_dict()))).embedding_in_model is False
    assert holds.fingerprint != head.fingerprint
    assert head.model_input_shape == head.embedding_shape == (9, 96)
    assert holds.model_input_shape == (9, 76, 32, 1)
    unpadded = FrontEndSpec(padded_samples=16000, embedding_in_model=True)
    assert unpadded.model_input_shape == (3, 76, 32, 1)


@pytest.mark.parametrize("value", ["false", "true", 0, 1, None])
def test_embedding_in_model_is_a_bool_not_a_look_alike(value) -> None:
    """A hand-edited ``"false"`` is truthy; 0 and 1 would pass for a bool in Python: each is refused, named."""
    with pytest.raises(ValueError, match="embedding_in_model must be true or false"):
        FrontEndSpec.from_dict({**FrontEndSpec().to_dict(), "embedding_in_model": value})


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


def test_a_models_metadata_carries_the_block(tmp_path: Path) -> None:
    """A head on the front end has its block and no FeatureConfig; a model on features the reverse; never both."""
    spec = FrontEndSpec()
    common = dict(name="pretrained_big", description="a head on the pretrained front end", labels=["yes", "no"],
                  input_standardization=None, architecture={}, training={}, accuracy={},
                  blobs={"tflite": ("pretrained_big.tflite", b"head")})
    document = build_metadata(**common, feature_config=None, front_end=spec)
    assert document["front_end"]["mel_sha256"] == spec.mel_sha256 and document["feature_config"] is None
    assert document["input_shape"] == [9, 96]
    read = ModelMetadata.read(write_metadata(tmp_path, document))
    assert read.front_end == spec and read.feature_config is None and read.input_shape == (9, 96)
    holds = build_metadata(**common, feature_config=None, front_end=FrontEndSpec(embedding_in_model=True))
    assert holds["input_shape"] == [9, 76, 32, 1]
    assert ModelMetadata.read(write_metadata(tmp_path, holds)).input_shape == (9, 76, 32, 1)
    for both_or_neither in ({"feature_config": FeatureConfig(), "front_end": spec},
                            {"feature_config": None, "front_end": None}):
        with pytest.raises(ValueError, match="exactly one|feature_config .* or front_end"):
            build_metadata(**common, **both_or_neither)
    del document["front_end"]
    with pytest.raises(ModelError, match="exactly one of the two"):
        ModelMetadata.read(_write(tmp_path, document))


def _write(folder: Path, document: dict) -> Path:
    path = folder / "document.json"
    path.write_text(json.dumps(document))
    return path


def test_a_malformed_block_makes_the_metadata_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.json"
    block = {**FrontEndSpec().to_dict(), "mel_sha256": "not a hash"}
    path.write_text(json.dumps({"name": "broken", "labels": ["yes"], "feature_config": {}, "files": {}, "sha256": {},
                                "front_end": block}))
    with pytest.raises(ModelError, match="mel_sha256"):
        ModelMetadata.read(path)
