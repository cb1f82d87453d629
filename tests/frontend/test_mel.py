"""The Pi's numpy mel against melspectrogram.onnx: its constants against the graph's own, its output
against the graph's on real clips and edge cases, and why the graph must run one clip per call."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from frontend_support import SPEC, edge_clips, installed_files, loaded_front_end, real_clips

from kws.frontend.mel import PARITY_TOLERANCE_DB, clip_log_mel, log_mel, mel_filterbank, padded_signal, stft_window
from kws.frontend.spec import FFT_LENGTH, HOP_LENGTH, POWER_FLOOR, TOP_DB


def graph_constants() -> tuple[dict[str, np.ndarray], list, list[np.ndarray]]:
    """The mel graph's initializers, nodes and Constant nodes' values, read with the ``onnx`` package."""
    onnx = pytest.importorskip("onnx", reason="the onnx package reads the graph's constants (requirements/server.txt)")
    from onnx import numpy_helper

    model = onnx.load(str(installed_files().mel))
    initializers = {tensor.name: numpy_helper.to_array(tensor) for tensor in model.graph.initializer}
    nodes = list(model.graph.node)
    constants = [numpy_helper.to_array(attribute.t) for node in nodes if node.op_type == "Constant"
                 for attribute in node.attribute if attribute.name == "value"]
    return initializers, nodes, constants


def test_the_filterbank_and_window_are_the_graphs_own() -> None:
    initializers, nodes, constants = graph_constants()
    np.testing.assert_allclose(mel_filterbank(), initializers["1.melW"], rtol=0, atol=1e-9)
    bins = np.arange(FFT_LENGTH // 2 + 1)[:, np.newaxis]
    phase = 2 * np.pi * bins * np.arange(FFT_LENGTH) / FFT_LENGTH
    np.testing.assert_allclose(np.cos(phase) * stft_window(), initializers["0.stft.conv_real.weight"][:, 0], atol=1e-6)
    np.testing.assert_allclose(-np.sin(phase) * stft_window(), initializers["0.stft.conv_imag.weight"][:, 0], atol=1e-6)
    convolutions = [node for node in nodes if node.op_type == "Conv"]
    assert len(convolutions) == 2
    for node in convolutions:
        attributes = {attribute.name: list(attribute.ints) for attribute in node.attribute}
        assert attributes["strides"] == [HOP_LENGTH] and attributes["pads"] == [0, 0]
    assert float(initializers["onnx::Clip_39"]) == np.float32(POWER_FLOOR)
    assert any(value.dtype == np.float32 and value.size == 1 and float(value) == TOP_DB for value in constants)


def test_numpy_equals_the_graph_on_real_clips(data_dir: Path) -> None:
    front_end = loaded_front_end()
    differences = []
    for clip in real_clips(data_dir):
        ours = clip_log_mel(clip, SPEC)
        assert ours.shape == (147, 32) and ours.dtype == np.float32
        differences.append(float(np.abs(ours - front_end.mel(clip)).max()))
    assert max(differences) <= PARITY_TOLERANCE_DB, differences


def test_numpy_equals_the_graph_on_edge_cases(data_dir: Path) -> None:
    front_end = loaded_front_end()
    for name, clip in edge_clips(real_clips(data_dir)[0]).items():
        ours, graph = clip_log_mel(clip, SPEC), front_end.mel(clip)
        assert ours.shape == graph.shape == (147, 32), name
        assert float(np.abs(ours - graph).max()) <= PARITY_TOLERANCE_DB, name


def test_edge_cases_take_the_floors_the_graph_has() -> None:
    clips = edge_clips(np.zeros(16000, dtype=np.int16))
    silence = clip_log_mel(clips["silence"], SPEC)
    np.testing.assert_array_equal(silence, np.full((147, 32), -100.0, dtype=np.float32))
    faint = clip_log_mel(clips["faint noise"], SPEC)
    assert faint.max() < -20 and faint.min() == np.float32(-100.0)  # the power clamp, not max - 80
    loud = clip_log_mel(clips["full-scale square"], SPEC)
    assert loud.min() == pytest.approx(loud.max() - TOP_DB, abs=1e-4)  # max - 80 is the floor


def test_the_graph_batched_changes_each_clips_features(data_dir: Path) -> None:
    """Why the mel runs one clip per call: batched, the loud clip raises the quiet one's floor."""
    front_end = loaded_front_end()
    quiet = (real_clips(data_dir)[1] // 64).astype(np.int16)
    loud = edge_clips(quiet)["full-scale square"]
    batch = np.stack([padded_signal(quiet, SPEC), padded_signal(loud, SPEC)])
    batched_quiet = front_end._mel.run(None, {"input": batch})[0][0, 0]
    alone = front_end.mel(quiet)
    assert batched_quiet.min() > alone.min() + 1.0
    assert float(np.abs(alone - clip_log_mel(quiet, SPEC)).max()) <= PARITY_TOLERANCE_DB


def test_the_input_is_one_int16_clip() -> None:
    with pytest.raises(ValueError, match="int16"):
        padded_signal(np.zeros(16000, dtype=np.float32), SPEC)
    with pytest.raises(ValueError, match="one clip per call"):
        log_mel(np.zeros((2, 24000), dtype=np.float32))
    long = np.ones(20000, dtype=np.int16)
    signal = padded_signal(long, SPEC)
    assert signal.size == 24000 and signal[:4000].sum() == 0 and signal[20000:].sum() == 0
    assert signal[4000] == np.float32(1 / 32768)


def test_numpy_equals_the_graph_on_unpadded_signals(data_dir: Path) -> None:
    """The geometry is the spec's choice, not the mel's: any length gives the graph's frames."""
    front_end = loaded_front_end()
    clip = real_clips(data_dir)[2].astype(np.float32) / 32768
    for length in (16000, 513, 20001):
        signal = np.resize(clip, length)
        graph = front_end._mel.run(None, {"input": signal[np.newaxis]})[0][0, 0]
        ours = log_mel(signal)
        assert ours.shape == graph.shape == (1 + (length - 512) // 160, 32)
        assert float(np.abs(ours - graph).max()) <= PARITY_TOLERANCE_DB
