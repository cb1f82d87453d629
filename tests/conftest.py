"""Shared pytest fixtures: a free TCP port, the real Speech Commands clips, a small copy of them.

Other test modules append their own fixtures below; keep additions self-contained.
"""

from __future__ import annotations

import os
import shutil
import socket
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:  # let tests import the project's top-level modules
    sys.path.insert(0, str(REPO_ROOT))

import dataset  # noqa: E402  (the sys.path line above makes it importable)


def find_free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def free_port() -> int:
    return find_free_port()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real clips; the test is skipped (with the reason) when there are none."""
    found = dataset.locate_data_dir()
    if found is None:
        where = os.environ.get("KWS_DATA_DIR") or ", ".join(map(str, dataset.LOCAL_DATA_DIRS))
        pytest.skip(f"no Speech Commands clips at {where}; set KWS_DATA_DIR or run 'python dataset.py download'")
    return found


def copy_small_dataset(source: Path, target: Path, clips_per_label: int, split: str = "all") -> Path:
    """Copy the first ``clips_per_label`` clips of each label of one split into ``target``."""
    from dataset import DEFAULT_LABELS, select_clips

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


#: The shipped models; $KWS_MODELS_DIR points the REST tests at another folder of them.
MODELS_DIR = Path(os.environ.get("KWS_MODELS_DIR", REPO_ROOT / "models"))


def shipped_model(name: str) -> Path:
    """``models/<name>`` (a stem for kws_model.load_model); the test is skipped while it is missing."""
    stem = MODELS_DIR / name
    if not stem.with_suffix(".json").is_file():
        pytest.skip(f"{stem}.json is missing: train the models first (python train.py) or set KWS_MODELS_DIR")
    return stem


# --------------------------------------------------------------------------- #
# MQTT: a private mosquitto and four models to serve (tests/test_mqtt_*.py)
# --------------------------------------------------------------------------- #


@pytest.fixture
def mosquitto(tmp_path: Path):
    """A private mosquitto on a free port, persistence on, restartable; skipped when not installed."""
    from local_mosquitto import LocalMosquitto, find_mosquitto

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    with LocalMosquitto(tmp_path / "mosquitto", port=find_free_port()) as broker:
        yield broker


@pytest.fixture(scope="session")
def ensemble_models() -> list[Path]:
    """The four shipped ensemble members, models/ensemble_1..4 (or $KWS_MODELS_DIR's)."""
    return [shipped_model(f"ensemble_{index}") for index in range(1, 5)]
