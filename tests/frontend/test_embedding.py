"""The server side: shapes, the Pi's frames giving the same embeddings as the audio, batching only
where it is safe, and the thread count the caller asks for."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
from frontend_support import SPEC, loaded_front_end, real_clips

from kws.frontend.embedding import EMBEDDING_SIZE, mel_windows, pool, session_options
from kws.frontend.mel import clip_log_mel
from kws.frontend.spec import FrontEndError


def test_a_clip_becomes_9_embeddings_and_192_pooled_values(data_dir: Path) -> None:
    front_end = loaded_front_end()
    embeddings = front_end.embed_audio(real_clips(data_dir)[0])
    assert embeddings.shape == (9, EMBEDDING_SIZE) and embeddings.dtype == np.float32
    pooled = pool(embeddings)
    assert pooled.shape == (192,)
    np.testing.assert_array_equal(pooled[:96], embeddings.mean(axis=0))
    np.testing.assert_array_equal(pooled[96:], embeddings.max(axis=0))
    assert pool(np.stack([embeddings, embeddings])).shape == (2, 192)


def test_the_windows_are_the_transformed_frames_every_8() -> None:
    frames = np.arange(147 * 32, dtype=np.float32).reshape(147, 32)
    windows = mel_windows(frames, SPEC)
    assert windows.shape == (9, 76, 32, 1)
    np.testing.assert_allclose(windows[0, :, :, 0], frames[:76] / 10 + 2)
    np.testing.assert_allclose(windows[8, :, :, 0], frames[64:140] / 10 + 2)
    with pytest.raises(ValueError, match=r"\(147, 32\)"):
        mel_windows(frames[:97], SPEC)


def test_the_pis_numpy_frames_give_the_audios_embeddings(data_dir: Path) -> None:
    front_end = loaded_front_end()
    for clip in real_clips(data_dir)[:8]:
        from_audio = front_end.embed_audio(clip)
        from_frames = front_end.embed_mel(clip_log_mel(clip, SPEC))
        np.testing.assert_allclose(from_frames, from_audio, atol=1e-3 * float(np.abs(from_audio).max()))


def test_batching_clips_changes_no_embedding(data_dir: Path) -> None:
    """The embedding step batches windows of many clips; each clip's answer is its own (the mel is not batched)."""
    front_end = loaded_front_end()
    clips = real_clips(data_dir)[:4]
    together = front_end.embed_clips(clips)
    assert together.shape == (4, 9, EMBEDDING_SIZE)
    for clip, embeddings in zip(clips, together):
        alone = front_end.embed_audio(clip)  # equal to the bit here; float rounding is all another build may add
        np.testing.assert_allclose(embeddings, alone, rtol=0, atol=1e-5 * float(np.abs(alone).max()))
    assert front_end.embed_mels([]).shape == (0, 9, EMBEDDING_SIZE)


def test_onnxruntime_gets_the_threads_asked_for() -> None:
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed here (requirements/server.txt)")
    options = session_options(3)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert session_options(1).intra_op_num_threads == 1
    with pytest.raises(ValueError):
        session_options(0)


def test_a_missing_onnxruntime_is_a_front_end_error_with_the_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # what an uninstalled module imports as
    with pytest.raises(FrontEndError, match=r"onnxruntime is not installed; fix: pip install -r requirements/server"):
        session_options(1)
