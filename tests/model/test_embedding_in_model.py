"""A model whose TFLite file holds the pretrained embedding itself (``embedding_in_model``): it loads without
the embedding graph, reads the mel windows, and computes what the float model and the ONNX graph compute."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kws.audio import read_clip
from kws.data.clips import select_clips, spread_evenly
from kws.frontend.embedding import FrontEnd, mel_windows
from kws.frontend.spec import FrontEndError
from kws.model.metadata import ModelError
from kws.model.runtime import load_model


@pytest.fixture(scope="module")
def clips(data_dir: Path) -> list[np.ndarray]:
    return [read_clip(clip.path) for clip in spread_evenly(select_clips(data_dir, "test"), 6)]


def test_it_loads_with_the_mel_graph_alone(tuned_embedding_model) -> None:
    """The service pays for no embedding session it never runs; asking the front end to embed says why not."""
    model = load_model(tuned_embedding_model.stem)
    assert model.metadata.front_end.embedding_in_model and model.metadata.input_shape == (9, 76, 32, 1)
    assert model.metadata.raw["input_shape"] == [9, 76, 32, 1]
    with pytest.raises(FrontEndError, match="holds the embedding network itself"):
        model.front_end.embed_mel(np.zeros((147, 32), np.float32))
    with pytest.raises(FrontEndError, match="holds the embedding network itself"):
        model.front_end.embed_clips([np.zeros(16000, np.int16)])


def test_the_model_reads_the_mel_windows_of_the_clip(tuned_embedding_model, clips) -> None:
    model = load_model(tuned_embedding_model.stem)
    frames = model.front_end.mel(clips[0])
    windows = model.features(clips[0])
    assert windows.shape == (9, 76, 32, 1) and windows.dtype == np.float32
    np.testing.assert_array_equal(windows, mel_windows(frames, tuned_embedding_model.spec))
    np.testing.assert_array_equal(model.front_end.model_input_from_mel(frames), windows)


def test_its_answers_are_the_float_models(tuned_embedding_model, clips) -> None:
    """The TFLite file, fed by the service's front end, gives what the Keras model it came from gives."""
    model = load_model(tuned_embedding_model.stem)
    for clip in clips:
        windows = mel_windows(model.front_end.mel(clip), tuned_embedding_model.spec)
        expected = tuned_embedding_model.keras_model(windows[np.newaxis]).numpy()[0]
        np.testing.assert_allclose(model.predict_audio(clip), expected, atol=1e-4)


def test_its_embedding_part_is_the_onnx_graph(tuned_embedding_model, clips) -> None:
    """The file's answers are its head on the embeddings onnxruntime computes with the shipped graph: the
    embedding inside the file is the front end's, not merely the Keras replica's."""
    model = load_model(tuned_embedding_model.stem)
    graph = FrontEnd.load(dataclasses.replace(tuned_embedding_model.spec, embedding_in_model=False))
    answers = np.stack([model.predict_audio(clip) for clip in clips])
    assert answers.max(axis=1).min() > 0.2, "a head this flat would hide a wrong embedding"
    for clip, answer in zip(clips, answers, strict=True):
        np.testing.assert_allclose(answer, tuned_embedding_model.head(graph.embed_audio(clip)), atol=1e-4)


def test_metadata_that_denies_holding_the_embedding_is_refused(tuned_embedding_model, tmp_path: Path) -> None:
    """The same file under a block that says it is a head: its input is not the embeddings, and loading says so."""
    stem = tuned_embedding_model.stem
    shutil.copyfile(stem.with_suffix(".tflite"), tmp_path / stem.with_suffix(".tflite").name)
    document = json.loads(stem.with_suffix(".json").read_text())
    document["front_end"]["embedding_in_model"] = False
    (tmp_path / stem.with_suffix(".json").name).write_text(json.dumps(document))
    with pytest.raises(ModelError, match=r"front end's model input \(1, 9, 96\)"):
        load_model(tmp_path / stem.name)
