"""The Big model as a REST service: the cloud half of the Big/Little cascade.

The Little client on the Raspberry Pi posts a clip it is unsure about, either as
a SenML audio pack (:mod:`kws.wire.audio_pack`) or as the clip's features computed
with this model's FeatureConfig (:mod:`kws.wire.features_pack`, about a fifteenth
of the bytes), and gets the Big model's answer back::

    POST /predict   Content-Type: application/senml+json   -> {"label": "yes", "scores": [...], ...}
    GET  /health    200 once the model is loaded (with the payloads and request codings /predict
                    takes), 503 before
    GET  /model     the model's metadata (labels, features, accuracy, sha256)
    GET  /metrics   Prometheus text: requests by path and status, errors, /predict latency

Every error is JSON, ``{"error": "<what is wrong>", "status": N}``, never an HTML
page, and never takes the service down:

====  ==============================================================
400   not valid SenML: malformed JSON, RFC 8428 violations, bad base64, JSON
      nested too deep, numbers no double holds; a compressed body that is
      broken, cut short or followed by other bytes; or malformed HTTP
401   /predict without the service's bearer token (when it has one)
422   valid SenML but not one usable clip: no audio record or two, no
      or wrong sample rate, odd byte count, empty or longer than 1 s; or
      features of another shape or FeatureConfig than the model's (the
      message names every field that differs), a config that is no flat
      object of typed, bounded fields, features beyond ±1e4; or an input
      the model gives no finite scores for
413   body over the size limit (64 KiB; a 1 s clip needs about 43 KB), before
      or after decoding a compressed body (:mod:`kws.rest.compression`)
414   request line over 4 KiB; 431: head over 16 KiB or over 100 lines
415   Content-Type other than application/senml+json, or a Content-Encoding
      other than deflate or gzip (the answer's Accept-Encoding lists them)
405   wrong method (the ``Allow`` header lists the right ones)
404   unknown path
503   model not loaded yet
500   a bug; the traceback goes to the log, not to the client
====  ==============================================================

The app is CherryPy, served by waitress through :mod:`kws.rest.server` (which
enforces the HTTP limits while reading and keeps slow clients off the worker
threads) rather than through the global ``cherrypy.engine``, so one process can
run several independent servers and stop each one cleanly, which the tests and
the benchmark rely on. TFLite interpreters are not thread-safe, so each worker
thread gets its own clone of the model on first use.

The command line is ``big_service.py``; ``python big_service.py --help``.
"""

from __future__ import annotations

import contextlib
import html
import json
import logging
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cherrypy
import numpy as np

from kws.errors import KwsError
from kws.model.installed import SERVICE_MODEL
from kws.model.runtime import KeywordModel, load_model
from kws.rest import compression
from kws.rest.auth import require_bearer_token
from kws.rest.metrics import PROMETHEUS_CONTENT_TYPE, HttpMetrics, metrics_middleware
from kws.rest.server import ServerHandle, ServerLimits, serve
from kws.wire import audio_pack, features_pack, mel_pack, senml

log = logging.getLogger(__name__)

DEFAULT_MODEL = Path("models") / SERVICE_MODEL
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8080
DEFAULT_THREADS = 8
#: A 1 s clip is 32 000 bytes of PCM, 42 667 in base64, plus ~150 bytes of SenML.
MAX_BODY_BYTES = 64 * 1024
JSON_CONTENT_TYPE = "application/json"
PATHS = ("/predict", "/health", "/model", "/metrics")
#: What a bearer token guards when the service has one: the answers. /health, /model and
#: /metrics stay open to load balancers and monitoring; none of them can steer an answer.
PROTECTED_PATHS = ("/predict",)
#: Every payload /predict can take: a clip (SenML audio pack), its features (features pack), or the pretrained
#: front end's mel frames (mel pack); /health lists the ones the loaded model reads (BigService.payloads).
PAYLOADS = ("pcm", "features", "mel")


class WrongPayload(KwsError, ValueError):
    """A valid pack of a kind this model does not read (features for a head on the front end, or the reverse)."""

    http_status = 422


class ModelNotLoaded(KwsError, RuntimeError):
    """The model is asked for before :meth:`BigService.load` has finished."""

    http_status = 503


class BigService:
    """The Big model and what the endpoints ask of it; no HTTP in here.

    The model is loaded by :meth:`load`, not by the constructor, so a server can
    listen (and answer /health with 503) while a large model is still loading.
    """

    def __init__(
        self,
        model_path: Path | str = DEFAULT_MODEL,
        expected_rate: int = audio_pack.EXPECTED_SAMPLE_RATE,
        max_body_bytes: int = MAX_BODY_BYTES,
    ) -> None:
        self.model_path = Path(model_path)
        self.expected_rate = expected_rate
        self.max_body_bytes = max_body_bytes
        self._model: KeywordModel | None = None
        self._per_thread = threading.local()

    def load(self) -> KeywordModel:
        """Load the model (raises :class:`ModelError`); afterwards the service is ready."""
        model = load_model(self.model_path, prefer="tflite")
        self._model = model
        log.info("model %s ready (%d labels, sha256 %s…)", model.name, len(model.labels), model.sha256[:12])
        return model

    @property
    def ready(self) -> bool:
        return self._model is not None

    @property
    def model(self) -> KeywordModel:
        if self._model is None:
            raise ModelNotLoaded(f"model {self.model_path} is still loading; retry shortly")
        return self._model

    def _thread_model(self) -> KeywordModel:
        """This worker thread's own interpreter (TFLite interpreters are not thread-safe)."""
        model = getattr(self._per_thread, "model", None)
        if model is None:
            model = self._per_thread.model = self.model.clone()
        return model

    def predict(self, clip: audio_pack.AudioClip) -> dict[str, Any]:
        """The answer to one clip, as /predict returns it."""
        model = self._thread_model()
        started = time.perf_counter()
        scores = model.predict_audio(clip.samples, clip.sample_rate)
        return self._answer(model, scores, started)

    def predict_mel(self, message: mel_pack.MelMessage) -> dict[str, Any]:
        """The answer to the pretrained front end's log-mel frames of a clip, computed by the client."""
        model = self._thread_model()
        started = time.perf_counter()
        scores = model.predict_features(model.front_end.model_input_from_mel(message.frames))
        return self._answer(model, scores, started)

    @property
    def payloads(self) -> tuple[str, ...]:
        """What /predict takes for this model: a clip, and either its features or the front end's mel frames."""
        return ("pcm", "mel") if self.model.metadata.front_end is not None else ("pcm", "features")

    def predict_features(self, message: features_pack.FeaturesMessage) -> dict[str, Any]:
        """The answer to features the client computed with this model's FeatureConfig.

        Raises :class:`~kws.wire.features_pack.ConfigMismatch`, naming the fields that
        differ, for features made for another model: answering them would be wrong.
        """
        model = self._thread_model()
        features_pack.check_config(message, model.feature_config)
        started = time.perf_counter()
        scores = model.predict_features(message.features)
        return self._answer(model, scores, started)

    @staticmethod
    def _answer(model: KeywordModel, scores: np.ndarray, started: float) -> dict[str, Any]:
        inference_ms = (time.perf_counter() - started) * 1000.0
        index = int(np.argmax(scores))
        return {
            "label": model.labels[index],
            "index": index,
            "scores": [round(float(score), 6) for score in scores],
            "labels": list(model.labels),
            "model": {"name": model.name, "sha256": model.sha256},
            "inference_ms": round(inference_ms, 3),
        }


# --------------------------------------------------------------------------- #
# HTTP
# --------------------------------------------------------------------------- #


def _json_bytes(document: Any) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


def _respond_json(document: Any) -> bytes:
    cherrypy.serving.response.headers["Content-Type"] = JSON_CONTENT_TYPE
    return _json_bytes(document)


@contextlib.contextmanager
def _http_errors() -> Iterator[None]:
    """Turn what the service and the pack decoders raise into the HTTP statuses of the module docstring.

    Each error says its own status and what it means to the client (:class:`~kws.errors.KwsError`), so
    this is the one place they meet HTTP. One the service did not expect (500) goes on to CherryPy as it
    is: the internal-error hook logs its traceback and tells the client little.
    """
    try:
        yield
    except KwsError as error:
        if error.http_status == 500:
            raise
        raise cherrypy.HTTPError(error.http_status, error.explain()) from error


class Endpoints:
    """The CherryPy handlers; each one checks its input and delegates to :class:`BigService`."""

    def __init__(self, service: BigService, metrics: HttpMetrics) -> None:
        self.service = service
        self.http_metrics = metrics

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["POST"])
    def predict(self) -> bytes:
        with _http_errors():
            records = senml.loads(self._read_senml_body())
            front_end = self.service.model.metadata.front_end
            if mel_pack.is_mel_pack(records):
                if front_end is None:
                    raise WrongPayload("this model reads its own features, not the pretrained front end's mel "
                                       "frames: send a features pack or the clip")
                return _respond_json(self.service.predict_mel(mel_pack.mel_from_records(records, front_end)))
            if features_pack.is_features_pack(records):
                if front_end is not None:
                    raise WrongPayload("this model stands on the pretrained front end: send its mel frames (a mel "
                                       "pack) or the clip, not features")
                message = features_pack.features_from_records(records)
                return _respond_json(self.service.predict_features(message))
            clip = audio_pack.audio_from_records(records, self.service.expected_rate)
            return _respond_json(self.service.predict(clip))

    def _read_senml_body(self) -> bytes:
        """The request's body, its coding undone, within the body limit (inside :func:`_http_errors`)."""
        request = cherrypy.serving.request
        media_type = request.headers.get("Content-Type", "").split(";", 1)[0].strip().lower()
        if media_type != senml.MEDIA_TYPE:
            raise cherrypy.HTTPError(415, f"Content-Type must be {senml.MEDIA_TYPE}, got {media_type or 'none'!r}")
        limit = self.service.max_body_bytes
        declared = request.headers.get("Content-Length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            raise cherrypy.HTTPError(413, f"body of {declared} bytes is over the {limit}-byte limit")
        try:
            encoding = compression.request_encoding(request.headers.get("Content-Encoding"))
        except compression.EncodingError:
            # RFC 7694: a 415 for a request coding says in Accept-Encoding which codings would do.
            cherrypy.serving.response.headers["Accept-Encoding"] = ", ".join(compression.REQUEST_ENCODINGS)
            raise
        body = request.body.read(limit + 1)  # also bounds chunked bodies, which declare no length
        if len(body) > limit:
            raise cherrypy.HTTPError(413, f"body is over the {limit}-byte limit")
        return compression.decompress(body, encoding, limit)  # decoded, it is held to the same limit

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def health(self) -> bytes:
        if not self.service.ready:
            cherrypy.serving.response.status = 503
            return _respond_json({"status": "loading", "model": str(self.service.model_path)})
        front_end = self.service.model.metadata.front_end
        return _respond_json({
            "status": "ready", "model": self.service.model.name, "payloads": list(self.service.payloads),
            "content_encodings": list(compression.REQUEST_ENCODINGS),
            **({"front_end": {"package": front_end.package, "version": front_end.version,
                              "fingerprint": front_end.fingerprint,
                              "embedding_in_model": front_end.embedding_in_model}} if front_end is not None else {}),
        })

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def model(self) -> bytes:
        with _http_errors():
            return _respond_json(self.service.model.metadata.raw)

    @cherrypy.expose
    @cherrypy.tools.allow(methods=["GET", "HEAD"])
    def metrics(self) -> bytes:
        cherrypy.serving.response.headers["Content-Type"] = PROMETHEUS_CONTENT_TYPE
        return self.http_metrics.render()


def _json_error_page(status: str, message: str, traceback: str, version: str) -> bytes:
    """CherryPy's ``error_page.default``: every error, ours or the framework's, as JSON."""
    code = int(status.split(" ", 1)[0])
    cherrypy.serving.response.headers["Content-Type"] = JSON_CONTENT_TYPE
    # CherryPy HTML-escapes the message for its HTML template; JSON wants the original text.
    return _json_bytes({"error": html.unescape(message), "status": code})


def _json_internal_error() -> None:
    """A handler crashed: log it, and tell the client little, in the documented JSON, unpadded.

    Run as the ``after_error_response`` hook, after CherryPy has made its own 500: CherryPy
    resets ``request.error_response`` at the start of every request, so that attribute
    never sees a crash, and its 500 carries its own message, padded with spaces.
    """
    request = cherrypy.serving.request
    log.exception("unhandled error in %s %s", request.method, request.path_info)
    body = _json_bytes({"error": "internal error; the service log has the details", "status": 500})
    response = cherrypy.serving.response
    response.status = 500
    response.headers["Content-Type"] = JSON_CONTENT_TYPE
    response.headers["Content-Length"] = str(len(body))
    response.body = body


def _strip_error_padding() -> None:
    """Undo CherryPy's padding of short error bodies with spaces (a fix for Internet Explorer 5)."""
    response = cherrypy.serving.response
    is_error = response.status is not None and int(str(response.status)[:3]) >= 400  # None: not set, a 200
    if not is_error or response.headers.get("Content-Type") != JSON_CONTENT_TYPE:
        return
    body = response.collapse_body().rstrip(b" ")
    response.body = body
    response.headers["Content-Length"] = str(len(body))


class JsonErrorsRequest(cherrypy._cprequest.Request):
    """CherryPy's request with JSON errors from its first line on.

    Set on the class, not in the app config: the config only applies once the
    path is resolved, so a request failing earlier (no ``Host`` header, a bad
    header line) would otherwise get CherryPy's HTML page with a traceback.
    """

    error_page = {"default": _json_error_page}
    show_tracebacks = False
    hooks = cherrypy._cprequest.Request.hooks.copy()


JsonErrorsRequest.hooks.attach("before_finalize", _strip_error_padding)
JsonErrorsRequest.hooks.attach("after_error_response", _json_internal_error)


def _no_access_line() -> None:
    """What CherryPy calls after each request to write its access line: nothing (see :func:`build_app`)."""


def service_metrics(service: BigService) -> HttpMetrics:
    """The metrics /metrics shows: requests, errors, /predict latency, process and model readiness."""
    metrics = HttpMetrics(known_paths=PATHS, timed_path="/predict")
    metrics.add_gauge("model_ready", "1 once the model is loaded and /predict answers, else 0.", lambda: service.ready)
    return metrics


def build_app(service: BigService, metrics: HttpMetrics | None = None, token: str | None = None) -> Any:
    """The WSGI app: the CherryPy handlers with JSON errors, behind the bearer token when one is
    given (:data:`PROTECTED_PATHS`), wrapped in request metrics (so 401s are counted too)."""
    metrics = metrics or service_metrics(service)
    config = {"/": {"tools.encode.on": False}}  # handlers return bytes, already encoded
    app = cherrypy.Application(Endpoints(service, metrics), script_name="", config=config)
    app.request_class = JsonErrorsRequest
    # No access line per request: it would cost throughput and /metrics counts requests anyway. A disabled
    # logger is not enough: CherryPy formats the line (headers, times, escapes) before logging it, 0.07 ms
    # of CPU a request, a seventh of a bare GET /health; the app's access() itself is made a no-op.
    app.log.access_log.disabled = True
    app.log.access = _no_access_line
    guarded = app if token is None else require_bearer_token(app, token, PROTECTED_PATHS)
    return metrics_middleware(guarded, metrics)


def start_server(
    service: BigService,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    threads: int = DEFAULT_THREADS,
    token: str | None = None,
    ssl_context: ssl.SSLContext | None = None,
    limits: ServerLimits | None = None,
) -> ServerHandle:
    """Listen on ``host:port`` (0 picks a free port) and serve ``service`` from a background thread.

    ``token``: /predict requires ``Authorization: Bearer <token>``; ``ssl_context``:
    HTTPS (:func:`kws.rest.tls.server_context`). The HTTP limits are
    :class:`~kws.rest.server.ServerLimits` with the service's body limit. Raises
    OSError when the address cannot be bound. Connections are read by one I/O
    thread (:mod:`kws.rest.server`), so ``threads`` bounds the concurrent
    *inferences*, not the number of connected or slow clients.
    """
    metrics = service_metrics(service)
    limits = limits or ServerLimits(max_body_bytes=service.max_body_bytes)
    return serve(build_app(service, metrics, token), host, port, threads, limits, metrics, ssl_context)
