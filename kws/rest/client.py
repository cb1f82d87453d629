"""Talk to the Big service (``big_service.py``) from the Pi: keep-alive connections, bounded retries,
nothing from the network used before it is checked.

    with BigClient("https://cloud:8443", token=token, cafile="ca.pem") as big:
        answer = big.predict(pcm)          # BigAnswer, or raises a BigError
        print(answer.label, answer.wire_bytes)

What travels is the client's ``payload``: ``pcm`` (the clip as a SenML audio pack,
about 43 KB) or ``features`` (Big's own features of the clip, computed here with
the FeatureConfig Big's ``GET /model`` gives, int8 in a SenML features pack, about
3 KB). ``auto``, the default, takes features whenever the service lists them in
``GET /health``, so an older service that takes only audio still works. The body
is made as bytes once (:func:`kws.wire.senml.dumps_bytes`) and, where the service
lists it in ``GET /health`` (``compress="auto"``, the default), deflated
(:mod:`kws.rest.compression`: a PCM clip then travels as about 25 KB, features as
about 2.2 KB).

The transport is ``requests``: one :class:`requests.Session` with one
:class:`requests.adapters.HTTPAdapter` (a keep-alive pool, urllib3's ``Retry``), so
the proxy rules of the environment (``http_proxy``, ``https_proxy``, ``all_proxy``,
``no_proxy``) are the ones ``requests`` and the standard library implement, not ours.
They are read once, when the client is made (:func:`environment_proxy`); a Pi's
environment does not change under a running service, and reading it per request
(and ``~/.netrc``, which ``requests`` would also consult) is wasted CPU. Every header
is given explicitly, so http.client adds none and the bytes of each exchange are
counted from what is sent and received (:attr:`Exchange.wire_bytes`).

Every failure is a :class:`BigError` with a ``reason`` (one of :data:`FAILURE_REASONS`),
which the cascade counts; the caller keeps its own answer. Three kinds:

* :class:`BigUnavailable` -- the service cannot answer now: unreachable, timed out,
  5xx after the retries, a failed TLS handshake, or not asked because the circuit
  breaker (:mod:`kws.rest.breaker`) is open after repeated failures;
* :class:`BigRejected` -- it answered 4xx: 401/403 (the token), or another 4xx; or
  a redirect, which the client does not follow (``--service`` should name the
  final URL; a redirect of ``POST /predict`` would not keep its body anyway);
* :class:`BigBadAnswer` -- it answered 200 with something unusable: over the size
  cap (enforced while reading), not JSON, or not a valid answer for the Pi's labels
  (:mod:`kws.rest.answers`).

A slow Big costs a bounded time: ``timeout`` bounds connecting, each read and the
whole body; a timed-out request is not retried (a slow service is no faster the
second time), nor is a ``Retry-After`` waited for; and ``breaker_failures`` failures
in a row stop the asking for ``breaker_cooldown_s``. The client logs one warning when
the service starts failing, one when the breaker opens and one info line when it is
back, never a line per clip.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np
import requests
import requests.adapters
import requests.utils
import urllib3
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProxyError,
    ReadTimeoutError,
)
from urllib3.exceptions import SSLError as Urllib3SSLError
from urllib3.util.retry import Retry

from kws.errors import KwsError
from kws.features import FeatureConfig, compute_features
from kws.frontend.mel import clip_log_mel
from kws.frontend.spec import SAMPLE_RATE as FRONT_END_RATE
from kws.frontend.spec import FrontEndSpec
from kws.rest import answers, compression
from kws.rest.auth import bearer_header
from kws.rest.breaker import DEFAULT_COOLDOWN_S, DEFAULT_FAILURES, CircuitBreaker
from kws.wire import audio_pack, features_pack, mel_pack, senml

log = logging.getLogger(__name__)

#: What a client can send: the clip, Big's own features of it, or the pretrained front end's mel frames of it
#: (for a Big on the front end); "auto" picks the cheapest the service takes.
PAYLOADS = ("pcm", "features", "mel")
PAYLOAD_CHOICES = ("auto", *PAYLOADS)
#: How features travel to Big: int8 is a quarter of float32 and leaves Big's answers as they were.
FEATURES_ENCODING = "int8"
#: Seconds per attempt (connect, each read, the whole answer). Big answers a clip in milliseconds
#: (under 10 ms on a LAN, a few hundred over a slow uplink); a user saying "yes" will not wait
#: seconds, and with the breaker's three failures a dead-slow Big costs a run 3 s, not 15.
DEFAULT_TIMEOUT_S = 1.0
DEFAULT_RETRIES = 2
#: Where a Pi looks for the Big service unless told (the service's own default address).
DEFAULT_SERVICE = "http://127.0.0.1:8080"
#: Statuses worth retrying: the service (or a proxy before it) is restarting or overloaded.
RETRY_STATUSES = (502, 503, 504)
#: Largest answer read; a /predict answer is ~300 bytes and /model a few KB.
MAX_RESPONSE_BYTES = 256 * 1024
#: Most bytes taken from the socket at a time while reading an answer (one recv each).
READ_CHUNK_BYTES = 16384
#: Keep-alive connections one client keeps: threads sharing a client each keep theirs (up to this
#: many) instead of opening and dropping one per request; a client used by one thread opens one.
POOL_CONNECTIONS = 8
#: Sent with every request. Accept-Encoding: a compressed answer could expand past any cap.
USER_AGENT = requests.utils.default_user_agent()
#: Proxy schemes the client speaks (a SOCKS proxy would need PySocks, which is not a dependency).
PROXY_SCHEMES = ("http", "https")
#: Frames x FFT points per clip a Big's FeatureConfig may ask the Pi to compute (the shipped
#: models ask 49 x 1024; a hostile /model must not make the Pi allocate without bound).
MAX_FEATURE_WORK = 1 << 20
#: The longest padded signal a Big's front end may ask the Pi to make mel frames of (the shipped one: 1.5 s).
MAX_FRONT_END_SAMPLES = 5 * audio_pack.EXPECTED_SAMPLE_RATE
#: Why Big's answer was not used, as the cascade report counts them.
FAILURE_REASONS = (
    "unreachable", "timeout", "server_error", "tls", "circuit_open",  # BigUnavailable
    "unauthorized", "rejected",  # BigRejected
    "too_large", *answers.ANSWER_REASONS,  # BigBadAnswer
)


class BigError(KwsError):
    """Big gave no usable answer; ``reason`` (one of :data:`FAILURE_REASONS`) says why, the text says more."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class BigUnavailable(BigError):
    """The Big service could not answer: unreachable, too slow, failing (5xx), TLS, or the breaker is open."""


class BigRejected(BigError):
    """The Big service refused a request (4xx): ``unauthorized`` (401/403) or ``rejected`` (another 4xx,
    or a redirect, which the client does not follow)."""

    summary = "rejected a request"


class BigBadAnswer(BigError):
    """The Big service answered with something the Pi cannot use: too large, not JSON, not a valid answer."""

    summary = "does not answer as a Big service"


class UnusableProxy(KwsError, ValueError):
    """The environment names a proxy for the service that this client cannot speak (SOCKS, no host)."""


def environment_proxy(url: str) -> dict[str, str]:
    """The proxies ``requests`` would take from the environment for ``url``, checked; ``{}`` to go direct.

    The rules are requests' and the standard library's (``urllib.request.getproxies``:
    lower case before upper case, ``HTTP_PROXY`` ignored in a CGI request; ``no_proxy``
    with names, ``host:port``, addresses and CIDR blocks). Raises :class:`UnusableProxy`
    for one the client cannot use, so a usage error can name it before anything is sent.
    """
    proxies = requests.utils.get_environ_proxies(url)
    chosen = requests.utils.select_proxy(url, proxies)
    if chosen is not None:
        parsed = urlsplit(requests.utils.prepend_scheme_if_needed(chosen, "http"))
        if parsed.scheme not in PROXY_SCHEMES or not parsed.hostname:
            raise UnusableProxy(
                f"${_variable_of(proxies, chosen)} names a proxy this client cannot use ({parsed.scheme}:// with host "
                f"{parsed.hostname!r}); it speaks {' and '.join(PROXY_SCHEMES)} proxies"
            )
    return proxies


def _variable_of(proxies: dict[str, str], proxy: str) -> str:
    """The environment variable that named ``proxy`` (``https_proxy``, ``ALL_PROXY``, ...), for messages."""
    scheme = next((key for key, value in proxies.items() if value == proxy), "all")
    names = (f"{scheme}_proxy", f"{scheme.upper()}_PROXY")
    return next((name for name in names if os.environ.get(name, "").strip() == proxy), names[0])


def _without_password(url: str) -> str:
    """``url`` without its ``user:password@`` (for logs, messages and :attr:`BigClient.proxy`)."""
    parsed = urlsplit(requests.utils.prepend_scheme_if_needed(url, "http"))
    return urlunsplit(parsed._replace(netloc=parsed.netloc.rsplit("@", 1)[-1]))


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


def _failed_cause(error: BaseException) -> BaseException:
    """What went wrong under the wrappers: requests' exceptions hold urllib3's, MaxRetryError holds what
    failed last, ProxyError its cause."""
    for _ in range(8):  # a bounded walk: each step unwraps one layer
        if isinstance(error, requests.RequestException) and error.args and isinstance(error.args[0], BaseException):
            error = error.args[0]
        elif isinstance(error, MaxRetryError) and error.reason is not None:
            error = error.reason
        elif isinstance(error, ProxyError) and isinstance(error.original_error, BaseException):
            error = error.original_error
        else:
            break
    return error


#: Said when an https:// URL reached a service that speaks plain HTTP.
PLAIN_HTTP_HINT = " (the service answered in plain HTTP: give --service an http:// URL, or put TLS in front of it)"


def _answered_in_plain_http(error: BaseException) -> bool:
    """Whether a failed TLS handshake met a plain-HTTP answer (OpenSSL's "wrong version number")."""
    return "WRONG_VERSION_NUMBER" in str(_failed_cause(error)).upper().replace(" ", "_")


def _network_reason(error: BaseException) -> str:
    """``timeout``, ``tls`` or ``unreachable``, looking through the retry and proxy wrappers."""
    cause = _failed_cause(error)
    if isinstance(cause, (Urllib3SSLError, ssl.SSLError, ssl.CertificateError, requests.exceptions.SSLError)):
        return "tls"
    if _is_timeout(cause) or isinstance(cause, requests.Timeout):
        return "timeout"
    return "unreachable"


@dataclass(frozen=True)
class BigAnswer(answers.CheckedPrediction):
    """Big's prediction for one clip (checked: :mod:`kws.rest.answers`), with what asking it cost."""

    body_bytes: int
    """Size of the request body as sent (the SenML pack, compressed where ``content_encoding`` says)."""
    pack_bytes: int
    """Size of the SenML pack itself, before any compression."""
    payload: str
    """What the body carried: "pcm" or "features"."""
    content_encoding: str
    """How it was coded: "deflate" or "identity"."""
    wire_bytes: int
    """Request and response, heads and bodies: see :attr:`Exchange.wire_bytes`."""
    seconds: float


@dataclass(frozen=True)
class Exchange:
    """One answered HTTP request to Big: the status, the body read under the cap, and its cost."""

    status: int
    body: bytes
    wire_bytes: int
    """All bytes of the exchange, both ways: :func:`exchange_bytes` of the attempt that answered."""


def head_bytes(start_line: str, headers: Iterable[tuple[str, str]]) -> int:
    """Bytes of an HTTP/1.x head: the start line and each header as ``Name: value\r\n``, then the blank line.

    Latin-1, as http.client writes and reads heads.
    """
    size = len(start_line.encode("latin-1")) + 2
    for name, value in headers:
        size += len(name.encode("latin-1")) + len(value.encode("latin-1")) + 4
    return size + 2


def response_head_bytes(response: urllib3.BaseHTTPResponse) -> int:
    """Bytes of the status line and headers as received (a header line per value, repeated ones too)."""
    version = getattr(response, "version_string", None) or {10: "HTTP/1.0"}.get(response.version, "HTTP/1.1")
    return head_bytes(f"{version} {response.status} {response.reason}", response.headers.iteritems())


def exchange_bytes(request_head: int, request_body: int, response: urllib3.BaseHTTPResponse,
                   response_body: int) -> int:
    """All bytes of one HTTP exchange, both ways: request head + body, response head + body.

    Measured, not estimated: the request head is counted from the request line and the
    headers of the :class:`requests.PreparedRequest` (every one sent: http.client adds
    none, see :class:`BigClient`) plus those urllib3 adds for a forward proxy, the
    response head from the status line and headers that came back. TCP/IP framing, a
    proxy's CONNECT and the attempts urllib3 retried away are not counted.
    """
    return request_head + request_body + response_head_bytes(response) + response_body


def read_capped(response: urllib3.BaseHTTPResponse, limit: int, seconds: float) -> bytes:
    """The body of a streamed response, refusing more than ``limit`` bytes or ``seconds`` of reading.

    ``response`` is the urllib3 response under requests' (``Response.raw``), read as it
    comes off the socket. The limit holds while reading (a 200 MB answer costs ``limit``
    bytes of memory, not 200 MB); a compressed body is refused, as the client asks for
    none. Each read takes what one ``recv`` brings (at most :data:`READ_CHUNK_BYTES`) and
    waits at most the socket's read timeout, so a trickling answer is cut within
    ``seconds`` plus one read timeout.
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
        while chunk := response.read1(READ_CHUNK_BYTES):
            size += len(chunk)
            if size > limit:
                raise BigBadAnswer(f"answer is over the {limit}-byte cap", "too_large")
            if time.monotonic() > deadline:
                raise BigUnavailable(f"answer took over {seconds:g} s to arrive", "timeout")
            chunks.append(chunk)
    except (HTTPError, OSError) as error:
        raise BigUnavailable(f"answer broke off: {error}", _network_reason(error)) from error
    return b"".join(chunks)  # one chunk (the usual answer) is returned as it is, not copied


@dataclass(frozen=True)
class BigClientSettings:
    """Where the Big service is and how patiently to ask it: what a program's flags say
    (:mod:`kws.cli.big_client_flags`), checked there; :meth:`BigClient.from_settings` makes the client."""

    service_url: str = DEFAULT_SERVICE
    timeout: float = DEFAULT_TIMEOUT_S
    retries: int = DEFAULT_RETRIES
    device: str | None = None
    """The device id in the SenML base name (None: this host's name)."""
    payload: str = "auto"
    compress: str = "auto"
    token: str | None = field(default=None, repr=False)
    """Sent as ``Authorization: Bearer``; never in a repr or a log."""
    cafile: str | None = None
    breaker_failures: int = DEFAULT_FAILURES
    breaker_cooldown_s: float = DEFAULT_COOLDOWN_S


class BigClient:
    """A keep-alive HTTP client of the Big service, on one ``requests`` session.

    ``retries`` bounds the extra attempts on connection errors and 502/503/504
    (with a short exponential back-off; a ``Retry-After`` is not waited for, so a
    failing Big cannot park the Pi); ``timeout`` is per attempt and never retried.
    ``token`` is sent as ``Authorization: Bearer``; ``cafile`` is the CA bundle that
    HTTPS answers must be signed by (default: requests' bundle, ``certifi``), and the
    certificate must name the host. Redirects are not followed (:class:`BigRejected`).
    A forward proxy named by the environment (:func:`environment_proxy`) is read once,
    here, and used for every request.

    Requests are prepared without the session's defaults (no cookies, no ``.netrc``,
    every header given here, ``Host`` included), so http.client adds no header and the
    request head counted in :attr:`Exchange.wire_bytes` is the one sent. Requests may
    come from several threads at once: the adapter's pool is thread-safe, and the client
    keeps no per-request state.
    """

    @classmethod
    def from_settings(cls, settings: BigClientSettings) -> BigClient:
        """The client ``settings`` describe."""
        return cls(**asdict(settings))

    def __init__(
        self,
        service_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        device: str | None = None,
        payload: str = "auto",
        compress: str = "auto",
        token: str | None = None,
        cafile: str | None = None,
        breaker_failures: int = DEFAULT_FAILURES,
        breaker_cooldown_s: float = DEFAULT_COOLDOWN_S,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        if payload not in PAYLOAD_CHOICES:
            raise ValueError(f"payload must be one of {PAYLOAD_CHOICES}, got {payload!r}")
        if compress not in compression.COMPRESS_CHOICES:
            raise ValueError(f"compress must be one of {compression.COMPRESS_CHOICES}, got {compress!r}")
        self.service_url = service_url.rstrip("/")
        url = urlsplit(self.service_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"service_url must be an http:// or https:// URL with a host, got {service_url!r}")
        self.payload_choice = payload
        #: What predict() sends; settled by negotiate() (PCM until then: every service takes it).
        self.payload = "pcm" if payload == "auto" else payload
        self.compress_choice = compress
        #: How predict() codes its bodies: "deflate" or "identity"; settled by negotiate() (plain until then).
        self.content_encoding = "deflate" if compress == "deflate" else "identity"
        self._features_config: FeatureConfig | None = None
        self._front_end: FrontEndSpec | None = None
        self._negotiated = False
        self._clip_numbers = itertools.count(1)  # next() is atomic: threads sharing a client get distinct ids
        self.timeout = timeout
        self.max_response_bytes = max_response_bytes
        self.device = audio_pack.default_device_id() if device is None else device
        self.expected_labels: tuple[str, ...] | None = None
        self.breaker = CircuitBreaker(f"Big service {self.service_url}", breaker_failures, breaker_cooldown_s)
        self._failing = False
        self._failing_lock = threading.Lock()
        retry = _Retry(
            total=retries,
            connect=retries,
            read=retries,
            status=retries,
            status_forcelist=RETRY_STATUSES,
            allowed_methods=frozenset({"GET", "POST"}),  # /predict has no side effects, so POST may repeat
            backoff_factor=0.05,
            raise_on_status=False,
            respect_retry_after_header=False,  # a Retry-After of hours must not park the Pi
        )
        self._proxies = environment_proxy(self.service_url)
        chosen = requests.utils.select_proxy(self.service_url, self._proxies)
        self.proxy = None if chosen is None else _without_password(chosen)
        """The forward proxy the environment names for the service (None: direct)."""
        self._adapter = requests.adapters.HTTPAdapter(
            pool_connections=1, pool_maxsize=POOL_CONNECTIONS, max_retries=retry, pool_block=False
        )
        self.session = requests.Session()
        """The one session every request goes through (its adapter keeps the connections alive)."""
        self.session.trust_env = False  # the environment was read above, once; no ~/.netrc either
        self.session.mount("http://", self._adapter)
        self.session.mount("https://", self._adapter)
        self._send_options: dict[str, Any] = {
            "stream": True, "timeout": (timeout, timeout), "allow_redirects": False, "proxies": self._proxies,
            "verify": cafile if cafile is not None else True,
        }
        default_port = {"http": 80, "https": 443}[url.scheme]
        host = f"[{url.hostname}]" if ":" in url.hostname else url.hostname
        host = host if url.port in (None, default_port) else f"{host}:{url.port}"
        self._headers = {
            "Host": host, "User-Agent": USER_AGENT, "Accept-Encoding": "identity", "Accept": "*/*",
            "Connection": "keep-alive", **(bearer_header(token) if token is not None else {}),
        }
        # Forwarded, not tunnelled (http:// through a proxy): urllib3 adds the proxy's headers to the request.
        forwarded = chosen is not None and url.scheme == "http"
        self._proxy_headers = self._adapter.proxy_headers(chosen) if forwarded and chosen is not None else {}
        if chosen is not None:
            log.info("Big service %s through the proxy %s", self.service_url, self.proxy)

    def __enter__(self) -> BigClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the kept-alive connections."""
        self.session.close()

    def expect_labels(self, labels: tuple[str, ...] | list[str]) -> None:
        """Refuse answers for other labels than these (the Pi's own), in any order."""
        self.expected_labels = tuple(labels)

    # ------------------------------------------------------------------ requests
    def request(self, method: str, path: str, body: bytes | None = None,
                content_type: str | None = None, content_encoding: str | None = None) -> Exchange:
        """One call of ``path`` with retries, told to the breaker: the status-checked answer with its
        body unchecked (:meth:`health`, :meth:`model_info` and :meth:`predict` check theirs)."""
        _, exchange = self._call(method, path, _unchecked, body, content_type, content_encoding)
        return exchange

    def _prepare(self, method: str, url: str, body: bytes | None, content_type: str | None,
                 content_encoding: str | None) -> requests.PreparedRequest:
        """The request with exactly the headers to send (``Content-Length`` from requests, for a body)."""
        headers = self._headers
        if body is not None:
            headers = {**headers, "Content-Type": content_type or "application/octet-stream"}
            if content_encoding is not None:
                headers["Content-Encoding"] = content_encoding
        return requests.Request(method, url, headers=headers, data=body).prepare()

    def _exchange(self, method: str, path: str, body: bytes | None, content_type: str | None,
                  content_encoding: str | None = None) -> Exchange:
        """One call with retries: the answer, its body read under the size cap; a BigError otherwise."""
        url = f"{self.service_url}{path}"
        if not self.breaker.allow():
            raise BigUnavailable(
                f"{url} not asked: it failed repeatedly; next try in {self.breaker.seconds_left():.0f} s",
                "circuit_open",
            )
        prepared = self._prepare(method, url, body, content_type, content_encoding)
        target = self._adapter.request_url(prepared, self._proxies)
        head = head_bytes(f"{method} {target} HTTP/1.1", [*prepared.headers.items(), *self._proxy_headers.items()])
        try:
            response = self.session.send(prepared, **self._send_options)
        except (requests.RequestException, HTTPError, OSError) as error:
            reason = _network_reason(error)
            what = {"timeout": "did not answer in time", "tls": "failed TLS"}.get(reason, "unreachable")
            hint = PLAIN_HTTP_HINT if reason == "tls" and _answered_in_plain_http(error) else ""
            raise BigUnavailable(f"{url} {what}: {_failed_cause(error)}{hint}", reason) from error
        raw = response.raw
        try:
            received = read_capped(raw, self.max_response_bytes, self.timeout)
        except BigError as error:
            response.close()  # unread bytes may be left: the connection is not reused
            raise type(error)(f"{url}: {error}", error.reason) from error
        finally:
            raw.release_conn()  # not response.close(), which would drop the kept-alive connection
        status = response.status_code
        if status >= 500:
            raise BigUnavailable(f"{url} answered {status}: {_error_text(received)}", "server_error")
        if status in (401, 403):
            raise BigRejected(f"{url} refused the token ({status}): {_error_text(received)}", "unauthorized")
        if status >= 400:
            raise BigRejected(f"{url} refused the request ({status}): {_error_text(received)}", "rejected")
        if status >= 300:
            location = response.headers.get("Location", "nowhere")
            raise BigRejected(f"{url} redirects ({status}) to {location[:200]}; the client follows no "
                              "redirects: give it the final URL", "rejected")
        wire = exchange_bytes(head, 0 if body is None else len(body), raw, len(received))
        return Exchange(status, received, wire)

    def _call(self, method: str, path: str, check: Callable[[bytes], Any], body: bytes | None = None,
              content_type: str | None = None, content_encoding: str | None = None) -> tuple[Any, Exchange]:
        """:meth:`_exchange` and ``check(body)``, telling the breaker and the log how it went."""
        try:
            exchange = self._exchange(method, path, body, content_type, content_encoding)
            try:
                checked = check(exchange.body)
            except answers.AnswerError as error:
                raise BigBadAnswer(f"{self.service_url}{path}: {error}", error.reason) from error
        except BigError as error:
            if error.reason != "circuit_open":
                self.breaker.failure()
                self._note_failure(error)
            raise
        self.breaker.success()
        if self._failing:  # read without the lock (the usual answer); changed under it, so said once
            with self._failing_lock:
                back, self._failing = self._failing, False
            if back:
                log.info("Big service %s answers again", self.service_url)
        return checked, exchange

    def _note_failure(self, error: BigError) -> None:
        with self._failing_lock:
            first, self._failing = not self._failing, True
        if first:
            what = "unreachable" if isinstance(error, BigUnavailable) else "failing"
            log.warning(
                "Big service %s %s (%s: %s); Little's answers stand until it is back",
                self.service_url, what, error.reason, error,
            )

    def health(self) -> dict[str, Any]:
        """GET /health; BigUnavailable while the model is still loading (503)."""
        document, _ = self._call("GET", "/health", _json_object)
        return document

    def model_info(self) -> dict[str, Any]:
        """GET /model: the Big model's metadata, checked (BigBadAnswer when it is not model metadata)."""
        info, _ = self._call("GET", "/model", answers.parse_model_info)
        return info

    @property
    def needs_negotiation(self) -> bool:
        """Whether predict() must ask the service first: anything but plain PCM depends on what it takes."""
        return not self._negotiated and (self.payload_choice != "pcm" or self.compress_choice == "auto")

    def negotiate(self) -> dict[str, Any]:
        """Ask the service once which payloads and request codings it takes and with which features;
        returns GET /model.

        BigUnavailable when it cannot answer (negotiation is tried again before the next
        request); BigRejected when ``payload`` or ``compress`` names one the service does not take.
        """
        health = self.health()
        offered = _names(health, "payloads", ["pcm"], self.service_url)  # a service from before features: no list
        encodings = _names(health, "content_encodings", [], self.service_url)  # from before compression: none
        info = self.model_info()
        if self.compress_choice == "auto":
            self.content_encoding = "deflate" if "deflate" in encodings else "identity"
        elif self.compress_choice == "deflate" and "deflate" not in encodings:
            raise BigRejected(f"{self.service_url} decodes request codings {encodings}, not 'deflate'", "rejected")
        if self.payload_choice == "auto":
            self.payload = next((kind for kind in ("mel", "features") if kind in offered), "pcm")
        elif self.payload_choice not in offered:
            raise BigRejected(f"{self.service_url} takes payloads {offered}, not {self.payload_choice!r}", "rejected")
        if self.payload != "pcm":  # what the Pi computes for Big, from Big's own word: checked first
            try:
                if self.payload == "mel":
                    self._front_end = _usable_front_end(info.get("front_end"))
                else:
                    self._features_config = _usable_feature_config(info.get("feature_config"))
            except BigBadAnswer as error:
                if self.payload_choice != "auto":
                    raise BigBadAnswer(f"{self.service_url}/model: {error}", error.reason) from error
                log.warning("Big service %s: %s; sending the clips as PCM", self.service_url, error)
                self.payload = "pcm"
        self._negotiated = True
        log.info("Big service %s: model %s, sending %s%s", self.service_url, info.get("name"), self.payload,
                 ", deflated" if self.content_encoding == "deflate" else "")
        return info

    def encode(self, samples: np.ndarray, sample_rate: int = audio_pack.EXPECTED_SAMPLE_RATE) -> bytes:
        """The SenML pack for one clip in the negotiated payload, made as bytes (before any compression)."""
        if self.payload == "mel" and self._front_end is not None:
            _check_clip_length(samples, sample_rate)
            if sample_rate != FRONT_END_RATE:
                raise BigRejected(f"Big's front end hears {FRONT_END_RATE} Hz clips, not {sample_rate} Hz", "rejected")
            frames = clip_log_mel(np.asarray(samples, dtype=np.int16), self._front_end)
            return mel_pack.mel_pack_body(f"{self.device}-{next(self._clip_numbers)}", frames, self._front_end)
        if self.payload == "features" and self._features_config is not None:
            _check_clip_length(samples, sample_rate)
            features = compute_features(samples, self._features_config, sample_rate)
            return features_pack.features_pack_body(
                f"{self.device}-{next(self._clip_numbers)}", features, self._features_config, encoding=FEATURES_ENCODING
            )
        return audio_pack.audio_pack_body(samples, sample_rate, device=self.device)

    def predict(self, samples: np.ndarray, sample_rate: int = audio_pack.EXPECTED_SAMPLE_RATE) -> BigAnswer:
        """Big's answer for one int16 clip, sent as the negotiated payload and checked against
        :attr:`expected_labels`."""
        if self.needs_negotiation:
            self.negotiate()
        pack = self.encode(samples, sample_rate)
        started = time.perf_counter()
        coded = self.content_encoding != "identity"
        body = compression.compress(pack, self.content_encoding) if coded else pack
        answer, exchange = self._call(
            "POST", "/predict", lambda text: answers.parse_prediction(text, self.expected_labels),
            body, senml.MEDIA_TYPE, self.content_encoding if coded else None,
        )
        seconds = time.perf_counter() - started
        return BigAnswer(
            **vars(answer),
            body_bytes=len(body),
            pack_bytes=len(pack),
            payload=self.payload,
            content_encoding=self.content_encoding,
            wire_bytes=exchange.wire_bytes,
            seconds=seconds,
        )


def _names(document: dict[str, Any], key: str, default: list[str], service_url: str) -> list[str]:
    """A list of names from /health (``default`` when the service gives none); BigBadAnswer otherwise."""
    names = document.get(key, default)
    if not isinstance(names, list) or not all(isinstance(name, str) for name in names):
        raise BigBadAnswer(f"{service_url}/health lists {key} that are not names: {names!r}", "bad_answer")
    return names


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


def _check_clip_length(samples: np.ndarray, sample_rate: int) -> None:
    """What the service refuses in an audio pack, refused here before the Pi computes anything for Big."""
    longest = int(audio_pack.MAX_CLIP_SECONDS * sample_rate)
    if not 0 < len(samples) <= longest:
        raise BigRejected(f"a clip of {len(samples)} samples; Big takes 1 to {longest} at {sample_rate} Hz", "rejected")


def _usable_front_end(document: Any) -> FrontEndSpec:
    """The front end a /model names, if it is one the Pi can afford to compute the mel of; BigBadAnswer if not."""
    try:
        spec = FrontEndSpec.from_dict(document)
    except (TypeError, ValueError, AttributeError) as error:
        raise BigBadAnswer(f"no usable front_end ({error})", "bad_answer") from error
    if spec.padded_samples > MAX_FRONT_END_SAMPLES:  # Big's word decides what the Pi computes: bound it
        raise BigBadAnswer(f"front_end asks for the mel of {spec.padded_samples} samples per clip, more than the "
                           "Pi computes", "bad_answer")
    return spec


def _unchecked(body: bytes) -> None:
    """The check of :meth:`BigClient.request`: none."""


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
