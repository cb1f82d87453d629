"""The Big service against hostile clients, over real sockets: every malformed request gets a 4xx in JSON,
slow clients stall nothing, a bearer token guards /predict, and HTTPS works.

The hostile requests are ``bench/hostile_requests.py``'s catalogue, the one the
benchmark measures memory and latency with.
"""

from __future__ import annotations

import json
import socket
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from bench.hostile_requests import CATALOGUE, HostileRequest, send
from kws.audio import read_clip
from kws.data.clips import select_clips
from kws.rest import service as big_service
from kws.rest.server import ServerLimits
from kws.rest.tls import server_context
from kws.wire import audio_pack, senml

SENML_HEADERS = {"Content-Type": senml.MEDIA_TYPE}
SLOW_CLIENTS = 200


@pytest.fixture(scope="module")
def big_model_path(shipped_model) -> Path:
    return shipped_model("big")


@pytest.fixture(scope="module")
def service(big_model_path: Path) -> big_service.BigService:
    service = big_service.BigService(big_model_path)
    service.load()
    return service


@pytest.fixture(scope="module")
def server(service) -> Iterator[big_service.ServerHandle]:
    with big_service.start_server(service, port=0, threads=4) as handle:
        yield handle


@pytest.fixture(scope="module")
def clip_pack(data_dir: Path) -> bytes:
    clip = select_clips(data_dir, "test")[0]
    return audio_pack.encode_audio_pack(read_clip(clip.path), device="test").encode()


def assert_alive(url: str, **kwargs) -> None:
    response = requests.get(f"{url}/health", timeout=5, **kwargs)
    assert response.status_code == 200 and response.json()["status"] == "ready"


# --------------------------------------------------------------------------- #
# Malformed requests: a 4xx with a JSON body each, and the service stays up
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize("request_", CATALOGUE, ids=[r.name for r in CATALOGUE])
def test_hostile_request_gets_its_4xx_in_json(server, request_: HostileRequest) -> None:
    outcome = send(server.host, server.port, request_)
    assert outcome.status == request_.expected_status, outcome
    assert outcome.json_error, f"{request_.name}: not a JSON error body: {outcome.error!r}"
    assert_alive(server.url)


def test_errors_before_the_app_are_counted_in_metrics(server) -> None:
    refused = next(r for r in CATALOGUE if r.name == "500-headers")
    before = server.metrics.requests_total("other", 431)
    assert send(server.host, server.port, refused).status == 431
    assert server.metrics.requests_total("other", 431) == before + 1


def test_the_body_limit_itself_is_allowed(server) -> None:
    """The limit is inclusive: a body of exactly max_body bytes reaches the handler (which says it is no pack)."""
    body = b"[" + b" " * (big_service.MAX_BODY_BYTES - 2) + b"]"
    response = requests.post(f"{server.url}/predict", data=body, headers=SENML_HEADERS, timeout=10)
    assert response.status_code == 422, response.text


def test_expect_100_continue_with_a_huge_body_is_refused_before_the_body(server) -> None:
    with socket.create_connection((server.host, server.port), timeout=10) as connection:
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: big\r\nContent-Type: application/senml+json\r\n"
                           b"Content-Length: 100000000\r\nExpect: 100-continue\r\n\r\n")
        answer = connection.recv(65536)
    assert answer.startswith(b"HTTP/1.1 413 "), answer[:100]


# --------------------------------------------------------------------------- #
# Slow clients (slow loris): they hold sockets, never the workers
# --------------------------------------------------------------------------- #


def open_slow_clients(host: str, port: int, count: int, wrap=None) -> list[socket.socket]:
    """``count`` connections, each with the start of a request and no end to it."""
    clients = []
    for _ in range(count):
        connection = socket.create_connection((host, port), timeout=10)
        if wrap is None:
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: big\r\nX-Slow: ")
        clients.append(connection)  # over TLS: connected, no ClientHello at all
    return clients


def trickle(clients: list[socket.socket], rounds: int, pause_s: float) -> None:
    for _ in range(rounds):
        for connection in clients:
            try:
                connection.send(b"a")
            except OSError:
                pass
        time.sleep(pause_s)


def test_200_slow_clients_do_not_stall_health_or_predict(server, clip_pack) -> None:
    clients = open_slow_clients(server.host, server.port, SLOW_CLIENTS)
    try:
        trickle(clients, rounds=2, pause_s=0.2)
        # Each call gets 5 s: with a worker per slow client (cheroot's design) they would wait forever.
        assert_alive(server.url)
        response = requests.post(f"{server.url}/predict", data=clip_pack, headers=SENML_HEADERS, timeout=5)
        assert response.status_code == 200 and response.json()["label"]
        trickle(clients, rounds=1, pause_s=0)
        assert_alive(server.url)
    finally:
        for connection in clients:
            connection.close()


def test_a_request_trickled_past_the_read_deadline_is_cut_off(service) -> None:
    limits = ServerLimits(read_deadline_s=1.0)
    with big_service.start_server(service, port=0, threads=1, limits=limits) as handle:
        slow, silent = open_slow_clients(handle.host, handle.port, 1)[0], socket.create_connection(
            (handle.host, handle.port), timeout=10)
        with slow, silent:
            started = time.monotonic()
            closed = False
            while time.monotonic() - started < 8 and not closed:
                try:
                    slow.send(b"a")
                    time.sleep(0.2)
                except OSError:
                    closed = True
            assert closed, "the server still reads a request begun 8 s ago"
            assert silent.recv(1) == b"", "a connection that never sent a request is closed too"
        assert_alive(handle.url)


# --------------------------------------------------------------------------- #
# The bearer token
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def token() -> str:
    return "s3cret-token-0123456789abcdef"


@pytest.fixture(scope="module")
def guarded_server(service, token) -> Iterator[big_service.ServerHandle]:
    with big_service.start_server(service, port=0, threads=2, token=token) as handle:
        yield handle


def test_predict_without_the_token_is_401_in_json(guarded_server, clip_pack) -> None:
    response = requests.post(f"{guarded_server.url}/predict", data=clip_pack, headers=SENML_HEADERS, timeout=10)
    assert response.status_code == 401
    assert response.json() == {"error": response.json()["error"], "status": 401}
    assert "no Authorization header" in response.json()["error"]
    assert response.headers["WWW-Authenticate"].startswith("Bearer ")


def test_predict_with_a_wrong_token_is_401(guarded_server, clip_pack, token) -> None:
    for wrong in (token[:-1], token + "x", "Basic " + token, ""):
        headers = {**SENML_HEADERS, "Authorization": f"Bearer {wrong}" if not wrong.startswith("Basic") else wrong}
        response = requests.post(f"{guarded_server.url}/predict", data=clip_pack, headers=headers, timeout=10)
        assert response.status_code == 401, wrong
    assert guarded_server.metrics.requests_total("/predict", 401) >= 4


def test_predict_with_the_token_answers_and_health_stays_open(guarded_server, clip_pack, token) -> None:
    headers = {**SENML_HEADERS, "Authorization": f"Bearer {token}"}
    response = requests.post(f"{guarded_server.url}/predict", data=clip_pack, headers=headers, timeout=10)
    assert response.status_code == 200 and response.json()["label"]
    assert_alive(guarded_server.url)


# --------------------------------------------------------------------------- #
# HTTPS
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module")
def tls_server(service, test_pki) -> Iterator[big_service.ServerHandle]:
    context = server_context(test_pki.cert, test_pki.key)
    with big_service.start_server(service, host="127.0.0.1", port=0, threads=2, ssl_context=context) as handle:
        yield handle


def test_https_serves_predict_health_and_long_answers(tls_server, test_pki, clip_pack, big_model_path) -> None:
    assert tls_server.url.startswith("https://")
    with requests.Session() as session:  # one keep-alive TLS connection for every request
        session.trust_env = False  # else $REQUESTS_CA_BUNDLE would win over session.verify
        session.verify = str(test_pki.ca)
        for _ in range(5):
            response = session.post(f"{tls_server.url}/predict", data=clip_pack, headers=SENML_HEADERS, timeout=10)
            assert response.status_code == 200 and response.json()["label"]
        model = session.get(f"{tls_server.url}/model", timeout=10)
        assert model.json() == json.loads(big_model_path.with_suffix(".json").read_text())
        metrics = session.get(f"{tls_server.url}/metrics", timeout=10)
        assert metrics.status_code == 200 and "kws_http_requests_total" in metrics.text
        error = session.post(f"{tls_server.url}/predict", data=b"[" * 100, headers=SENML_HEADERS, timeout=10)
        assert error.status_code == 400 and error.json()["status"] == 400


def test_https_refuses_plain_http_and_untrusted_clients_and_stays_up(tls_server, test_pki) -> None:
    outcome = send(tls_server.host, tls_server.port, CATALOGUE[0])  # plain HTTP to the TLS port
    assert outcome.status is None  # closed after TLS's alert: nothing of HTTP is read from plaintext
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{tls_server.url}/health", verify=str(test_pki.other_ca), timeout=10)
    assert_alive(tls_server.url, verify=str(test_pki.ca))


def test_https_with_200_stalled_handshakes_still_answers(tls_server, test_pki) -> None:
    clients = open_slow_clients(tls_server.host, tls_server.port, SLOW_CLIENTS, wrap="tls")
    try:
        with socket.create_connection((tls_server.host, tls_server.port), timeout=10) as half:
            half.sendall(b"\x16\x03\x01")  # the first bytes of a ClientHello, and no more
            assert_alive(tls_server.url, verify=str(test_pki.ca))
    finally:
        for connection in clients:
            connection.close()


def test_tls_context_refuses_a_key_that_is_not_the_certificates(test_pki) -> None:
    with pytest.raises(ssl.SSLError):
        server_context(test_pki.cert, test_pki.other_ca.with_suffix(".key"))


# --------------------------------------------------------------------------- #
# big_service.py's security flags
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--token-file", "/nonexistent/token"], "--token-file: cannot read /nonexistent/token"),
        (["--keyfile", "key.pem"], "--keyfile needs --certfile"),
        (["--certfile", "/nonexistent/cert.pem"], "--certfile/--keyfile: cannot load"),
    ],
)
def test_cli_security_flag_errors(flags, complaint, cli) -> None:
    done = cli("big_service.py", "--port", "0", *flags)
    assert done.returncode == 2 and complaint in done.stderr and "Traceback" not in done.stderr


def test_cli_refuses_a_short_or_spaced_token(tmp_path, cli) -> None:
    cases = (("short\n", "has 5 characters"), ("two words here at all\n", "no spaces"), ("", "first line"))
    for text, complaint in cases:
        path = tmp_path / "token"
        path.write_text(text)
        done = cli("big_service.py", "--port", "0", "--token-file", str(path))
        assert done.returncode == 2 and complaint in done.stderr, done.stderr


def test_cli_serves_https_with_a_token(test_pki, token_file, big_model_path, clip_pack, free_port) -> None:
    import subprocess
    import sys

    from conftest import REPO_ROOT

    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "big_service.py"), "--port", str(free_port), "--model", str(big_model_path),
         "--token-file", str(token_file), "--certfile", str(test_pki.cert), "--keyfile", str(test_pki.key)],
        cwd=REPO_ROOT, stderr=subprocess.PIPE, text=True,
    )
    url = f"https://127.0.0.1:{free_port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if requests.get(f"{url}/health", verify=str(test_pki.ca), timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        token = token_file.read_text().strip()
        headers = {**SENML_HEADERS, "Authorization": f"Bearer {token}"}
        answer = requests.post(f"{url}/predict", data=clip_pack, headers=headers, verify=str(test_pki.ca), timeout=10)
        assert answer.status_code == 200, answer.text
        refused = requests.post(f"{url}/predict", data=clip_pack, headers=SENML_HEADERS, verify=str(test_pki.ca),
                                timeout=10)
        assert refused.status_code == 401
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert token not in err, "the token never reaches the log"
    assert "(/predict needs the token)" in err and "Traceback" not in err


def test_every_catalogue_entry_is_a_4xx() -> None:
    assert len(CATALOGUE) >= 14
    assert all(400 <= r.expected_status < 500 for r in CATALOGUE)
    assert np.unique([r.name for r in CATALOGUE]).size == len(CATALOGUE)


# --------------------------------------------------------------------------- #
# A bug in a handler: the documented JSON 500, unpadded, and the traceback in the log only
# --------------------------------------------------------------------------- #


class ServiceWithABug(big_service.BigService):
    """The real service, but answering a clip raises, as a bug would."""

    def predict(self, clip):
        raise RuntimeError("a bug while answering")


def test_a_crashing_handler_answers_the_documented_json_500(big_model_path, clip_pack, caplog) -> None:
    service = ServiceWithABug(big_model_path)
    service.load()
    with big_service.start_server(service, port=0, threads=2) as handle:
        response = requests.post(f"{handle.url}/predict", data=clip_pack, headers=SENML_HEADERS, timeout=10)
        assert response.status_code == 500
        assert response.headers["Content-Type"] == "application/json"
        assert response.content == b'{"error":"internal error; the service log has the details","status":500}'
        assert "a bug while answering" not in response.text
        assert_alive(handle.url)
    assert any("a bug while answering" in record.exc_text for record in caplog.records if record.exc_text)


def test_scores_that_are_not_finite_are_never_sent(service) -> None:
    """Finite but huge features overflow a float model into NaN; the decoder refuses them first (422), and
    the model itself refuses to hand NaN on as scores (``NonFiniteScores``), whoever calls it."""
    from kws.model.runtime import NonFiniteScores

    model = service.model
    with pytest.raises(NonFiniteScores, match="NaN or infinite scores"):
        model.predict_features(np.full(model.feature_config.shape, 3.4e38, np.float32))
