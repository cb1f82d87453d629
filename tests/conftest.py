"""Shared pytest fixtures: the real Speech Commands clips, a small copy of them, the shipped
models, a private Mosquitto, and a way to run the entry scripts as a user does.

Tests import the package (``kws``), never the entry scripts: a script is run as a
process (:func:`run_script`), exactly as a user runs it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from kws.audio import SAMPLE_RATE, read_clip, read_recording
from kws.data.clips import DATA_DIR_VARIABLE, DEFAULT_LABELS, LOCAL_DATA_DIRS, Clip, locate_data_dir, select_clips
from kws.model.runtime import KeywordModel, load_model
from kws.tuning import stream_synthesis
from kws.util.net import free_tcp_port

REPO_ROOT = Path(__file__).resolve().parents[1]
#: The shipped models; $KWS_MODELS_DIR points the tests at another folder of them.
MODELS_DIR = Path(os.environ.get("KWS_MODELS_DIR", REPO_ROOT / "models"))


@pytest.fixture
def free_port() -> int:
    return free_tcp_port()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real clips; the test is skipped (with the reason) when there are none."""
    found = locate_data_dir()
    if found is None:
        where = os.environ.get(DATA_DIR_VARIABLE) or ", ".join(map(str, LOCAL_DATA_DIRS))
        pytest.skip(f"no Speech Commands clips at {where}; set KWS_DATA_DIR or run 'python dataset.py download'")
    return found


def copy_small_dataset(source: Path, target: Path, clips_per_label: int, split: str = "all") -> Path:
    """Copy the first ``clips_per_label`` clips of each label of one split into ``target``."""
    chosen: dict[str, int] = {}
    for clip in select_clips(source, split, DEFAULT_LABELS):
        if chosen.get(clip.label, 0) >= clips_per_label:
            continue
        chosen[clip.label] = chosen.get(clip.label, 0) + 1
        destination = target / clip.key
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip.path, destination)
    return target


@pytest.fixture(scope="session")
def small_dataset(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """3 clips per label from each of the train, validation and test splits, copied once per session."""
    target = tmp_path_factory.mktemp("small_speech_commands")
    for split in ("train", "validation", "test"):
        copy_small_dataset(data_dir, target, clips_per_label=3, split=split)
    return target


#: Other words copied into the small folder of non-keywords, and how many clips of each split.
OTHER_WORDS = ("bed", "eight", "marvin", "zero")
OTHER_CLIPS_PER_SPLIT = 2


@pytest.fixture(scope="session")
def small_other(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A few other words of each split and 20 s of two noise recordings, from speech_commands_other."""
    from kws.training.non_keywords import NOISE_FOLDER, other_word_clips

    source = data_dir.parent / "speech_commands_other"
    if not (source / NOISE_FOLDER).is_dir():
        pytest.skip(f"no {source} (other words and noise recordings) beside the clips")
    target = tmp_path_factory.mktemp("small_other")
    for split in ("train", "validation", "test"):
        for word in OTHER_WORDS:
            for clip in [c for c in other_word_clips(source, split) if c.label == word][:OTHER_CLIPS_PER_SPLIT]:
                (target / word).mkdir(exist_ok=True)
                shutil.copyfile(clip.path, target / word / clip.path.name)
    (target / NOISE_FOLDER).mkdir()
    for name in ("pink_noise", "doing_the_dishes"):
        samples = read_recording(source / NOISE_FOLDER / f"{name}.wav")[: 20 * 16_000]
        write_wav(target / NOISE_FOLDER / f"{name}.wav", samples.astype(np.int16))
    return target


@pytest.fixture(scope="session", autouse=True)
def private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Training's cache by content (kws.training.content_cache) in a folder of this session's, never the
    developer's: what tests compute of their tiny fixtures has no place there."""
    from kws.training.content_cache import CACHE_VARIABLE

    previous = os.environ.get(CACHE_VARIABLE)
    os.environ[CACHE_VARIABLE] = str(tmp_path_factory.mktemp("kws_cache"))
    yield
    if previous is None:
        os.environ.pop(CACHE_VARIABLE, None)
    else:
        os.environ[CACHE_VARIABLE] = previous


def shipped_model_path(name: str) -> Path:
    """``models/<name>`` (a stem for ``kws.model.runtime.load_model``); the test is skipped while it is missing."""
    stem = MODELS_DIR / name
    if not stem.with_suffix(".json").is_file():
        pytest.skip(f"{stem}.json is missing: train the models first (python train.py) or set KWS_MODELS_DIR")
    return stem


@pytest.fixture(scope="session")
def shipped_model() -> Callable[[str], Path]:
    """``shipped_model("big")`` is the stem of a shipped model (skips the test when it is missing)."""
    return shipped_model_path


@pytest.fixture(scope="session")
def models_dir() -> Path:
    return MODELS_DIR


def run_script(script: str, *args: str, timeout: float = 120, env: dict[str, str] | None = None,
               stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
    """Run one of the entry scripts (``little_client.py`` ...) as a user would, from the repository root."""
    return subprocess.run(
        [sys.executable, str(REPO_ROOT / script), *args],
        cwd=REPO_ROOT, capture_output=True, text=stdin is None, timeout=timeout, input=stdin,
        env={**os.environ, **(env or {})},
    )


@pytest.fixture(scope="session")
def cli() -> Callable[..., subprocess.CompletedProcess[str]]:
    """``cli("little_client.py", "--help")`` runs an entry script; see :func:`run_script`."""
    return run_script


# --------------------------------------------------------------------------- #
# MQTT: a private mosquitto and four models to serve (tests/mqtt/)
# --------------------------------------------------------------------------- #


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A private mosquitto on a free port, persistence on, restartable; skipped when not installed."""
    from kws.mqtt.brokers.mosquitto import LocalMosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with LocalMosquitto(tmp_path / "mosquitto", port=free_tcp_port()) as broker:
        yield broker


@pytest.fixture(scope="session")
def ensemble_models() -> list[Path]:
    """The four shipped ensemble members, models/ensemble_1..4 (or $KWS_MODELS_DIR's)."""
    return [shipped_model_path(f"ensemble_{index}") for index in range(1, 5)]


# --------------------------------------------------------------------------- #
# The Big service with the shipped Big model, for the clients that ask it (tests/cascade/, tests/tuning/)
# --------------------------------------------------------------------------- #


def start_big_service(model_path: Path, threads: int = 4):
    """The Big service on a free local port, its model loaded; a ``ServerHandle``, to stop or use in ``with``."""
    from kws.rest.service import BigService, start_server

    service = BigService(model_path)
    service.load()
    return start_server(service, port=0, threads=threads)


@pytest.fixture
def big_server(shipped_model):
    """The shipped Big model served on a free local port for one test."""
    with start_big_service(shipped_model("big")) as handle:
        yield handle


@pytest.fixture
def paired_big_server(shipped_model):
    """The Big the shipped Little's threshold was calibrated against (the service's default), on a free local
    port for one test."""
    from kws.model.installed import SERVICE_MODEL

    with start_big_service(shipped_model(SERVICE_MODEL)) as handle:
        yield handle


@pytest.fixture(scope="session")
def tuned_embedding_model(tmp_path_factory: pytest.TempPathFactory):
    """A model whose TFLite file holds the whole pretrained embedding (``embedding_in_model``), built once a
    session from the installed graph (``support.tuned_embedding``; skipped without TensorFlow or the front end)."""
    from support.tuned_embedding import build_tuned_embedding_model

    return build_tuned_embedding_model(tmp_path_factory.mktemp("tuned_embedding"))


def predict_requests(handle) -> int:
    """How many /predict requests the service answered with 200."""
    return handle.metrics.requests_total("/predict", 200)


# --------------------------------------------------------------------------- #
# Always listening: the shipped Little model, sure test clips, a stream of them (tests/listen/)
# --------------------------------------------------------------------------- #

#: Steps (samples) at which the windows over a candidate clip are tried: a stream's hops fall anywhere.
LISTEN_STEP = 400
LISTEN_HOP = 1600
#: The faint noise of the test streams (dBFS).
FAINT_DBFS = -60.0


@pytest.fixture(scope="session")
def little_model(shipped_model) -> KeywordModel:
    return load_model(shipped_model("little"), prefer="zlib")


@pytest.fixture(scope="session")
def other_dir(data_dir: Path) -> Path:
    found = stream_synthesis.other_words_dir(data_dir)
    if not found.is_dir():
        pytest.skip(f"no other words at {found}")
    return found


def is_sure(model: KeywordModel, audio: np.ndarray, label: str, rng: np.random.Generator) -> bool:
    """Whether, wherever the hops fall, three averaged windows over the clip (in faint noise) reach 0.95 for
    ``label`` and never 0.5 for another keyword. Judged with whole-clip predictions, not the stream code."""
    noise = rng.standard_normal(3 * SAMPLE_RATE) * 10 ** (FAINT_DBFS / 20) * 32768
    padded = noise.copy()
    padded[SAMPLE_RATE : 2 * SAMPLE_RATE] += audio
    padded = np.clip(padded, -32768, 32767).astype(np.int16)
    ends = range(SAMPLE_RATE, padded.size + 1, LISTEN_STEP)
    probabilities = np.stack([model.predict_audio(padded[end - SAMPLE_RATE : end]) for end in ends])
    lag = LISTEN_HOP // LISTEN_STEP
    smoothed = (probabilities[2 * lag :] + probabilities[lag:-lag] + probabilities[: -2 * lag]) / 3
    index = model.labels.index(label)
    others = [i for i, name in enumerate(model.labels) if i != index and not name.startswith("_")]
    return bool(smoothed[:, index].max() >= 0.95 and smoothed[:, others].max() < 0.5)


@pytest.fixture(scope="session")
def sure_clips(data_dir: Path, little_model: KeywordModel) -> list[Clip]:
    """One test clip per keyword that Little is sure of wherever the windows fall (:func:`is_sure`):
    the stream tests then test the stream, not the model."""
    rng = np.random.default_rng(0)
    chosen: dict[str, Clip] = {}
    for clip in select_clips(data_dir, "test"):
        if clip.label in chosen or clip.label not in little_model.labels:
            continue
        if is_sure(little_model, read_clip(clip.path), clip.label, rng):
            chosen[clip.label] = clip
    missing = sorted(label for label in little_model.labels if not label.startswith("_") and label not in chosen)
    assert not missing, f"no sure test clip for {missing}"
    return [chosen[label] for label in sorted(chosen)]


@pytest.fixture(scope="session")
def sure_stream(sure_clips: list[Clip]) -> stream_synthesis.SyntheticStream:
    """The sure clips, twice over, with pauses over faint noise, then 5 s of noise alone."""
    material = stream_synthesis.Material(keywords=sure_clips + sure_clips, others=[], noises=[])
    return stream_synthesis.build_stream(material, level_dbfs=FAINT_DBFS, noise_s=5.0, seed=3)


def interrupt_script(script: str, *args: str, once: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run an entry script, and press Ctrl-C (SIGINT) a second after a stderr line says ``once``."""
    import signal
    import time

    # A shell's background job (a CI runner's `cmd &`) starts with SIGINT ignored, and Python then never raises
    # KeyboardInterrupt: the child gets Ctrl-C's default back, as in a terminal.
    process = subprocess.Popen([sys.executable, script, *args], cwd=REPO_ROOT, text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and once not in process.stderr.readline():
        pass
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=timeout)
    return subprocess.CompletedProcess(process.args, process.returncode, out, err)


def add_unusable_recordings(folder: Path) -> set[str]:
    """Three files no model can hear as a clip, added to ``folder`` (a label folder): a 44.1 kHz
    recording, a 3 s one and an empty file. Returns their clip keys (``label/name``)."""
    write_wav(folder / "cd_nohash_0.wav", np.ones(44_100, np.int16), rate=44_100)
    write_wav(folder / "long_nohash_0.wav", np.ones(48_000, np.int16))
    (folder / "empty_nohash_0.wav").write_bytes(b"")
    return {f"{folder.name}/{name}" for name in ("cd_nohash_0.wav", "long_nohash_0.wav", "empty_nohash_0.wav")}


def write_wav(path: Path, samples: np.ndarray, rate: int = SAMPLE_RATE, channels: int = 1) -> Path:
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(2)
        wav.setframerate(rate)
        wav.writeframes(np.asarray(samples, dtype="<i2").tobytes())
    return path


@pytest.fixture
def sure_wav(sure_stream: stream_synthesis.SyntheticStream, tmp_path: Path) -> Path:
    return write_wav(tmp_path / "stream.wav", sure_stream.samples)


# --------------------------------------------------------------------------- #
# TLS: a private certificate authority and a server certificate for 127.0.0.1 (tests/rest, tests/cascade)
# --------------------------------------------------------------------------- #


class PkiFiles:
    """Files of a throw-away PKI: ``ca`` signed ``cert`` (with ``key``) for 127.0.0.1 and localhost;
    ``other_ca`` signed nothing here, so a client trusting only it must refuse the server."""

    def __init__(self, directory: Path) -> None:
        self.ca, self.cert, self.key, self.other_ca = (directory / name for name in (
            "ca.pem", "cert.pem", "key.pem", "other-ca.pem"))


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def make_test_pki(directory: Path) -> PkiFiles:
    """A CA, a server certificate it signs and an unrelated CA, with Debian's openssl (as a deployer would)."""
    pki = PkiFiles(directory)
    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    for ca, name in ((pki.ca, "kws test CA"), (pki.other_ca, "somebody else's CA")):
        _openssl("req", "-x509", *curve, "-keyout", str(ca.with_suffix(".key")), "-out", str(ca),
                 "-days", "2", "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign")
    request = directory / "server.csr"
    _openssl("req", "-new", *curve, "-keyout", str(pki.key), "-out", str(request), "-subj", "/CN=127.0.0.1")
    extensions = directory / "server.ext"
    extensions.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
                          "keyUsage=critical,digitalSignature\nbasicConstraints=critical,CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(request), "-CA", str(pki.ca), "-CAkey", str(pki.ca.with_suffix(".key")),
             "-CAcreateserial", "-days", "2", "-out", str(pki.cert), "-extfile", str(extensions))
    pki.key.chmod(0o600)
    return pki


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> PkiFiles:
    """A throw-away PKI (see :class:`PkiFiles`); skipped without openssl (``apt-get install openssl``)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed (apt-get install openssl)")
    return make_test_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture
def token_file(tmp_path: Path) -> Path:
    """A token file as a deployer makes one: 32 random bytes, base64url, mode 600."""
    import secrets

    path = tmp_path / "token"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return path
