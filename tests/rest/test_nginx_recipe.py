"""deploy/nginx's recipe, run for real: Debian's nginx in front of two big_service.py processes.

TLS ends at nginx, the token passes through to the replicas, nginx's own errors
are JSON, slow clients wait at nginx, and when one replica is killed in the
middle of a run no clip is lost: nginx asks the other.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT
from support.local_nginx import LocalNginx, find_nginx

from kws.cascade.run import classify_clip, summarize
from kws.data.clips import select_clips
from kws.model.runtime import load_model
from kws.rest.auth import read_token_file
from kws.rest.client import BigClient
from kws.util.net import free_tcp_port

pytestmark = pytest.mark.skipif(find_nginx() is None, reason="nginx is not installed (apt-get install nginx)")


class Replica:
    """``big_service.py`` as its own process on a free loopback port."""

    def __init__(self, model: Path, token_file: Path) -> None:
        self.port = free_tcp_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "big_service.py"), "--port", str(self.port), "--model", str(model),
             "--token-file", str(token_file), "--threads", "2"],
            cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.process.poll() is None, "big_service.py exited"
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return
            except requests.ConnectionError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"{self.url} not ready in {timeout} s")

    def predictions(self) -> int:
        text = requests.get(f"{self.url}/metrics", timeout=5).text
        line = next((line for line in text.splitlines()
                     if line.startswith('kws_http_requests_total{path="/predict",status="200"}')), None)
        return int(float(line.rsplit(" ", 1)[1])) if line else 0

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(30)


@pytest.fixture
def replicas(shipped_model, token_file) -> Iterator[list[Replica]]:
    started = [Replica(shipped_model("big"), token_file) for _ in range(2)]
    try:
        for replica in started:
            replica.wait_ready()
        yield started
    finally:
        for replica in started:
            replica.stop()


@pytest.fixture
def nginx(replicas, test_pki, tmp_path) -> Iterator[LocalNginx]:
    upstreams = [f"127.0.0.1:{replica.port}" for replica in replicas]
    with LocalNginx(tmp_path / "nginx", upstreams, test_pki.cert, test_pki.key) as proxy:
        yield proxy


def test_a_replica_killed_mid_run_loses_no_clip(nginx, replicas, small_dataset, shipped_model, test_pki,
                                                 token_file) -> None:
    little = load_model(shipped_model("little"), prefer="zlib")
    clips = select_clips(small_dataset, "test", little.labels)
    outcomes = []
    with BigClient(nginx.url, token=read_token_file(token_file), cafile=str(test_pki.ca), retries=0) as big:
        big.expect_labels(little.labels)
        for number, clip in enumerate(clips):
            if number == len(clips) // 3:
                assert all(replica.predictions() > 0 for replica in replicas), "nginx shares the clips"
                replicas[0].kill()
            outcomes.append(classify_clip(clip, little, big, threshold=1.0))  # every clip goes to Big
    report = summarize(outcomes, threshold=1.0)
    assert report["fallbacks"] == 0, report["fallback_reasons"]
    assert all(outcome.big is not None for outcome in outcomes)
    assert {outcome.content_encoding for outcome in outcomes} == {"deflate"}, "deflated bodies pass nginx as they are"
    assert replicas[0].process.returncode == -signal.SIGKILL
    assert replicas[1].predictions() >= len(clips) - len(clips) // 3


def test_tls_token_and_json_errors_at_nginx(nginx, test_pki, token_file) -> None:
    with requests.Session() as session:
        session.trust_env = False
        session.verify = str(test_pki.ca)
        assert session.get(f"{nginx.url}/health", timeout=5).json()["status"] == "ready"
        senml = {"Content-Type": "application/senml+json"}
        refused = session.post(f"{nginx.url}/predict", data=b"[]", headers=senml, timeout=5)
        assert refused.status_code == 401 and refused.json()["status"] == 401, "the replicas check the token"
        token = read_token_file(token_file)
        authorised = {**senml, "Authorization": f"Bearer {token}"}
        assert session.post(f"{nginx.url}/predict", data=b"[]", headers=authorised, timeout=5).status_code == 422
        for response, status in (
            (session.post(f"{nginx.url}/predict", data=b" " * 100_000, headers=authorised, timeout=5), 413),
            (session.get(f"{nginx.url}/health?" + "a" * 20_000, timeout=5), 414),
            (session.get(f"{nginx.url}/health", headers={"X-Pad": "a" * 20_000}, timeout=5), 400),
        ):
            assert response.status_code == status and response.headers["Content-Type"] == "application/json"
            assert response.json()["status"] == status
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{nginx.url}/health", verify=str(test_pki.other_ca), timeout=5)


def test_slow_clients_wait_at_nginx_not_at_big(nginx, replicas, test_pki) -> None:
    import ssl

    def predict_requests_seen() -> int:
        texts = [requests.get(f"{replica.url}/metrics", timeout=5).text for replica in replicas]
        return sum(int(float(line.rsplit(" ", 1)[1])) for text in texts for line in text.splitlines()
                   if line.startswith('kws_http_requests_total{path="/predict"'))

    context = ssl.create_default_context(cafile=str(test_pki.ca))
    seen_before = predict_requests_seen()
    slow = []
    try:
        for _ in range(200):
            connection = context.wrap_socket(socket.create_connection(("127.0.0.1", nginx.port), timeout=10),
                                             server_hostname="127.0.0.1")
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: big\r\nContent-Length: 40000\r\n\r\n[")
            slow.append(connection)
        response = requests.get(f"{nginx.url}/health", verify=str(test_pki.ca), timeout=5)
        assert response.status_code == 200
        assert predict_requests_seen() == seen_before, "unfinished bodies stay at nginx"
    finally:
        for connection in slow:
            connection.close()
