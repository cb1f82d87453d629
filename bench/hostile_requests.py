"""Hostile HTTP requests for the Big service, and a raw-socket client that sends them.

One catalogue for the test (``tests/rest/test_hostile_requests.py``: each one
gets its expected 4xx with a JSON body, and the service stays up) and for the
benchmark (``bench/bench_hostile.py``: the service's peak memory and latency
while they arrive). Each request is raw bytes, produced in chunks so that a
100 MB attack costs the sender nothing; the sender reads the answer while it
is still sending, as a server may answer and close before taking the rest.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from kws.features import FeatureConfig
from kws.wire.features_pack import encode_features_pack

MEGABYTE = 1_000_000
SENML = b"Content-Type: application/senml+json\r\n"


@dataclass(frozen=True)
class HostileRequest:
    """One attack: its name, what it is, its bytes, and the status a sound service answers."""

    name: str
    what: str
    chunks: Callable[[], Iterator[bytes]]
    expected_status: int


def _post(body: bytes, headers: bytes = SENML, path: bytes = b"/predict") -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        yield (b"POST " + path + b" HTTP/1.1\r\nHost: big\r\n" + headers
               + b"Content-Length: " + str(len(body)).encode() + b"\r\nConnection: close\r\n\r\n")
        yield body
    return chunks


def _raw(*parts: bytes) -> Callable[[], Iterator[bytes]]:
    return lambda: iter(parts)


def _repeat(head: bytes, piece: bytes, total: int, tail: bytes = b"") -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        yield head
        for _ in range(total // len(piece)):
            yield piece
        yield tail
    return chunks


def _chunked(head_extra: bytes, body_chunks: Callable[[], Iterator[bytes]]) -> Callable[[], Iterator[bytes]]:
    def chunks() -> Iterator[bytes]:
        yield (b"POST /predict HTTP/1.1\r\nHost: big\r\n" + SENML + head_extra
               + b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
        yield from body_chunks()
    return chunks


def _hundred_mb_of_chunks() -> Iterator[bytes]:
    piece = b"10000\r\n" + b" " * 0x10000 + b"\r\n"
    for _ in range(100 * MEGABYTE // 0x10000):
        yield piece
    yield b"0\r\n\r\n"


def _features_pack(config_text: str | None = None, value: float = 0.0) -> bytes:
    """A well-formed features pack, with its config record's text replaced and every feature ``value``."""
    config = FeatureConfig()
    pack = json.loads(encode_features_pack("hostile", np.full(config.shape, value, np.float32), config))
    if config_text is not None:
        pack[2]["vs"] = config_text
    return json.dumps(pack).encode()


def _config_with(**fields: object) -> str:
    """The default FeatureConfig's JSON with ``fields`` replaced; a field's value may be raw JSON text."""
    text = json.dumps(FeatureConfig().to_dict())
    for name, raw in fields.items():
        text = text.replace(f'"{name}": {json.dumps(getattr(FeatureConfig(), name))}', f'"{name}": {raw}')
    return text


CATALOGUE: tuple[HostileRequest, ...] = (
    HostileRequest("deep-nesting", "JSON arrays nested 30 000 deep (was a RecursionError, 500)",
                   _post(b"[" * 30_000 + b"]" * 30_000), 400),
    HostileRequest("float-overflow", "a number no double holds, 1e999",
                   _post(b'[{"n":"sample_rate","u":"Hz","v":1e999}]'), 400),
    HostileRequest("int-over-double", "a 400-digit integer (was an OverflowError, 500)",
                   _post(b'[{"n":"sample_rate","u":"Hz","v":1' + b"0" * 400 + b"}]"), 400),
    HostileRequest("huge-integer", "a 5 000-digit integer (was Python's digit limit, 500)",
                   _post(b'[{"n":"sample_rate","u":"Hz","v":1' + b"0" * 5000 + b"}]"), 400),
    HostileRequest("utf-16-body", "the pack in UTF-16 (JSON on the wire is UTF-8)",
                   _post('[{"n":"sample_rate","u":"Hz","v":16000}]'.encode("utf-16")), 400),
    HostileRequest("invalid-utf-8", "a byte that is no UTF-8 inside a string",
                   _post(b'[{"n":"sample_rate","u":"Hz","v":16000,"vs":"\xff"}]'), 400),
    HostileRequest("bad-chunk-size", "chunked framing with a chunk size that is not hex",
                   _chunked(b"", _raw(b"zz\r\n[]\r\n0\r\n\r\n")), 400),
    HostileRequest("unterminated-chunk", "a chunk longer than its declared size (was a 500)",
                   _chunked(b"", _raw(b"2\r\n[]]]]\r\n0\r\n\r\n")), 400),
    HostileRequest("chunked-100mb", "100 MB of chunked body, no Content-Length",
                   _chunked(b"", _hundred_mb_of_chunks), 413),
    HostileRequest("declared-100mb", "Content-Length of 100 MB, and the 100 MB",
                   _repeat(b"POST /predict HTTP/1.1\r\nHost: big\r\n" + SENML + b"Content-Length: 100000000\r\n\r\n",
                           b" " * 65536, 100 * MEGABYTE), 413),
    HostileRequest("header-10mb", "one 10 MB header line (was accepted)",
                   _repeat(b"GET /health HTTP/1.1\r\nHost: big\r\nX-Pad: ", b"a" * 65536, 10 * MEGABYTE,
                           b"\r\n\r\n"), 431),
    HostileRequest("500-headers", "500 small header lines",
                   _raw(b"GET /health HTTP/1.1\r\nHost: big\r\n" + b"".join(b"X-H%d: 1\r\n" % i for i in range(500))
                        + b"\r\n"), 431),
    HostileRequest("url-100kb", "a 100 KB request target",
                   _raw(b"GET /health?" + b"a" * 100_000 + b" HTTP/1.1\r\nHost: big\r\n\r\n"), 414),
    HostileRequest("bad-content-length", "Content-Length that is not a number",
                   _raw(b"POST /predict HTTP/1.1\r\nHost: big\r\n" + SENML + b"Content-Length: 12abc\r\n\r\n[]"), 400),
    HostileRequest("bare-lf-header", "a header line with a bare LF in it (request smuggling's tool)",
                   _raw(b"GET /health HTTP/1.1\r\nHost: big\r\nX-A: 1\nX-B: 2\r\n\r\n"), 400),
    HostileRequest("garbage-request-line", "binary garbage instead of a request line",
                   _raw(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n"), 400),
    HostileRequest("no-host", "HTTP/1.1 without the Host header it requires",
                   _raw(b"GET /health HTTP/1.1\r\nConnection: close\r\n\r\n"), 400),
    HostileRequest("form-body", "a form body on /predict (frameworks parse these before the handler)",
                   _post(b"a=" + b"1" * 60_000, b"Content-Type: application/x-www-form-urlencoded\r\n"), 400),
    HostileRequest("bad-percent-encoding", "a path that is no UTF-8 once percent-decoded",
                   _raw(b"GET /%ff%fe%00 HTTP/1.1\r\nHost: big\r\nConnection: close\r\n\r\n"), 404),
    HostileRequest("config-nested-500", "a features pack whose config JSON nests 500 deep (was a 500)",
                   _post(_features_pack("[" * 500 + "]" * 500)), 422),
    HostileRequest("config-nested-2000", "a config JSON nested 2 000 deep, 4 000 characters (was a 500)",
                   _post(_features_pack("[" * 2000 + "]" * 2000)), 422),
    HostileRequest("config-float-length", 'a config with "frame_length": 640.0 (was a 500)',
                   _post(_features_pack(_config_with(frame_length="640.0"))), 422),
    HostileRequest("config-400-digits", "a config with a 400-digit frame_length (was a 500)",
                   _post(_features_pack(_config_with(frame_length="9" * 400))), 422),
    HostileRequest("config-true-count", 'a config with "num_mel_bins": true',
                   _post(_features_pack(_config_with(num_mel_bins="true"))), 422),
    HostileRequest("features-3.4e38", "finite float32 features of 3.4e38 (was a 200 with NaN scores)",
                   _post(_features_pack(value=3.4e38)), 422),
)


@dataclass(frozen=True)
class Outcome:
    """What the server did with one hostile request."""

    status: int | None
    """The answer's status; None when the connection closed without one."""
    json_error: bool
    """The answer was ``application/json`` with ``{"error": ..., "status": <the status>}``."""
    error: str
    seconds: float


def send(host: str, port: int, request: HostileRequest, timeout: float = 30.0) -> Outcome:
    """Send ``request`` on a fresh connection and read the answer until the server closes."""
    started = time.perf_counter()
    received = bytearray()
    with socket.create_connection((host, port), timeout=timeout) as connection:
        reader = threading.Thread(target=_read_all, args=(connection, received), daemon=True)
        reader.start()
        try:
            for chunk in request.chunks():
                connection.sendall(chunk)
                if not reader.is_alive():  # the server answered and closed: stop sending
                    break
            connection.shutdown(socket.SHUT_WR)
        except OSError:  # it stopped reading and closed or reset the connection
            pass
        reader.join(timeout)
    return _outcome(bytes(received), time.perf_counter() - started)


def _read_all(connection: socket.socket, into: bytearray) -> None:
    try:
        while chunk := connection.recv(65536):
            into += chunk
    except OSError:  # a reset after the answer: what arrived before it is kept
        pass


def _outcome(raw: bytes, seconds: float) -> Outcome:
    head, _, body = raw.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/"):
        return Outcome(None, False, "connection closed without an answer", seconds)
    status = int(head.split(b" ", 2)[1])
    is_json = b"\r\ncontent-type: application/json" in head.lower()
    try:
        document = json.loads(body)
        json_error = is_json and isinstance(document.get("error"), str) and document.get("status") == status
        message = str(document.get("error", ""))
    except (ValueError, AttributeError):
        json_error, message = False, body[:120].decode("latin-1")
    return Outcome(status, json_error, message, seconds)
