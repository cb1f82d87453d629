"""Every shipped model loads, is trustworthy and answers with probabilities, on every interpreter we ship for.

The models in ``models/`` are what the Pi, the Big service and the MQTT clients
download; a stale sha256, a label order that disagrees with the network or an
operator the Pi's tflite-runtime 2.14 rejects would each fail only in the field.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import MODELS_DIR

from bench.check_tflite_runtime import (
    DEFAULT_VENV,
    check_models,
    format_results,
    model_files,
    venv_python,
)
from kws.audio import read_clip
from kws.data.clips import DEFAULT_LABELS, NON_KEYWORD_LABELS, list_clips, sample_clips, select_clips
from kws.model.metadata import ModelError, ModelMetadata
from kws.model.runtime import interpreter_class, load_model, softmax

METADATA_PATHS = sorted(MODELS_DIR.glob("*.json"))
MODEL_FILES = model_files(MODELS_DIR)
#: Sum of the probabilities: softmax is exact in float, but an int8 model's
#: output is quantised in steps of 1/256, so 8 classes may miss 1 by ~8/512.
PROBABILITY_SUM_TOLERANCE = 0.02


def stems() -> list[Path]:
    return [path.with_suffix("") for path in METADATA_PATHS]


def compressed_stems() -> list[Path]:
    """The models that also ship a .tflite.zlib (what the Pi downloads)."""
    return [stem for stem in stems() if "tflite_zlib" in ModelMetadata.read(stem.with_suffix(".json")).files]


@pytest.fixture(scope="module")
def test_clips(data_dir: Path) -> np.ndarray:
    """Two clips of each label from the test speakers."""
    clips = sample_clips(select_clips(data_dir, "test"), per_label=2)
    return np.stack([read_clip(clip.path) for clip in clips])


@pytest.mark.parametrize("metadata_path", METADATA_PATHS, ids=[p.stem for p in METADATA_PATHS])
def test_metadata_is_complete_and_consistent(metadata_path: Path) -> None:
    metadata = ModelMetadata.read(metadata_path)
    assert metadata.name == metadata_path.stem
    keywords = [label for label in metadata.labels if label not in NON_KEYWORD_LABELS]
    assert sorted(keywords) == sorted(DEFAULT_LABELS), "labels must be the 8 commands, once each"
    assert len(metadata.labels) in (len(DEFAULT_LABELS), len(DEFAULT_LABELS) + len(NON_KEYWORD_LABELS))
    assert len(set(metadata.labels)) == len(metadata.labels), "no label twice"
    assert metadata.files and set(metadata.files) <= {"tflite", "tflite_zlib"}
    assert set(metadata.sha256) == set(metadata.files), "every listed file needs its sha256"
    if "input_shape" in metadata.raw:
        assert tuple(metadata.raw["input_shape"]) == metadata.input_shape


@pytest.mark.parametrize("model_file", MODEL_FILES, ids=[p.name for p in MODEL_FILES])
def test_model_file_outputs_one_probability_per_label(model_file: Path, test_clips: np.ndarray) -> None:
    model = load_model(model_file)
    interpreter_type, _ = interpreter_class()
    interpreter = interpreter_type(model_content=model.model_bytes)
    (input_details,), (output_details,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert tuple(input_details["shape"]) == (1, *model.metadata.input_shape)
    assert tuple(output_details["shape"]) == (1, len(model.labels))

    probabilities = np.stack([model.predict_audio(clip) for clip in test_clips])
    assert probabilities.shape == (len(test_clips), len(model.labels))
    assert probabilities.min() >= 0.0 and probabilities.max() <= 1.0
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, atol=PROBABILITY_SUM_TOLERANCE)


@pytest.mark.parametrize("stem", stems(), ids=[s.name for s in stems()])
def test_every_name_form_loads_the_expected_file(stem: Path) -> None:
    metadata = ModelMetadata.read(stem.with_suffix(".json"))
    listed = {kind: MODELS_DIR / name for kind, name in metadata.files.items()}
    by_stem = load_model(stem)
    assert by_stem.source == listed.get("tflite", listed.get("tflite_zlib"))
    assert load_model(str(stem) + ".json").source == by_stem.source
    assert load_model(stem, prefer="zlib").source == listed.get("tflite_zlib", listed.get("tflite"))
    for path in listed.values():
        assert load_model(path).source == path
        assert load_model(str(path)).source == path


@pytest.mark.parametrize("stem", compressed_stems(), ids=[s.name for s in compressed_stems()])
def test_compressed_file_is_the_same_model(stem: Path, test_clips: np.ndarray) -> None:
    plain, compressed = load_model(stem, prefer="tflite"), load_model(stem, prefer="zlib")
    assert compressed.model_bytes == plain.model_bytes
    assert compressed.size_bytes < plain.size_bytes
    np.testing.assert_array_equal(compressed.predict_audio(test_clips[0]), plain.predict_audio(test_clips[0]))


@pytest.fixture
def model_copy(tmp_path: Path) -> Path:
    """A copy of the first shipped model (metadata and files) that a test may tamper with."""
    if not METADATA_PATHS:
        pytest.skip("no models in models/")
    metadata_path = METADATA_PATHS[0]
    shutil.copy(metadata_path, tmp_path)
    for name in ModelMetadata.read(metadata_path).files.values():
        shutil.copy(MODELS_DIR / name, tmp_path)
    return tmp_path / metadata_path.stem


def test_model_loads_from_any_folder(model_copy: Path) -> None:
    """Files are found beside their metadata, not in models/, so clients can keep them anywhere."""
    model = load_model(model_copy)
    assert model.name == model_copy.name and model.source.parent == model_copy.parent


def test_changed_model_file_fails_its_sha256(model_copy: Path) -> None:
    metadata = ModelMetadata.read(model_copy.with_suffix(".json"))
    for name in metadata.files.values():
        path = model_copy.parent / name
        blob = bytearray(path.read_bytes())
        blob[len(blob) // 2] ^= 0x01
        path.write_bytes(bytes(blob))
        with pytest.raises(ModelError, match="sha256 .* does not match its metadata"):
            load_model(path)


def test_missing_model_file_is_a_model_error(model_copy: Path) -> None:
    name = next(iter(ModelMetadata.read(model_copy.with_suffix(".json")).files.values()))
    (model_copy.parent / name).unlink()
    with pytest.raises(ModelError, match="is missing"):
        load_model(model_copy.parent / name)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda entry: entry["std"].__setitem__(0, 0.0), "malformed model metadata"),
        (lambda entry: entry["mean"].pop(), "malformed model metadata"),
        (lambda entry: (entry["mean"].pop(), entry["std"].pop()), "one entry per feature bin"),
    ],
    ids=["zero std", "lengths differ", "wrong bin count"],
)
def test_bad_input_standardization_is_a_model_error(tmp_path: Path, change, message: str) -> None:
    """The int8 Little model's standardisation must fit its features, or it does not load."""
    metadata_path = MODELS_DIR / "little.json"
    if not metadata_path.is_file():
        pytest.skip("models/little.json is missing")
    metadata = json.loads(metadata_path.read_text())
    for name in metadata["files"].values():
        shutil.copy(MODELS_DIR / name, tmp_path)
    change(metadata["input_standardization"])
    (tmp_path / "little.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match=message):
        load_model(tmp_path / "little")


def test_missing_metadata_is_a_model_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="no model metadata"):
        load_model(tmp_path / "little.tflite")


@pytest.mark.tflite_runtime
def test_every_model_runs_on_tflite_runtime_2_14(data_dir: Path) -> None:
    """The Pi's interpreter loads each file through kws.model.runtime and agrees with ai-edge-litert."""
    python = venv_python(DEFAULT_VENV)
    if not python.exists():
        pytest.skip(f"{DEFAULT_VENV.name} is missing: python -m bench.check_tflite_runtime creates it")
    if not MODEL_FILES:
        pytest.skip("no models in models/")
    clips = [clip.path for clip in sample_clips(list_clips(data_dir), per_label=2)]
    results, environment = check_models(python, MODEL_FILES, clips)
    assert environment["interpreter_version"] == "2.14.0"
    assert environment["numpy"].startswith("1."), "the Pi's tflite-runtime 2.14 needs numpy<2"
    failures = [result for result in results if not result.ok]
    assert not failures, "\n" + format_results(failures)


def test_softmax_of_logits_sums_to_one_even_for_large_values() -> None:
    """What KeywordModel.predict_features applies to a graph that ends in logits: the one place it is done."""
    probabilities = softmax(np.array([1000.0, 1000.0, -1000.0]))
    np.testing.assert_allclose(probabilities, [0.5, 0.5, 0.0])
