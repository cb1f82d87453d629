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
from collections.abc import Callable
from pathlib import Path

import pytest

from kws.data.clips import DATA_DIR_VARIABLE, DEFAULT_LABELS, LOCAL_DATA_DIRS, locate_data_dir, select_clips
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
