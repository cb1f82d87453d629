"""Talk to the Big service (``big_service.py``) from the Pi: one keep-alive session, bounded retries,
nothing from the network used before it is checked.

    with BigClient("https://cloud:8443", token=token, cafile="ca.pem") as big:
        answer = big.predict(pcm)          # BigAnswer, or raises a BigError
        print(answer.label, answer.wire_bytes)

What travels is the client's ``payload``: ``pcm`` (the clip as a SenML audio pack,
about 43 KB) or ``features`` (Big's own features of the clip, computed here with
the FeatureConfig Big's ``GET /model`` gives, int8 in a SenML features pack, about
3 KB). ``auto``, the default, takes features whenever the service lists them in
``GET /health``, so an older service that takes only audio still works.

Every failure is a :class:`BigError` with a ``reason`` (one of :data:`FAILURE_REASONS`),
which the cascade counts; the caller keeps its own answer. Three kinds:

* :class:`BigUnavailable` -- the service cannot answer now: unreachable, timed out,
  5xx after the retries, a failed TLS handshake, or not asked because the circuit
  breaker (:mod:`kws.rest.breaker`) is open after repeated failures;
* :class:`BigRejected` -- it answered 4xx: 401/403 (the token), or another 4xx;
* :class:`BigBadAnswer` -- it answered 200 with something unusable: over the size
  cap (enforced while reading), not JSON, or not a valid answer for the Pi's labels
  (:mod:`kws.rest.answers`).

A slow Big costs a bounded time: ``timeout`` bounds connecting, each read and the
whole body; a timed-out request is not retried (a slow service is no faster the
second time); and ``breaker_failures`` failures in a row stop the asking for
``breaker_cooldown_s``. The client logs one warning when the service starts failing,
one when the breaker opens and one info line when it is back, never a line per clip.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.exceptions import ConnectTimeoutError, MaxRetryError, NewConnectionError, ReadTimeoutError
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.retry import Retry

from kws.features import FeatureConfig, compute_features
from kws.rest import answers
from kws.rest.auth import bearer_header
from kws.rest.breaker import DEFAULT_COOLDOWN_S, DEFAULT_FAILURES, CircuitBreaker
from kws.wire import audio_pack, features_pack, senml

log = logging.getLogger(__name__)

#: What a client can send; "auto" picks the cheaper one the service takes.
PAYLOADS = ("pcm", "features")
PAYLOAD_CHOICES = ("auto", *PAYLOADS)
#: How features travel to Big: int8 is a quarter of float32 and leaves Big's answers as they were.
FEATURES_ENCODING = "int8"
#: Seconds per attempt (connect, each read, the whole answer). Big answers a clip in milliseconds
#: (under 10 ms on a LAN, a few hundred over a slow uplink); a user saying "yes" will not wait
#: seconds, and with the breaker's three failures a dead-slow Big costs a run 3 s, not 15.
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 2
#: Statuses worth retrying: the service (or a proxy before it) is restarting or overloaded.
RETRY_STATUSES = (502, 503, 504)
#: Largest answer read; a /predict answer is ~300 bytes and /model a few KB.
MAX_RESPONSE_BYTES = 256 * 1024
#: Frames x FFT points per clip a Big's FeatureConfig may ask the Pi to compute (the shipped
#: models ask 49 x 1024; a hostile /model must not make the Pi allocate without bound).
MAX_FEATURE_WORK = 1 << 20
#: Why Big's answer was not used, as the cascade report counts them.
FAILURE_REASONS = (
    "unreachable", "timeout", "server_error", "tls", "circuit_open",  # BigUnavailable
    "unauthorized", "rejected",  # BigRejected
    "too_large", *answers.ANSWER_REASONS,  # BigBadAnswer
)


class BigError(Exception):
    """Big gave no usable answer; ``reason`` (one of :data:`FAILURE_REASONS`) says why, the text says more."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BigUnavailable(BigError):
    """The Big service could not answer: unreachable, too slow, failing (5xx), TLS, or the breaker is open."""


class BigRejected(BigError):
    """The Big service refused a request (4xx): ``unauthorized`` (401/403) or ``rejected``."""


class BigBadAnswer(BigError):
    """The Big service answered with something the Pi cannot use: too large, not JSON, not a valid answer."""


class _Retry(Retry):
    """urllib3's Retry, except that a timeout is final: asking a slow (or black-holed) service again
    only doubles the wait. Refused and reset connections and 502/503/504 are still retried."""

    def increment(self, method: Any = None, url: Any = None, response: Any = None, error: Any = None,
                  _pool: Any = None, _stacktrace: Any = None) -> Retry:
        if _is_timeout(error):
            raise MaxRetryError(_pool, url, error) from error
        return super().increment(method, url, response, error, _pool, _stacktrace)


def _is_timeout(error: object) -> bool:
    # urllib3 makes a refused connection (NewConnectionError) a kind of ConnectTimeoutError.
    return isinstance(error, (ReadTimeoutError, ConnectTimeoutError)) and not isinstance(error, NewConnectionError)


def _network_reason(error: requests.RequestException) -> str:
    """``timeout``, ``tls`` or ``unreachable``, looking through urllib3's retry wrapper."""
    cause = error.args[0] if error.args else None
    cause = getattr(cause, "reason", cause)  # MaxRetryError wraps what failed last
    if isinstance(error, requests.exceptions.SSLError) or isinstance(cause, Urllib3SSLError):
        return "tls"
    if isinstance(error, (requests.ReadTimeout, requests.ConnectTimeout)) or _is_timeout(cause):
        return "timeout"
    return "unreachable"


@dataclass(frozen=True)
class BigAnswer(answers.CheckedPrediction):
    """Big's prediction for one clip (checked: :mod:`kws.rest.answers`), with what asking it cost."""

    body_bytes: int
    """Size of the request body (the SenML pack)."""
    payload: str
    """What the body carried: "pcm" or "features"."""
    wire_bytes: int
    """Request and response, headers and bodies: see :func:`exchange_bytes`."""
    seconds: float


def request_header_bytes(prepared: requests.PreparedRequest) -> int:
    """Bytes of the request line and headers as http.client writes them for ``prepared``.

    ``requests`` puts every header in the prepared request except ``Host``, which
    http.client adds from the URL (omitting the default port), so the count is the
    request line, ``Host``, each prepared header as ``Name: value\\r\\n``, and the
    blank line that ends the head.
    """
    url = urlsplit(prepared.url)
    lines = [f"{prepared.method} {prepared.path_url} HTTP/1.1"]
    if "Host" not in prepared.headers:
        default_port = {"http": 80, "https": 443}.get(url.scheme)
        host = url.hostname if url.port in (None, default_port) else f"{url.hostname}:{url.port}"
        lines.append(f"Host: {host}")
    lines += [f"{name}: {value}" for name, value in prepared.headers.items()]
    return sum(len(line.encode("latin-1")) + 2 for line in lines) + 2


def response_header_bytes(response: requests.Response) -> int:
    """Bytes of the status line and headers as received, read from the raw urllib3 response."""
    raw = response.raw
    version = {10: "HTTP/1.0", 11: "HTTP/1.1"}.get(getattr(raw, "version", 11), "HTTP/1.1")
    lines = [f"{version} {response.status_code} {response.reason}"]
    lines += [f"{name}: {value}" for name, value in raw.headers.items()]
    return sum(len(line.encode("latin-1")) + 2 for line in lines) + 2


def exchange_bytes(response: requests.Response, body_length: int | None = None) -> int:
    """All bytes of one HTTP exchange, both ways: request head + body, response head + body.

    Measured, not estimated: the request head from the prepared request that was
    sent, the response head from the raw response that came back, the response
    body's ``body_length`` (default: ``len(response.content)``). TCP/IP framing
    and the attempts that urllib3 retried away are not counted.
    """
    request = response.request
    request_body = len(request.body or b"")
    received = len(response.content) if body_length is None else body_length
    return request_header_bytes(request) + request_body + response_header_bytes(response) + received


def read_capped(response: requests.Response, limit: int, seconds: float) -> bytes:
    """The body of a streamed response, refusing more than ``limit`` bytes or ``seconds`` of reading.

    The limit holds while reading (a 200 MB answer costs ``limit`` bytes of memory,
    not 200 MB); a compressed body is refused, as the client asks for none.
    """
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        raise BigBadAnswer(f"answer declares {declared} bytes, over the {limit}-byte cap", "too_large")
    encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise BigBadAnswer(f"answer is {encoding}-compressed; none was asked for", "bad_answer")
    deadline = time.monotonic() + seconds
    chunks, size = [], 0
    try:
        for chunk in response.iter_content(chunk_size=16384):
            size += len(chunk)
            if size > limit:
                raise BigBadAnswer(f"answer is over the {limit}-byte cap", "too_large")
            if time.monotonic() > deadline:
                raise BigUnavailable(f"answer took over {seconds:g} s to arrive", "timeout")
            chunks.append(chunk)
    except requests.RequestException as error:
        raise BigUnavailable(f"answer broke off: {error}", _network_reason(error)) from error
    return b"".join(chunks)


class BigClient:
    """A keep-alive HTTP client of the Big service.

    ``retries`` bounds the extra attempts on connection errors and 502/503/504
    (with a short exponential back-off); ``timeout`` is per attempt and never
    retried. ``token`` is sent as ``Authorization: Bearer``; ``cafile`` is the CA
    bundle that HTTPS answers must be signed by (default: the system's).
    """

    def __init__(
        self,
        service_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        device: str | None = None,
        payload: str = "auto",
        token: str | None = None,
        cafile: str | None = None,
        breaker_failures: int = DEFAULT_FAILURES,
        breaker_cooldown_s: float = DEFAULT_COOLDOWN_S,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if payload not in PAYLOAD_CHOICES:
            raise ValueError(f"payload must be one of {PAYLOAD_CHOICES}, got {payload!r}")
        self.service_url = service_url.rstrip("/")
        self.payload_choice = payload
        #: What predict() sends; settled by negotiate() (PCM until then: every service takes it).
        self.payload = "pcm" if payload == "auto" else payload
        self._features_config: FeatureConfig | None = None
        self._negotiated = False
        self._sent = 0
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.device = audio_pack.default_device_id() if device is None else device
        self.expected_labels: tuple[str, ...] | None = None
        self.breaker = CircuitBreaker(f"Big service {self.service_url}", breaker_failures, breaker_cooldown_s)
        self.session = requests.Session()
        # requests re-reads proxy variables and ~/.netrc on every call when trust_env is on:
        # 0.45 ms of CPU per clip, a third of the client's cost. Read the proxies once, here.
        self.session.proxies.update(requests.utils.get_environ_proxies(self.service_url))
        self.session.trust_env = False
        self.session.headers["Accept-Encoding"] = "identity"  # a compressed answer could expand past any cap
        if token is not None:
            self.session.headers.update(bearer_header(token))
        if cafile is not None:
            self.session.verify = cafile
        retry = _Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),  # /predict has no side effects, so POST may repeat
            backoff_factor=0.05,
            raise_on_status=False,
        )
        self.session.mount("http://", HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1))
        self.session.mount("https://", HTTPAdapter(max_retries=retry, pool_connections=1, pool_maxsize=1))
        self._failing = False

    def __enter__(self) -> BigClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    def expect_labels(self, labels: tuple[str, ...] | list[str]) -> None:
        """Refuse answers for other labels than these (the Pi's own), in any order."""
        self.expected_labels = tuple(labels)

    # ------------------------------------------------------------------ requests
    def _exchange(self, method: str, path: str, **kwargs: Any) -> tuple[requests.Response, bytes]:
        """One call with retries: the response and its body, read under the size cap; a BigError otherwise."""
        url = f"{self.service_url}{path}"
        if not self.breaker.allow():
            raise BigUnavailable(
                f"{url} not asked: it failed repeatedly; next try in {self.breaker.seconds_left():.0f} s",
                "circuit_open",
            )
        try:
            response = self.session.request(method, url, timeout=self.timeout, stream=True, **kwargs)
        except requests.RequestException as error:
            reason = _network_reason(error)
            what = {"timeout": "did not answer in time", "tls": "failed TLS"}.get(reason, "unreachable")
            raise BigUnavailable(f"{url} {what}: {error}", reason) from error
        try:
            body = read_capped(response, self.max_response_bytes, self.timeout)
        except BigError as error:
            raise type(error)(f"{url}: {error}", error.reason) from error
        finally:
            response.close()
        if response.status_code >= 500:
            raise BigUnavailable(f"{url} answered {response.status_code}: {_error_text(body)}", "server_error")
        if response.status_code in (401, 403):
            raise BigRejected(
                f"{url} refused the token ({response.status_code}): {_error_text(body)}", "unauthorized"
            )
        if response.status_code >= 400:
            raise BigRejected(f"{url} refused the request ({response.status_code}): {_error_text(body)}", "rejected")
        return response, body

    def _call(self, method: str, path: str, check: Any, **kwargs: Any) -> tuple[Any, requests.Response, bytes]:
        """:meth:`_exchange` and ``check(body)``, telling the breaker and the log how it went."""
        try:
            response, body = self._exchange(method, path, **kwargs)
            try:
                checked = check(body)
            except answers.AnswerError as error:
                raise BigBadAnswer(f"{self.service_url}{path}: {error}", error.reason) from error
        except BigError as error:
            if error.reason != "circuit_open":
                self.breaker.failure()
                self._note_failure(error)
            raise
        self.breaker.success()
        if self._failing:
            log.info("Big service %s answers again", self.service_url)
            self._failing = False
        return checked, response, body

    def _note_failure(self, error: BigError) -> None:
        if not self._failing:
            what = "unreachable" if isinstance(error, BigUnavailable) else "failing"
            log.warning(
                "Big service %s %s (%s: %s); Little's answers stand until it is back",
                self.service_url, what, error.reason, error,
            )
            self._failing = True

    def health(self) -> dict[str, Any]:
        """GET /health; BigUnavailable while the model is still loading (503)."""
        document, _, _ = self._call("GET", "/health", _json_object)
        return document

    def model_info(self) -> dict[str, Any]:
        """GET /model: the Big model's metadata, checked (BigBadAnswer when it is not model metadata)."""
        info, _, _ = self._call("GET", "/model", answers.parse_model_info)
        return info

    def negotiate(self) -> dict[str, Any]:
        """Ask the service once which payloads it takes and with which features; returns GET /model.

        BigUnavailable when it cannot answer (negotiation is tried again before the next
        request); BigRejected when ``payload`` names one the service does not take.
        """
        offered = self.health().get("payloads", ["pcm"])  # a service from before features answers no list
        if not isinstance(offered, list) or not all(isinstance(name, str) for name in offered):
            raise BigBadAnswer(f"{self.service_url}/health lists payloads that are not names: {offered!r}",
                               "bad_answer")
        info = self.model_info()
        if self.payload_choice == "auto":
            self.payload = "features" if "features" in offered else "pcm"
        elif self.payload_choice not in offered:
            raise BigRejected(f"{self.service_url} takes payloads {offered}, not {self.payload_choice!r}", "rejected")
        if self.payload == "features":
            try:
                self._features_config = _usable_feature_config(info.get("feature_config"))
            except BigBadAnswer as error:
                if self.payload_choice != "auto":
                    raise BigBadAnswer(f"{self.service_url}/model: {error}", error.reason) from error
                log.warning("Big service %s: %s; sending the clips as PCM", self.service_url, error)
                self.payload = "pcm"
        self._negotiated = True
        log.info("Big service %s: model %s, sending %s", self.service_url, info.get("name"), self.payload)
        return info

    def encode(self, samples: np.ndarray, sample_rate: int = audio_pack.EXPECTED_SAMPLE_RATE) -> bytes:
        """The request body for one clip in the negotiated payload."""
        if self.payload == "features" and self._features_config is not None:
            longest = int(audio_pack.MAX_CLIP_SECONDS * sample_rate)
            if not 0 < len(samples) <= longest:  # what the service refuses in an audio pack, refused here
                raise BigRejected(f"a clip of {len(samples)} samples; Big takes 1 to {longest} at {sample_rate} Hz")
            self._sent += 1
            features = compute_features(samples, self._features_config, sample_rate)
            return features_pack.encode_features_pack(
                f"{self.device}-{self._sent}", features, self._features_config, encoding=FEATURES_ENCODING
            ).encode("utf-8")
        return audio_pack.encode_audio_pack(samples, sample_rate, device=self.device).encode("utf-8")

    def predict(self, samples: np.ndarray, sample_rate: int = audio_pack.EXPECTED_SAMPLE_RATE) -> BigAnswer:
        """Big's answer for one int16 clip, sent as the negotiated payload and checked against
        :attr:`expected_labels`."""
        if not self._negotiated and self.payload_choice != "pcm":  # PCM needs nothing from the service
            self.negotiate()
        body = self.encode(samples, sample_rate)
        started = time.perf_counter()
        answer, response, received = self._call(
            "POST", "/predict", lambda text: answers.parse_prediction(text, self.expected_labels),
            data=body, headers={"Content-Type": senml.MEDIA_TYPE},
        )
        seconds = time.perf_counter() - started
        return BigAnswer(
            **vars(answer),
            body_bytes=len(body),
            payload=self.payload,
            wire_bytes=exchange_bytes(response, len(received)),
            seconds=seconds,
        )


def _usable_feature_config(document: Any) -> FeatureConfig:
    """The FeatureConfig a /model gives, if it is one the Pi can afford to compute; BigBadAnswer if not."""
    try:
        config = FeatureConfig.from_dict(document)
        work = config.num_frames * config.fft_size
    except (TypeError, ValueError, AttributeError, OverflowError) as error:
        raise BigBadAnswer(f"no usable feature_config ({error})", "bad_answer") from error
    if work > MAX_FEATURE_WORK:  # Big's word decides what the Pi computes: bound it
        raise BigBadAnswer(f"feature_config asks for {config.num_frames} frames of a {config.fft_size}-point FFT "
                           "per clip, more than the Pi computes", "bad_answer")
    return config


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:
        raise answers.AnswerError(f"answer is not JSON ({error})", "not_json") from error
    if not isinstance(document, dict):
        raise answers.AnswerError("answer is not a JSON object", "bad_answer")
    return document


def _error_text(body: bytes) -> str:
    """The ``error`` of a JSON error body, else the body's start: for log lines and messages."""
    try:
        return str(json.loads(body.decode("utf-8"))["error"])[:300]
    except (UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError):
        return body[:200].decode("utf-8", "replace")
