"""``pip install '.[litert,server]'`` into a fresh virtual environment, runtime requirements only, gives commands that
work outside the checkout: kws-big serves the shipped Big model, kws-little classifies clips with the shipped
Little model and asks it, and listens to a stream, all without a --model flag.

The environment is made with the interpreter running the tests and filled from the package index (pip's cache
makes a second run quick); nothing of the test environment is visible to it (no --system-site-packages), so a
runtime requirement missing from pyproject.toml fails here. The commands run from an empty folder: the models
they load are the installed ones.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from conftest import REPO_ROOT

from kws.util.net import free_tcp_port

#: The listener's parameters, fixed as in tests/listen/test_listen_cli.py: 16 words in the stream.
PARAMS = ["--detect-threshold", "0.9", "--smoothing", "3", "--suppress", "1.0", "--big-min-score", "0"]
#: What a checkout holds that is not the project (never copied into the build).
_NOT_SOURCE_AT_TOP = {".git", "data", "reports", "build", "dist", ".pytest_cache", ".ruff_cache"}


def _not_source(folder: str, names: list[str]) -> set[str]:
    top = Path(folder).resolve() == REPO_ROOT.resolve()
    return {name for name in names
            if name.startswith(".venv") or name == "__pycache__" or name.endswith(".egg-info")
            or (top and name in _NOT_SOURCE_AT_TOP)}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin folder of a fresh virtual environment with the package installed from a copy of the checkout."""
    root = tmp_path_factory.mktemp("install")
    source = root / "source"  # a copy: building writes build/ and *.egg-info next to the sources
    shutil.copytree(REPO_ROOT, source, ignore=_not_source)
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, timeout=120)
    bin_dir = root / "venv" / "bin"
    done = subprocess.run([str(bin_dir / "pip"), "install", "-q", f"{source}[litert,server]"], capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    return bin_dir


def run(bin_dir: Path, command: str, *args: str, cwd: Path, stdin: bytes | None = None,
        timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """An installed command, from ``cwd``, with the environment's bin folder first on PATH (as after activate)."""
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    env.pop("PYTHONPATH", None)
    return subprocess.run([str(bin_dir / command), *args], cwd=cwd, env=env, capture_output=True,
                          input=stdin, text=stdin is None, timeout=timeout)


def test_the_environment_holds_the_runtime_only(installed: Path) -> None:
    python = str(installed / "python")
    check = subprocess.run([python, "-m", "pip", "check"], capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    probe = "import importlib.util as u; print([m for m in ('tensorflow', 'pytest') if u.find_spec(m)])"
    assert subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=60).stdout.strip() == "[]"
    for command in ("kws-little", "kws-big", "kws-infer", "kws-coop", "kws-calibrate"):
        done = run(installed, command, "--help", cwd=installed)
        assert done.returncode == 0 and done.stdout.startswith(f"usage: {command} "), done.stderr


def test_installed_little_and_big_classify_clips_with_the_shipped_models(installed: Path, data_dir: Path,
                                                                         tmp_path: Path) -> None:
    clips = [str(sorted((data_dir / label).glob("*.wav"))[0]) for label in ("yes", "stop", "left", "down")]
    port = free_tcp_port()
    big = subprocess.Popen([str(installed / "kws-big"), "--port", str(port)], cwd=tmp_path,
                           stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while big.poll() is None and time.monotonic() < deadline:
            try:
                if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.2)
        assert big.poll() is None, big.stderr.read()
        report = tmp_path / "cascade.json"
        done = run(installed, "kws-little", *clips, "--service", f"http://127.0.0.1:{port}", "--threshold", "1",
                   "--report", str(report), cwd=tmp_path)  # threshold 1: Big is asked about every clip
    finally:
        big.terminate()
        big_log = big.communicate(timeout=30)[1]
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["big_requests"] == len(clips) and result["fallbacks"] == 0
    assert "share/kws-edge-cloud/models/little.tflite.zlib" in done.stderr  # the installed model, not a checkout's
    assert "share/kws-edge-cloud/models/big_embedding.tflite" in big_log


def test_installed_listener_hears_a_stream(installed: Path, sure_stream, tmp_path: Path) -> None:
    pcm = sure_stream.samples.astype("<i2").tobytes()
    done = run(installed, "kws-little", "--listen", "-", "--little-only", *PARAMS, cwd=tmp_path, stdin=pcm)
    assert done.returncode == 0, done.stderr.decode()[-2000:]
    heard = [json.loads(line) for line in done.stdout.decode().splitlines()]
    assert [d["label"] for d in heard] == [e.label for e in sorted(sure_stream.events, key=lambda e: e.start)]
