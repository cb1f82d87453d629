"""Talk to the Big service (``big_service.py``) from the Pi: one keep-alive session, bounded retries.

    with BigClient("http://cloud:8080") as big:
        answer = big.predict(pcm)          # BigAnswer, or raises BigUnavailable
        print(answer.label, answer.wire_bytes)

What travels is the client's ``payload``: ``pcm`` (the clip as a SenML audio pack,
about 43 KB) or ``features`` (Big's own features of the clip, computed here with
the FeatureConfig Big's ``GET /model`` gives, int8 in a SenML features pack, about
3 KB). ``auto``, the default, takes features whenever the service lists them in
``GET /health``, so an older service that takes only audio still works.

Failures come in two kinds, because the cascade treats them differently:

* :class:`BigUnavailable` -- the service cannot answer now (connection refused,
  timeout, 5xx after the retries). The caller keeps its own answer.
* :class:`BigRejected` -- the service answered 4xx: the pack is wrong, which is
  a bug on this side, so it is raised rather than papered over.

The client logs one warning when the service becomes unreachable and one info
line when it is back, never a line per clip.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from kws.features import FeatureConfig, compute_features
from kws.wire import audio_pack, features_pack, senml

log = logging.getLogger(__name__)

#: What a client can send; "auto" picks the cheaper one the service takes.
PAYLOADS = ("pcm", "features")
PAYLOAD_CHOICES = ("auto", *PAYLOADS)
#: How features travel to Big: int8 is a quarter of float32 and leaves Big's answers as they were.
FEATURES_ENCODING = "int8"
DEFAULT_TIMEOUT_S = 5.0
DEFAULT_RETRIES = 2
#: Statuses worth retrying: the service (or a proxy before it) is restarting or overloaded.
RETRY_STATUSES = (502, 503, 504)


class BigUnavailable(Exception):
    """The Big service could not answer: unreachable, too slow, or failing (5xx)."""


class BigRejected(Exception):
    """The Big service refused a request (4xx); its JSON error message is the text."""


@dataclass(frozen=True)
class BigAnswer:
    """Big's prediction for one clip, with what asking it cost."""

    label: str
    index: int
    scores: np.ndarray
    labels: tuple[str, ...]
    model_name: str
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


def exchange_bytes(response: requests.Response) -> int:
    """All bytes of one HTTP exchange, both ways: request head + body, response head + body.

    Measured, not estimated: the request head from the prepared request that was
    sent, the response head from the raw response that came back. TCP/IP framing
    and the attempts that urllib3 retried away are not counted.
    """
    request = response.request
    request_body = len(request.body or b"")
    return request_header_bytes(request) + request_body + response_header_bytes(response) + len(response.content)


class BigClient:
    """A keep-alive HTTP client of the Big service.

    ``retries`` bounds the extra attempts on connection errors, read timeouts and
    502/503/504 (with a short exponential back-off); ``timeout`` is per attempt.
    """

    def __init__(
        self,
        service_url: str,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        device: str | None = None,
        payload: str = "auto",
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
        self.device = audio_pack.default_device_id() if device is None else device
        self.session = requests.Session()
        # requests re-reads proxy variables and ~/.netrc on every call when trust_env is on:
        # 0.45 ms of CPU per clip, a third of the client's cost. Read the proxies once, here.
        self.session.proxies.update(requests.utils.get_environ_proxies(self.service_url))
        self.session.trust_env = False
        retry = Retry(
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
        self._reachable = True

    def __enter__(self) -> BigClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self.session.close()

    # ------------------------------------------------------------------ requests
    def _request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One call with retries; BigUnavailable on network failure or 5xx, BigRejected on 4xx."""
        url = f"{self.service_url}{path}"
        try:
            response = self.session.request(method, url, timeout=self.timeout, **kwargs)
        except requests.RequestException as error:
            self._note_unreachable(f"{type(error).__name__}: {error}")
            raise BigUnavailable(f"{url} unreachable: {error}") from error
        if response.status_code >= 500:
            self._note_unreachable(f"HTTP {response.status_code}")
            raise BigUnavailable(f"{url} answered {response.status_code}: {_error_text(response)}")
        if response.status_code >= 400:
            raise BigRejected(f"{url} refused the request ({response.status_code}): {_error_text(response)}")
        if not self._reachable:
            log.info("Big service %s answers again", self.service_url)
            self._reachable = True
        return response

    def _note_unreachable(self, reason: str) -> None:
        if self._reachable:
            log.warning(
                "Big service %s unreachable (%s); Little's answers stand until it is back", self.service_url, reason
            )
            self._reachable = False

    def health(self) -> dict[str, Any]:
        """GET /health; BigUnavailable while the model is still loading (503)."""
        return self._request("GET", "/health").json()

    def model_info(self) -> dict[str, Any]:
        """GET /model: the Big model's metadata."""
        return self._request("GET", "/model").json()

    def negotiate(self) -> dict[str, Any]:
        """Ask the service once which payloads it takes and with which features; returns GET /model.

        BigUnavailable when it cannot answer (negotiation is tried again before the next
        request); BigRejected when ``payload`` names one the service does not take.
        """
        offered = self.health().get("payloads", ["pcm"])  # a service from before features answers no list
        info = self.model_info()
        if self.payload_choice == "auto":
            self.payload = "features" if "features" in offered else "pcm"
        elif self.payload_choice not in offered:
            raise BigRejected(f"{self.service_url} takes payloads {offered}, not {self.payload_choice!r}")
        if self.payload == "features":
            try:
                self._features_config = FeatureConfig.from_dict(info["feature_config"])
            except (KeyError, TypeError, ValueError) as error:
                raise BigRejected(f"{self.service_url}/model gives no usable feature_config ({error})") from error
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
        """Big's answer for one int16 clip, sent as the negotiated payload."""
        if not self._negotiated and self.payload_choice != "pcm":  # PCM needs nothing from the service
            self.negotiate()
        body = self.encode(samples, sample_rate)
        started = time.perf_counter()
        response = self._request("POST", "/predict", data=body, headers={"Content-Type": senml.MEDIA_TYPE})
        seconds = time.perf_counter() - started
        answer = response.json()
        return BigAnswer(
            label=answer["label"],
            index=int(answer["index"]),
            scores=np.asarray(answer["scores"], dtype=np.float32),
            labels=tuple(answer["labels"]),
            model_name=answer["model"]["name"],
            body_bytes=len(body),
            payload=self.payload,
            wire_bytes=exchange_bytes(response),
            seconds=seconds,
        )


def _error_text(response: requests.Response) -> str:
    try:
        return str(response.json()["error"])
    except (ValueError, KeyError, TypeError):
        return response.text[:200]
