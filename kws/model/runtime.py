"""Load a shipped keyword-spotting model and run it, with no TensorFlow needed.

Every client (the Pi's Little client, the Big service, the MQTT inference
clients, ``evaluate.py``) goes through :func:`load_model`, so they all read the
same metadata file and can never disagree about labels or features::

    model = load_model("models/little")          # .json, .tflite or .tflite.zlib also work
    probabilities = model.predict_audio(pcm)     # int16 clip at 16 kHz
    print(model.labels[probabilities.argmax()])

The metadata (``models/<name>.json``) holds the label order, the
:class:`~kws.features.FeatureConfig`, how the model was trained, its measured
accuracy, sizes and the sha256 of each file (:mod:`kws.model.metadata`).

TFLite interpreters are not thread-safe: give each thread its own with
:meth:`KeywordModel.clone`.
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.errors import KwsError
from kws.features import FeatureConfig, compute_features
from kws.model.installed import find_model
from kws.model.metadata import ModelError, ModelMetadata, metadata_path, model_stem, sha256_hex

log = logging.getLogger(__name__)

#: Interpreter modules in order of preference: the current LiteRT package, the
#: legacy runtime (the only one with 32-bit Raspberry Pi wheels), then full TensorFlow.
INTERPRETER_MODULES = ("ai_edge_litert.interpreter", "tflite_runtime.interpreter", "tensorflow.lite")

_MODEL_SUFFIXES = (".tflite.zlib", ".tflite", ".json")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Probabilities along the last axis, stable for large logits."""
    shifted = logits - np.max(logits, axis=-1, keepdims=True)
    exps = np.exp(shifted)
    return exps / np.sum(exps, axis=-1, keepdims=True)


class NonFiniteScores(KwsError, ValueError):
    """The model's output for one input is not finite: the input lies far outside what it was trained on."""

    http_status = 422
    summary = "no answer for this input"


def interpreter_class() -> tuple[Callable[..., Any], str]:
    """The first TFLite interpreter that imports here, and its module's name."""
    for module_name in INTERPRETER_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        return module.Interpreter, module_name
    raise ModelError("no TFLite interpreter: pip install ai-edge-litert (or tflite-runtime on 32-bit Pi OS)")


def decompress(data: bytes) -> bytes:
    """Inflate a ``.tflite.zlib`` file; zlib-ng when installed (faster), else the stdlib."""
    try:
        from zlib_ng import zlib_ng as zlib_module
    except ImportError:  # the formats are identical, so the stdlib reads it too
        import zlib as zlib_module
    return zlib_module.decompress(data)


class TfliteRunner:
    """One TFLite interpreter with its input and output tensors: features in, real-valued scores out.

    The one invoke loop of the project: :class:`KeywordModel` runs through it, and
    so does training when it measures the exported flatbuffer, so the accuracy in a
    model's metadata is what every client gets. Not thread-safe (TFLite is not).
    """

    def __init__(self, model_bytes: bytes, num_threads: int = 1) -> None:
        interpreter_type, self.interpreter_name = interpreter_class()
        self._interpreter = interpreter_type(model_content=model_bytes, num_threads=num_threads)
        self._interpreter.allocate_tensors()
        self.input = self._interpreter.get_input_details()[0]
        self.output = self._interpreter.get_output_details()[0]

    def invoke(self, features: np.ndarray) -> np.ndarray:
        """Scores for one clip's features (reshaped to the input tensor), dequantized."""
        self._interpreter.set_tensor(self.input["index"], np.asarray(features, np.float32).reshape(self.input["shape"]))
        self._interpreter.invoke()
        return dequantize(self._interpreter.get_tensor(self.output["index"])[0], self.output).astype(np.float32)


class KeywordModel:
    """A TFLite keyword-spotting model with the preprocessing its metadata asks for.

    That is the model's :class:`~kws.features.FeatureConfig`, or, for a model on the pretrained
    front end (``metadata.front_end``), the front end itself (``front_end``: its ONNX graphs under
    onnxruntime, a server's business; :mod:`kws.frontend.embedding`), whose embeddings a head reads,
    or whose mel windows a model that holds the embedding network reads.
    """

    def __init__(
        self, metadata: ModelMetadata, model_bytes: bytes, source: Path, file_sha256: str, num_threads: int = 1,
        front_end: Any = None,
    ) -> None:
        if (metadata.front_end is None) != (front_end is None):
            raise ModelError(f"{source}: a head on the pretrained front end needs it loaded, and only such a head")
        self.metadata = metadata
        self.front_end = front_end
        self.source = source
        #: sha256 of the file this instance was loaded from (checked against the metadata).
        self.sha256 = file_sha256
        self.model_bytes = model_bytes
        self.num_threads = num_threads
        self._runner = TfliteRunner(model_bytes, num_threads)
        self.interpreter_name = self._runner.interpreter_name
        self._lock = threading.Lock()
        expected = (1, *metadata.input_shape)
        actual = tuple(int(d) for d in self._runner.input["shape"][: len(expected)])
        if actual != expected:
            what = "front end's model input" if metadata.front_end is not None else "FeatureConfig"
            raise ModelError(f"{source}: input shape {actual} does not match its {what} {expected}")
        standardization = metadata.input_standardization
        if standardization is not None and standardization.mean.shape != (metadata.feature_config.num_features,):
            raise ModelError(f"{source}: input_standardization does not have one entry per feature bin")

    # Convenience views of the metadata -------------------------------------------------
    @property
    def name(self) -> str:
        return self.metadata.name

    @property
    def labels(self) -> tuple[str, ...]:
        return self.metadata.labels

    @property
    def feature_config(self) -> FeatureConfig:
        """The model's features; a :class:`ModelError` for a head on the pretrained front end, which has none."""
        if self.metadata.feature_config is None:
            raise ModelError(f"model {self.name} reads the pretrained front end, not features")
        return self.metadata.feature_config

    @property
    def size_bytes(self) -> int:
        return self.source.stat().st_size

    def clone(self) -> KeywordModel:
        """Another instance with its own interpreter, for another thread."""
        return KeywordModel(self.metadata, self.model_bytes, self.source, self.sha256, self.num_threads,
                            self.front_end)  # onnxruntime sessions are safe to share between threads

    # Inference ------------------------------------------------------------------------
    def features(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """This model's input for one clip: its features (int16 PCM or float in [-1, 1]), or, for a model
        on the front end, what it reads of it: the clip's embeddings, or its mel windows for a model that
        holds the embedding network itself (int16 PCM at 16 kHz only: see ``kws.frontend.mel``)."""
        if self.front_end is not None:
            if sample_rate != SAMPLE_RATE:
                raise ValueError(f"the pretrained front end hears {SAMPLE_RATE} Hz clips, got {sample_rate} Hz")
            return self.front_end.model_input(audio)
        return compute_features(audio, self.feature_config, sample_rate)

    def predict_features(self, features: np.ndarray) -> np.ndarray:
        """Class probabilities, in ``labels`` order, for one clip's features (or what it reads of the front end).

        The one place a model's output becomes probabilities: a graph that ends in logits (its
        metadata says ``"output": "logits"``) gets a softmax here, so no caller has to know.
        """
        batch = np.asarray(features, dtype=np.float32)
        if self.metadata.input_standardization is not None:
            batch = self.metadata.input_standardization.apply(batch)
        with self._lock:  # guards misuse across threads; clone() for real concurrency
            probabilities = self._runner.invoke(batch)
        if self.metadata.raw.get("output") == "logits":
            probabilities = softmax(probabilities)
        if not np.isfinite(probabilities).all():  # never sent on as scores: NaN is not even valid JSON
            raise NonFiniteScores(f"model {self.name} gave NaN or infinite scores for this input")
        return probabilities

    def predict_audio(self, audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
        """Class probabilities for one raw clip."""
        return self.predict_features(self.features(audio, sample_rate))


def dequantize(values: np.ndarray, details: dict[str, Any]) -> np.ndarray:
    """Real values of an output tensor (integer outputs carry a scale and zero point)."""
    if np.issubdtype(values.dtype, np.floating):
        return values
    scale, zero_point = details["quantization"]
    return (values.astype(np.float32) - zero_point) * scale


def load_model(path: Path | str, prefer: str = "tflite", num_threads: int = 1) -> KeywordModel:
    """Load a model by stem (``models/little``) or by any of its files.

    A path naming a file loads that file. A stem loads ``prefer`` ('tflite' or
    'zlib') when the metadata lists it, else the other. The file's sha256 must
    match the metadata, so a half-copied or stale model fails loudly. A ``models/NAME``
    the current directory does not have is the installed one (:mod:`kws.model.installed`).
    """
    path = find_model(path)
    stem = model_stem(path)
    metadata = ModelMetadata.read(metadata_path(stem))
    text = str(path)
    if text.endswith(".tflite.zlib"):
        kind = "tflite_zlib"
    elif text.endswith(".tflite"):
        kind = "tflite"
    else:
        order = ["tflite_zlib", "tflite"] if prefer == "zlib" else ["tflite", "tflite_zlib"]
        kind = next((k for k in order if k in metadata.files), None)
        if kind is None:
            raise ModelError(f"{stem}.json lists no model file")
    if kind not in metadata.files:
        raise ModelError(f"{stem}.json does not list a {kind} file")
    file_path = stem.parent / metadata.files[kind]
    try:
        blob = file_path.read_bytes()
    except FileNotFoundError as error:
        raise ModelError(f"model file {file_path} is missing") from error
    digest = sha256_hex(blob)
    if metadata.sha256.get(kind) != digest:
        raise ModelError(f"{file_path}: sha256 {digest[:12]}… does not match its metadata")
    model_bytes = decompress(blob) if kind == "tflite_zlib" else blob
    front_end = None
    if metadata.front_end is not None:  # a server's model: onnxruntime and the checked graphs
        from kws.frontend.embedding import FrontEnd
        from kws.frontend.spec import FrontEndError

        try:
            front_end = FrontEnd.load(metadata.front_end, threads=num_threads)
        except FrontEndError as error:
            raise ModelError(f"{stem}: its pretrained front end cannot be used: {error}") from error
    model = KeywordModel(metadata, model_bytes, file_path, digest, num_threads, front_end)
    log.info("loaded %s (%d bytes) with %s", file_path, len(blob), model.interpreter_name)
    return model
