"""The Keras replica of the pretrained embedding computes what its ONNX graph computes, whole and
from a cut, so that tuning its top blocks starts from the network the front end ships."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from frontend_support import installed_files

if importlib.util.find_spec("onnx") is None or importlib.util.find_spec("onnxruntime") is None:
    pytest.skip("onnx or onnxruntime is not installed (pip install -r requirements.txt)", allow_module_level=True)

from kws.frontend.embedding import EMBEDDING_INPUT  # noqa: E402
from kws.training.embedding_replica import ReplicaError, build_layers, conv_indices, cut_graph, read_graph  # noqa: E402


@pytest.fixture(scope="module")
def steps():
    return read_graph(installed_files().embedding)


def windows(count: int) -> np.ndarray:
    """Embedding-model inputs in the range real clips give (log-mel / 10 + 2)."""
    return np.random.default_rng(18).normal(1.0, 1.5, (count, 76, 32, 1)).astype(np.float32)


def onnx_embeddings(path: Path, batch: np.ndarray) -> np.ndarray:
    """What onnxruntime computes for the windows with the graph at ``path`` (the whole one or a cut)."""
    import onnxruntime

    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {EMBEDDING_INPUT: batch})[0]


def replica(steps, start: int, input_shape):
    import tf_keras as keras

    inputs = keras.Input(input_shape)
    return keras.Model(inputs, build_layers(inputs, steps, start))


def test_the_graph_is_twenty_convolutions_with_their_weights(steps) -> None:
    convs = [steps[index] for index in conv_indices(steps)]
    assert len(convs) == 20
    assert convs[0].kernel.shape == (3, 3, 1, 24) and convs[-1].kernel.shape == (3, 1, 96, 96)
    assert {step.op for step in steps} == {"Conv", "LeakyRelu", "Max", "MaxPool"}


def test_the_whole_replica_equals_the_onnx_graph(steps) -> None:
    batch = windows(18)
    expected = onnx_embeddings(installed_files().embedding, batch).reshape(18, 96)
    got = replica(steps, 0, (76, 32, 1))(batch).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_the_cut_graph_and_the_tuned_top_give_the_whole_embedding(steps, tmp_path: Path) -> None:
    batch = windows(9)
    expected = onnx_embeddings(installed_files().embedding, batch).reshape(9, 96)
    path, _ = cut_graph(installed_files().embedding, steps, 15, tmp_path / "bottom.onnx")
    below = onnx_embeddings(path, batch).transpose(0, 2, 3, 1)
    assert below.shape == (9, 10, 2, 96)
    got = replica(steps, conv_indices(steps)[15], below.shape[1:])(below).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_cut_outside_the_convolutions_is_refused(steps, tmp_path: Path) -> None:
    with pytest.raises(ReplicaError, match="0 to 19"):
        cut_graph(installed_files().embedding, steps, 20, tmp_path / "bottom.onnx")


def test_a_graph_with_an_operation_it_does_not_translate_is_refused_by_name(tmp_path: Path) -> None:
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(
        [helper.make_node("Sigmoid", [EMBEDDING_INPUT], ["out"], name="squash")], "changed_front_end",
        [helper.make_tensor_value_info(EMBEDDING_INPUT, TensorProto.FLOAT, [1, 76, 32, 1])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 76, 32, 1])],
    )
    path = tmp_path / "changed.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ReplicaError, match=r"changed\.onnx: operation Sigmoid \(squash\)"):
        read_graph(path)
