"""BigClient's byte accounting against the bytes a raw socket really carries, its failure kinds, and what it
does with a broken or hostile Big: every answer checked, a size cap, no retried timeouts, a circuit breaker."""

from __future__ import annotations

import base64
import json
import logging
import socket
import threading
import time
import zlib
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bench.broken_big import EXPECTED_REASON, BrokenBig, all_broken
from kws.rest.client import (
    FAILURE_REASONS,
    BigBadAnswer,
    BigClient,
    BigError,
    BigRejected,
    BigUnavailable,
    UnusableProxy,
)
from kws.rest.tls import server_context
from kws.util.net import free_tcp_port
from kws.wire import audio_pack, senml

#: A client that sends plain PCM without asking the service anything first: the exchange is the clip's alone.
PLAIN_PCM = {"payload": "pcm", "compress": "none"}
# Both a /predict answer and (name, sha256, labels) model metadata: RecordingServer answers every path with it.
ANSWER = b'{"name":"fake","sha256":{"tflite":"0"},"label":"yes","index":5,"scores":[0,0,0,0,0,1,0,0],"labels":["down","stop","right","left","up","yes","no","go"],"model":{"name":"fake","sha256":"0"},"inference_ms":1.0}'  # noqa: E501


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
    with BigClient(recording_server.url, device="pi-test", **PLAIN_PCM) as big:
        answer = big.predict(np.arange(16_000, dtype=np.int16))
    assert answer.label == "yes" and answer.labels[answer.index] == "yes"
    assert answer.wire_bytes == len(recording_server.received) + len(recording_server.sent)
    assert answer.body_bytes == len(recording_server.received.split(b"\r\n\r\n", 1)[1])


def test_exchange_bytes_of_a_get_with_a_token(recording_server) -> None:
    with BigClient(recording_server.url, token="s3cret-token") as big:
        exchange = big.request("GET", "/health")
    assert exchange.status == 200 and exchange.body == ANSWER
    assert exchange.wire_bytes == len(recording_server.received) + len(recording_server.sent)
    assert b"\r\nAuthorization: Bearer s3cret-token\r\n" in recording_server.received


def test_4xx_is_rejected_not_unavailable() -> None:
    server = RecordingServer(b"HTTP/1.1 422 Unprocessable Entity", b'{"error":"pack has no audio","status":422}')
    try:
        with BigClient(server.url, **PLAIN_PCM) as big, pytest.raises(BigRejected, match="pack has no audio"):
            big.predict(np.zeros(100, dtype=np.int16))
    finally:
        server.close()


def test_5xx_after_retries_is_unavailable() -> None:
    server = RecordingServer(b"HTTP/1.1 503 Service Unavailable", b'{"error":"loading","status":503}')
    try:
        with BigClient(server.url, retries=1, **PLAIN_PCM) as big, pytest.raises(BigUnavailable, match="503"):
            big.predict(np.zeros(100, dtype=np.int16))
        assert server.received.count(b"POST /predict") == 2, "one retry"
    finally:
        server.close()


def test_connection_refused_is_unavailable_and_warned_once(caplog) -> None:
    with BigClient(f"http://127.0.0.1:{free_tcp_port()}", retries=0, **PLAIN_PCM) as big:
        for _ in range(3):
            with pytest.raises(BigUnavailable) as caught:
                big.predict(np.zeros(100, dtype=np.int16))
            assert caught.value.reason == "unreachable", "refused is not a timeout (urllib3 files it under one)"
    assert sum("unreachable" in record.getMessage() for record in caplog.records) == 1


def test_a_silent_service_times_out_as_unavailable() -> None:
    with socket.create_server(("127.0.0.1", 0)) as silent:  # accepts connections (backlog), never answers
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        big = BigClient(url, timeout=0.2, retries=0, **PLAIN_PCM)
        with big, pytest.raises(BigUnavailable, match="timed out"):
            big.predict(np.zeros(100, dtype=np.int16))


def test_auto_payload_takes_features_only_from_a_service_that_lists_them() -> None:
    """A service from before the features payload answers /health without a list: the client sends PCM."""
    server = RecordingServer()  # answers every request with ANSWER, which lists no payloads
    try:
        with BigClient(server.url) as big:
            answer = big.predict(np.zeros(16_000, dtype=np.int16))
        assert big.payload == "pcm" and answer.payload == "pcm"
        assert b"GET /health" in server.received and b'"n":"audio"' in server.received
    finally:
        server.close()


def _answer_listing(**lists: list[str]) -> bytes:
    """ANSWER that also lists what /health lists (payloads, content_encodings)."""
    return ANSWER[:-1] + b"".join(b"," + json.dumps({k: v})[1:-1].encode() for k, v in lists.items()) + b"}"


def test_auto_deflates_only_for_a_service_that_lists_it() -> None:
    samples = (np.sin(np.arange(16_000) / 7) * 8_000).astype(np.int16)
    old, new = RecordingServer(), RecordingServer(body=_answer_listing(content_encodings=["deflate", "gzip"]))
    try:
        with BigClient(old.url, payload="pcm") as big:
            plain = big.predict(samples)
        assert b"Content-Encoding" not in old.received and plain.content_encoding == "identity"
        assert plain.body_bytes == plain.pack_bytes
        with BigClient(new.url, payload="pcm") as big:
            coded = big.predict(samples)
        head, body = new.received.split(b"POST /predict", 1)[1].split(b"\r\n\r\n", 1)
        assert b"\r\nContent-Encoding: deflate\r\n" in head + b"\r\n" and coded.content_encoding == "deflate"
        clip = audio_pack.audio_from_records(senml.loads(zlib.decompress(body)), 16_000)
        assert np.array_equal(clip.samples, samples), "the body is the clip's pack, deflated"
        assert coded.body_bytes == len(body) < coded.pack_bytes == len(zlib.decompress(body))  # bt varies: not plain's
    finally:
        old.close()
        new.close()


def test_a_deflated_exchange_counts_the_bytes_on_the_socket() -> None:
    server = RecordingServer()
    try:
        with BigClient(server.url, payload="pcm", compress="deflate") as big:  # told, so nothing is asked first
            answer = big.predict(np.arange(16_000, dtype=np.int16))
        assert server.received.startswith(b"POST /predict")
        assert answer.wire_bytes == len(server.received) + len(server.sent)
    finally:
        server.close()


def test_deflate_asked_of_a_service_that_does_not_list_it_is_rejected() -> None:
    server = RecordingServer(body=_answer_listing(payloads=["pcm", "features"]))
    try:
        with BigClient(server.url, payload="auto", compress="deflate") as big, pytest.raises(BigRejected) as caught:
            big.predict(np.zeros(16_000, dtype=np.int16))
        assert "not 'deflate'" in str(caught.value) and b"POST /predict" not in server.received
    finally:
        server.close()


# --------------------------------------------------------------------------- #
# A broken or hostile Big (bench/broken_big.py): a BigError with the right reason, never a crash
# --------------------------------------------------------------------------- #

PI_LABELS = ("down", "stop", "right", "left", "up", "yes", "no", "go")


@pytest.mark.parametrize("behaviour", all_broken())
def test_each_broken_answer_is_a_big_error_with_its_reason(behaviour: str) -> None:
    with BrokenBig(behaviour) as broken, BigClient(broken.url, timeout=0.5, retries=0) as big:
        big.expect_labels(PI_LABELS)
        with pytest.raises(BigError) as caught:
            big.predict(np.zeros(100, dtype=np.int16))
    assert caught.value.reason == EXPECTED_REASON[behaviour], caught.value
    assert caught.value.reason in FAILURE_REASONS


def test_a_good_answer_passes_every_check() -> None:
    with BrokenBig("good") as fine, BigClient(fine.url) as big:
        big.expect_labels(PI_LABELS)
        answer = big.predict(np.zeros(100, dtype=np.int16))
    assert answer.label == "yes" and answer.labels[answer.index] == "yes" and answer.scores.sum() == 1


def test_a_200_mb_answer_is_cut_at_the_cap() -> None:
    with BrokenBig("huge") as huge, BigClient(huge.url, retries=0, max_response_bytes=100_000) as big:
        with pytest.raises(BigBadAnswer, match="over the 100000-byte cap"):
            big.predict(np.zeros(100, dtype=np.int16))


def test_a_slow_big_costs_one_timeout_not_one_per_retry() -> None:
    with BrokenBig("slow") as slow, BigClient(slow.url, timeout=0.3, retries=2) as big:
        with pytest.raises(BigUnavailable) as caught:
            big.predict(np.zeros(100, dtype=np.int16))
        assert caught.value.reason == "timeout"
        assert slow.predict_requests == 1, "a read timeout is not retried"


def test_the_breaker_stops_asking_after_failures_in_a_row_and_tries_again_after_the_cooldown(caplog) -> None:
    with BrokenBig("server-error") as broken, BigClient(
        broken.url, retries=0, breaker_failures=3, breaker_cooldown_s=0.5
    ) as big, caplog.at_level(logging.DEBUG, logger="kws.rest"):
        reasons = []
        for _ in range(6):
            with pytest.raises(BigError) as caught:
                big.predict(np.zeros(100, dtype=np.int16))
            reasons.append(caught.value.reason)
        assert reasons == ["server_error"] * 3 + ["circuit_open"] * 3
        assert broken.predict_requests == 3, "an open circuit asks nobody"
        time.sleep(0.6)
        with pytest.raises(BigError) as caught:
            big.predict(np.zeros(100, dtype=np.int16))
        assert caught.value.reason == "server_error" and broken.predict_requests == 4, "one trial after the cool-down"
        with pytest.raises(BigError) as caught:
            big.predict(np.zeros(100, dtype=np.int16))
        assert caught.value.reason == "circuit_open", "a failed trial opens it again"
    openings = [r for r in caplog.records if "failed 3 times in a row" in r.getMessage()]
    assert len(openings) == 1 and openings[0].levelno == logging.WARNING, "said once"


def test_the_breaker_closes_when_big_answers_again(caplog) -> None:
    with BrokenBig("good") as fine, BigClient(fine.url, breaker_failures=1, breaker_cooldown_s=0.2) as big:
        big.breaker.failure()  # as after an outage
        assert big.breaker.is_open
        with pytest.raises(BigUnavailable, match="not asked"):
            big.predict(np.zeros(100, dtype=np.int16))
        time.sleep(0.3)
        with caplog.at_level(logging.INFO, logger="kws.rest"):
            assert big.predict(np.zeros(100, dtype=np.int16)).label == "yes"
        assert not big.breaker.is_open
    assert any("answers again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        (b"<html>", "not JSON"),
        (b'{"name":"big","labels":"yes","sha256":{}}', "'labels' must be a non-empty list"),
        (b'{"name":"big","labels":["a","a"],"sha256":{}}', "repeat a label"),
        (b'{"name":7,"labels":["a"],"sha256":{}}', "'name' must be a string"),
        (b'{"name":"big","labels":["a"],"sha256":7}', "'sha256' must be a hex digest"),
        (b'{"name":"big","labels":["a"],"sha256":{"tflite":7}}', "'sha256' must be a hex digest"),
        (b"[" * 100_000, "not JSON"),
    ],
)
def test_malformed_model_metadata_is_a_bad_answer(body: bytes, complaint: str) -> None:
    server = RecordingServer(b"HTTP/1.1 200 OK", body)
    try:
        with BigClient(server.url, retries=0) as big, pytest.raises(BigBadAnswer, match=complaint):
            big.model_info()
    finally:
        server.close()


def _answer_offering_features(feature_config: object) -> bytes:
    """ANSWER that also lists both payloads (as /health) and gives ``feature_config`` (as /model)."""
    offer = b',"payloads":["pcm","features"],"feature_config":' + json.dumps(feature_config).encode()
    return ANSWER[:-1] + offer + b"}"


@pytest.mark.parametrize(
    ("feature_config", "complaint"),
    [
        ({"frame_length": 640, "frame_step": 1, "fft_length": 1 << 16}, "more than the Pi computes"),  # 15 361 FFTs
        ({"frame_length": "wide"}, "no usable feature_config"),
        (None, "no usable feature_config"),
    ],
    ids=["too-costly", "wrong-type", "missing"],
)
def test_a_feature_config_from_big_is_checked_before_the_pi_computes_it(feature_config, complaint, caplog) -> None:
    server = RecordingServer(b"HTTP/1.1 200 OK", _answer_offering_features(feature_config))
    try:
        with caplog.at_level(logging.WARNING), BigClient(server.url, payload="auto") as big:
            assert big.predict(np.zeros(16_000, dtype=np.int16)).payload == "pcm", "auto falls back to PCM"
        assert any("sending the clips as PCM" in record.getMessage() for record in caplog.records)
        with BigClient(server.url, payload="features") as big, pytest.raises(BigBadAnswer) as caught:
            big.predict(np.zeros(16_000, dtype=np.int16))
        assert caught.value.reason == "bad_answer" and complaint in str(caught.value)
    finally:
        server.close()


# --------------------------------------------------------------------------- #
# The transport: keep-alive, threads, redirects, Retry-After, TLS and proxies
# --------------------------------------------------------------------------- #


def test_one_connection_carries_every_request() -> None:
    with BrokenBig("good") as fine, BigClient(fine.url) as big:  # auto: /health, /model, then the clips
        for _ in range(5):
            assert big.predict(np.zeros(16_000, dtype=np.int16)).label == "yes"
        assert fine.connections == 1 and fine.predict_requests == 5


def test_threads_sharing_a_client_each_keep_a_connection(caplog) -> None:
    clips = [np.full(16_000, value, dtype=np.int16) for value in range(40)]
    with caplog.at_level(logging.WARNING), BrokenBig("good") as fine, BigClient(fine.url, **PLAIN_PCM) as big:
        with ThreadPoolExecutor(max_workers=8) as pool:
            labels = list(pool.map(lambda clip: big.predict(clip).label, clips))
        assert labels == ["yes"] * len(clips) and fine.predict_requests == len(clips)
        assert fine.connections <= 8, "no connection per request: the pool keeps one per thread"
    assert not caplog.records, [record.getMessage() for record in caplog.records]  # e.g. "pool is full"


def test_a_redirect_is_rejected_not_followed() -> None:
    server = RecordingServer(b"HTTP/1.1 308 Permanent Redirect\r\nLocation: http://127.0.0.1:9/predict", b"")
    try:
        with BigClient(server.url, **PLAIN_PCM, retries=0) as big, pytest.raises(BigRejected) as caught:
            big.predict(np.zeros(100, dtype=np.int16))
        assert caught.value.reason == "rejected" and "follows no redirects" in str(caught.value)
        assert server.received.count(b"POST /predict") == 1
    finally:
        server.close()


def test_a_retry_after_of_hours_is_not_waited_for() -> None:
    """A 503 saying "Retry-After: 21600" (urllib3 would sleep up to 6 h) costs the short back-off only."""
    server = RecordingServer(b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 21600", b'{"error":"busy"}')
    try:
        finished = threading.Event()

        def ask() -> None:
            with BigClient(server.url, **PLAIN_PCM, retries=1) as big, pytest.raises(BigUnavailable):
                big.predict(np.zeros(100, dtype=np.int16))
            finished.set()

        threading.Thread(target=ask, daemon=True).start()
        assert finished.wait(timeout=20), "the client slept on Retry-After"
        assert server.received.count(b"POST /predict") == 2, "the one retry was made"
    finally:
        server.close()


@pytest.fixture
def no_proxy_environment(monkeypatch) -> pytest.MonkeyPatch:
    """No proxy variable from the machine running the tests."""
    for name in ("http_proxy", "https_proxy", "all_proxy", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.upper(), raising=False)
    return monkeypatch


def test_an_http_proxy_from_the_environment_gets_the_whole_url(no_proxy_environment, recording_server) -> None:
    proxy_url = recording_server.url.replace("http://", "http://pi:s%40cret@")  # a proxy that wants a password
    no_proxy_environment.setenv("HTTP_PROXY", proxy_url)
    with BigClient("http://big.invalid:8080/kws", **PLAIN_PCM, device="pi-test") as big:
        assert big.proxy == recording_server.url
        answer = big.predict(np.arange(16_000, dtype=np.int16))
    request = recording_server.received
    assert request.startswith(b"POST http://big.invalid:8080/kws/predict HTTP/1.1\r\nHost: big.invalid:8080\r\n")
    assert f"\r\nProxy-Authorization: Basic {base64.b64encode(b'pi:s@cret').decode()}\r\n".encode() in request
    assert answer.wire_bytes == len(request) + len(recording_server.sent), "the proxy's headers are counted too"


def test_no_proxy_sends_the_service_direct(no_proxy_environment, recording_server) -> None:
    no_proxy_environment.setenv("http_proxy", f"http://127.0.0.1:{free_tcp_port()}")  # nobody listens there
    no_proxy_environment.setenv("no_proxy", "localhost,127.0.0.0/8")
    with BigClient(recording_server.url, **PLAIN_PCM, retries=0) as big:
        assert big.proxy is None and big.predict(np.zeros(100, dtype=np.int16)).label == "yes"


def test_a_lower_case_proxy_without_a_scheme_wins_over_the_upper_case_one(no_proxy_environment,
                                                                         recording_server) -> None:
    """The environment's rules are requests' (and the standard library's): http_proxy before HTTP_PROXY, and
    a proxy given as host:port is http://."""
    no_proxy_environment.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_tcp_port()}")  # nobody listens there
    no_proxy_environment.setenv("http_proxy", recording_server.url.removeprefix("http://"))
    with BigClient("http://big.invalid/kws", **PLAIN_PCM, retries=0) as big:
        assert big.proxy == recording_server.url and big.predict(np.zeros(100, dtype=np.int16)).label == "yes"
    assert recording_server.received.startswith(b"POST http://big.invalid/kws/predict HTTP/1.1\r\n")


def test_a_socks_proxy_is_refused_when_the_client_is_made(no_proxy_environment) -> None:
    no_proxy_environment.setenv("ALL_PROXY", "socks5://127.0.0.1:1080")
    with pytest.raises(UnusableProxy, match=r"\$ALL_PROXY names a proxy this client cannot use \(socks5://"):
        BigClient("https://big.invalid:8443")


class TunnelProxy:
    """A forward proxy that only tunnels (CONNECT), as HTTPS goes through a proxy; it keeps the CONNECT lines."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.connects: list[bytes] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._tunnel, args=(client,), daemon=True).start()

    def _tunnel(self, client: socket.socket) -> None:
        with client:
            head = b""
            while b"\r\n\r\n" not in head and (data := client.recv(4096)):
                head += data
            line = head.split(b"\r\n", 1)[0]
            self.connects.append(line)
            host, port = line.split()[1].decode().rsplit(":", 1)
            with socket.create_connection((host, int(port))) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                threading.Thread(target=self._pipe, args=(upstream, client), daemon=True).start()
                self._pipe(client, upstream)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass

    def close(self) -> None:
        self.listener.close()


def test_https_through_a_proxy_is_tunnelled_and_checked_end_to_end(no_proxy_environment, test_pki) -> None:
    proxy = TunnelProxy()
    context = server_context(test_pki.cert, test_pki.key)
    try:
        with BrokenBig("good", ssl_context=context) as fine:
            no_proxy_environment.setenv("https_proxy", proxy.url)
            with BigClient(fine.url, cafile=str(test_pki.ca), token="t0ken") as big:
                assert big.proxy == proxy.url
                assert big.predict(np.zeros(16_000, dtype=np.int16)).label == "yes"
            port = fine.url.rsplit(":", 1)[1]
            assert len(proxy.connects) == 1, "one tunnel, kept alive for /health, /model and the clip"
            assert proxy.connects[0].startswith(f"CONNECT 127.0.0.1:{port} HTTP/1.".encode())
            with BigClient(fine.url, cafile=str(test_pki.other_ca), retries=0) as untrusting:
                with pytest.raises(BigUnavailable) as caught:
                    untrusting.health()
            assert caught.value.reason == "tls", "the certificate is checked through the tunnel too"
    finally:
        proxy.close()


def test_a_clip_big_would_refuse_is_refused_before_anything_is_computed() -> None:
    """An empty or overlong clip is a BigRejected (the cascade then keeps Little's answer), never a TypeError."""
    from kws.rest.client import _check_clip_length

    for samples in (np.zeros(0, np.int16), np.zeros(10 * 16_000, np.int16)):
        with pytest.raises(BigRejected, match="Big takes 1 to") as refused:
            _check_clip_length(samples, 16_000)
        assert refused.value.reason == "rejected"
    _check_clip_length(np.zeros(16_000, np.int16), 16_000)
