"""Broken Big services: small real HTTP servers that answer /predict the ways a Big must never answer.

A test double of a *remote* party (the Pi cannot trust its Big), shared by the
Little client's tests and ``bench/bench_broken_big.py``. ``/model`` answers good
metadata for the eight labels, so a client gets as far as asking for clips;
``/predict`` answers as its :data:`BEHAVIOURS` entry says::

    with BrokenBig("nan-scores") as big:
        run little_client.py --service big.url ...

Each connection has its own thread and the server never waits for them, so a
Big that sleeps 30 s before answering does not hold up a test's end.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

LABELS = ["down", "go", "left", "no", "right", "stop", "up", "yes"]
MODEL_INFO = {"name": "broken-big", "labels": LABELS, "sha256": {"tflite": "0" * 64}}


def _answer(**changes: Any) -> bytes:
    answer = {
        "label": "yes", "index": 7, "scores": [0.0] * 7 + [1.0], "labels": LABELS,
        "model": {"name": "broken-big", "sha256": "0" * 64}, "inference_ms": 1.0,
    }
    answer.update(changes)
    return json.dumps(answer).encode()


#: What /predict answers: (status, body) or a callable that writes the answer itself.
BEHAVIOURS: dict[str, Any] = {
    "good": (200, _answer()),
    "not-json": (200, b"<html><body>Welcome to nginx!</body></html>"),
    "wrong-length": (200, _answer(scores=[0.5, 0.5])),
    "unknown-label": (200, _answer(label="maybe")),
    "nan-scores": (200, _answer(scores=[float("nan")] * 7 + [1.0])),  # json.dumps writes NaN, as Python's servers do
    "not-probabilities": (200, _answer(scores=[3.0] * 7 + [4.0])),
    "other-labels": (200, _answer(labels=[*LABELS[:7], "maybe"], label="maybe")),
    "huge": "huge",
    "slow": "slow",
    "server-error": (500, b'{"error":"internal error","status":500}'),
    "unauthorized": (401, b'{"error":"no Authorization header","status":401}'),
}
#: Why the Little client should fall back from each broken behaviour (FAILURE_REASONS).
EXPECTED_REASON = {
    "not-json": "not_json", "wrong-length": "bad_scores", "unknown-label": "bad_labels", "nan-scores": "bad_scores",
    "not-probabilities": "bad_scores", "other-labels": "bad_labels", "huge": "too_large", "slow": "timeout",
    "server-error": "server_error", "unauthorized": "unauthorized",
}
HUGE_BYTES = 200 * 1_000_000
SLOW_SECONDS = 30.0


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the base class's name
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        if self.path == "/model":
            self._send(200, self.server.model_body)
        elif self.path == "/health":
            self._send(200, b'{"status":"ready","model":"broken-big"}')
        else:
            self._send(404, b'{"error":"not found","status":404}')

    def do_POST(self) -> None:  # noqa: N802
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.predict_requests += 1
        behaviour = BEHAVIOURS[self.server.behaviour]
        if behaviour == "slow":
            time.sleep(SLOW_SECONDS)
            self._send(*BEHAVIOURS["good"])
        elif behaviour == "huge":
            self._send_huge()
        else:
            self._send(*behaviour)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        try:
            self.wfile.write(body)
        except OSError:  # the client gave up
            pass

    def _send_huge(self) -> None:
        """200 MB of a JSON string, with no Content-Length (so only reading tells the size)."""
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")
        self.end_headers()
        piece = b"a" * 65536
        try:
            self.wfile.write(b'{"label":"')
            for _ in range(HUGE_BYTES // len(piece)):
                self.wfile.write(piece)
        except OSError:  # the client stopped reading at its cap, as it should
            pass
        self.close_connection = True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False  # a sleeping "slow" handler must not hold up close()
    behaviour = "good"
    model_body = json.dumps(MODEL_INFO).encode()
    predict_requests = 0
    connections = 0

    def get_request(self) -> tuple[Any, Any]:
        accepted = super().get_request()
        self.connections += 1  # only the serving thread accepts
        return accepted


class BrokenBig:
    """A Big service double on a free loopback port answering /predict as ``behaviour`` says,
    and /model with ``model_body`` (default: good metadata for :data:`LABELS`); over HTTPS
    with ``ssl_context`` (a server context, :func:`kws.rest.tls.server_context`)."""

    def __init__(self, behaviour: str, model_body: bytes | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if behaviour not in BEHAVIOURS:
            raise ValueError(f"unknown behaviour {behaviour!r}; one of {sorted(BEHAVIOURS)}")
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.behaviour = behaviour
        if model_body is not None:
            self._server.model_body = model_body
        scheme = "http"
        if ssl_context is not None:  # the handshake runs in accept(), on the serving thread: fine for a double
            self._server.socket = ssl_context.wrap_socket(self._server.socket, server_side=True)
            scheme = "https"
        self.url = f"{scheme}://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()

    @property
    def predict_requests(self) -> int:
        """POST /predict requests received so far."""
        return self._server.predict_requests

    @property
    def connections(self) -> int:
        """TCP connections accepted so far (a keep-alive client opens one for many requests)."""
        return self._server.connections

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> BrokenBig:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def all_broken() -> list[str]:
    """Every behaviour but ``good``."""
    return [name for name in BEHAVIOURS if name != "good"]

