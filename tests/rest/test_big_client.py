"""BigClient's byte accounting against the bytes a raw socket really carries, and its failure kinds."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import numpy as np
import pytest

from kws.rest.client import BigClient, BigRejected, BigUnavailable, exchange_bytes
from kws.util.net import free_tcp_port

ANSWER = b'{"label":"yes","index":5,"scores":[0,0,0,0,0,1,0,0],"labels":["down","stop","right","left","up","yes","no","go"],"model":{"name":"fake","sha256":"0"},"inference_ms":1.0}'  # noqa: E501


class RecordingServer:
    """One-request-per-connection HTTP server on a raw socket that keeps every byte both ways."""

    def __init__(self, status_line: bytes = b"HTTP/1.1 200 OK", body: bytes = ANSWER) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.response = (
            status_line
            + b"\r\nContent-Type: application/json\r\nContent-Length: "
            + str(len(body)).encode()
            + b"\r\nConnection: close\r\nX-Padding: a header requests must count too\r\n\r\n"
            + body
        )
        self.received = b""
        self.sent = b""
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            with connection:
                request = b""
                while b"\r\n\r\n" not in request:
                    request += connection.recv(65536)
                head, body = request.split(b"\r\n\r\n", 1)
                lengths = [line.split(b":")[1] for line in head.split(b"\r\n") if b"content-length" in line.lower()]
                length = int(lengths[0]) if lengths else 0
                while len(body) < length:
                    body += connection.recv(65536)
                self.received += head + b"\r\n\r\n" + body
                self.sent += self.response  # before sending: the client may compare as soon as it has read
                connection.sendall(self.response)

    def close(self) -> None:
        self.listener.close()


@pytest.fixture
def recording_server() -> Iterator[RecordingServer]:
    server = RecordingServer()
    yield server
    server.close()


def test_exchange_bytes_equal_the_bytes_on_the_socket(recording_server) -> None:
    with BigClient(recording_server.url, device="pi-test") as big:
        answer = big.predict(np.arange(16_000, dtype=np.int16))
    assert answer.label == "yes" and answer.labels[answer.index] == "yes"
    assert answer.wire_bytes == len(recording_server.received) + len(recording_server.sent)
    assert answer.body_bytes == len(recording_server.received.split(b"\r\n\r\n", 1)[1])


def test_exchange_bytes_of_a_get(recording_server) -> None:
    import requests

    response = requests.get(f"{recording_server.url}/health", timeout=5)
    assert exchange_bytes(response) == len(recording_server.received) + len(recording_server.sent)


def test_4xx_is_rejected_not_unavailable() -> None:
    server = RecordingServer(b"HTTP/1.1 422 Unprocessable Entity", b'{"error":"pack has no audio","status":422}')
    try:
        with BigClient(server.url) as big, pytest.raises(BigRejected, match="pack has no audio"):
            big.predict(np.zeros(100, dtype=np.int16))
    finally:
        server.close()


def test_5xx_after_retries_is_unavailable() -> None:
    server = RecordingServer(b"HTTP/1.1 503 Service Unavailable", b'{"error":"loading","status":503}')
    try:
        with BigClient(server.url, retries=1) as big, pytest.raises(BigUnavailable, match="503"):
            big.predict(np.zeros(100, dtype=np.int16))
        assert server.received.count(b"POST /predict") == 2, "one retry"
    finally:
        server.close()


def test_connection_refused_is_unavailable_and_warned_once(caplog) -> None:
    with BigClient(f"http://127.0.0.1:{free_tcp_port()}", retries=0) as big:
        for _ in range(3):
            with pytest.raises(BigUnavailable):
                big.predict(np.zeros(100, dtype=np.int16))
    assert sum("unreachable" in record.getMessage() for record in caplog.records) == 1


def test_a_silent_service_times_out_as_unavailable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections (backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with BigClient(url, timeout=0.2, retries=0) as big, pytest.raises(BigUnavailable, match="timed out"):
            big.predict(np.zeros(100, dtype=np.int16))
