"""The Pi's log-mel frames as int8 for the wire: one byte a value and one float a clip.

Every value of one clip's log-mel frames lies in ``[top - 80 dB, top]``, where ``top`` is the
clip's maximum: the mel graph clamps everything below ``top - 80`` (:data:`kws.frontend.spec.TOP_DB`).
So the codes cover exactly that span, fixed, and the clip's ``top`` travels beside them::

    value = top + (code - 127) * STEP        STEP = 80 / 255 dB = 0.314 dB

``top`` maps to code 127 and ``top - 80`` to -128; nothing is ever clipped, and rounding adds at
most ``STEP / 2`` = 0.157 dB (0.0157 after the embedding model's ``x / 10 + 2``).
``tests/frontend/test_quantize.py`` holds both, and that pooled embeddings of the dequantized
frames stay close to those of the float frames (over all 2 755 shared keyword clips, a cosine of at
least 0.99982 between the two 192-value vectors).

Why not the features pack's int8 (``value = (q - zero_point) * scale`` with an integer
``zero_point`` in -128..127, the TFLite convention)? That needs zero inside the clip's range, and
log-mel dB values are usually all negative (-100 to -20 dB): their zero point falls outside
-128..127 and the values would be clipped. A float offset (``top``) has no such limit.

numpy alone: the Pi imports this.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kws.frontend.spec import TOP_DB

#: dB per int8 step: the graph's fixed 80 dB span over the 255 steps between -128 and 127.
STEP = TOP_DB / 255.0
#: The code of the clip's maximum.
TOP_CODE = 127
#: The largest rounding error (dB) of a value inside the span.
MAX_ERROR_DB = STEP / 2


@dataclass(frozen=True)
class QuantizedMel:
    """One clip's log-mel frames as int8 codes and the clip's maximum (dB, float32 on the wire)."""

    codes: np.ndarray
    """int8, the frames' shape, (147, 32) for one clip."""
    top: float

    def __post_init__(self) -> None:
        if self.codes.dtype != np.int8:
            raise ValueError(f"codes must be int8, got {self.codes.dtype}")
        if not np.isfinite(self.top):
            raise ValueError(f"top must be finite, got {self.top}")


def quantize_mel(frames: np.ndarray) -> QuantizedMel:
    """Float log-mel frames (dB, one clip, as :func:`kws.frontend.mel.clip_log_mel` gives them) to int8.

    Values more than 80 dB below the clip's maximum (frames that did not come from the graph's
    clamp) saturate at code -128.
    """
    frames = np.asarray(frames, dtype=np.float32)
    if frames.size == 0 or not np.all(np.isfinite(frames)):
        raise ValueError("log-mel frames must be non-empty and finite")
    top = float(np.float32(frames.max()))
    steps = np.rint((frames.astype(np.float64) - top) / STEP) + TOP_CODE
    return QuantizedMel(codes=np.clip(steps, -128, TOP_CODE).astype(np.int8), top=top)


def dequantize_mel(quantized: QuantizedMel) -> np.ndarray:
    """int8 codes back to float32 dB frames, each within :data:`MAX_ERROR_DB` of the original."""
    steps = quantized.codes.astype(np.float64) - TOP_CODE
    return (quantized.top + steps * STEP).astype(np.float32)
