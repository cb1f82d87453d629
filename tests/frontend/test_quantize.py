"""The Pi's int8 log-mel: the error it adds, and that Big hears the same clip through it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from frontend_support import SPEC, edge_clips, loaded_front_end, real_clips

from kws.frontend.embedding import pool
from kws.frontend.mel import clip_log_mel
from kws.frontend.quantize import MAX_ERROR_DB, STEP, TOP_CODE, QuantizedMel, dequantize_mel, quantize_mel

#: float32 rounding of the dequantized values (up to ~100 dB in magnitude) on top of STEP / 2.
ROUNDING_DB = 1e-5
#: Pooled embeddings (192 values) of int8 frames against float frames. Measured on all 2 755 shared
#: keyword clips: cosine at least 0.99982 (median 0.99998); the largest difference at most 2.6 %
#: (median 0.7 %) of the clip's largest pooled value.
MIN_COSINE = 0.9995
MAX_RELATIVE_DIFFERENCE = 0.03


def test_the_round_trip_adds_at_most_half_a_step(data_dir: Path) -> None:
    clips = list(real_clips(data_dir)) + list(edge_clips(real_clips(data_dir)[0]).values())
    for clip in clips:
        frames = clip_log_mel(clip, SPEC)
        quantized = quantize_mel(frames)
        assert quantized.codes.dtype == np.int8 and quantized.codes.shape == (147, 32)
        assert quantized.codes.max() == TOP_CODE and quantized.top == frames.max()
        restored = dequantize_mel(quantized)
        assert restored.dtype == np.float32
        assert float(np.abs(restored - frames).max()) <= MAX_ERROR_DB + ROUNDING_DB
    assert MAX_ERROR_DB == pytest.approx(0.157, abs=1e-3)


def test_the_codes_span_exactly_the_graphs_80_db() -> None:
    frames = np.linspace(-30.0, -110.0, 147 * 32, dtype=np.float32).reshape(147, 32)
    quantized = quantize_mel(frames)
    assert quantized.codes.min() == -128 and quantized.codes.max() == 127
    np.testing.assert_allclose(dequantize_mel(quantized)[frames >= -110.0 + STEP], frames[frames >= -110.0 + STEP],
                               atol=MAX_ERROR_DB + ROUNDING_DB)
    assert dequantize_mel(quantized).min() == pytest.approx(-110.0, abs=MAX_ERROR_DB)  # 80 dB under the top


def test_values_beyond_80_db_saturate_and_bad_input_is_refused() -> None:
    frames = np.array([[0.0, -200.0]], dtype=np.float32)
    assert list(quantize_mel(frames).codes[0]) == [127, -128]
    with pytest.raises(ValueError):
        quantize_mel(np.array([[np.nan]], dtype=np.float32))
    with pytest.raises(ValueError):
        QuantizedMel(codes=np.zeros((2, 2), dtype=np.int16), top=0.0)


def test_big_hears_the_same_clip_through_int8(data_dir: Path) -> None:
    front_end = loaded_front_end()
    for clip in real_clips(data_dir):
        frames = clip_log_mel(clip, SPEC)
        exact, through_int8 = pool(front_end.embed_mels([frames, dequantize_mel(quantize_mel(frames))]))
        cosine = float(exact @ through_int8 / (np.linalg.norm(exact) * np.linalg.norm(through_int8)))
        assert cosine >= MIN_COSINE
        assert float(np.abs(exact - through_int8).max()) <= MAX_RELATIVE_DIFFERENCE * float(np.abs(exact).max())
