"""calibrate.py listen: parameters chosen on validation streams by the rule, written into the model's metadata."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kws.cli import calibrate
from kws.data.clips import select_clips
from kws.listen.params import DEFAULTS, params_from_metadata
from kws.model.runtime import load_model
from kws.tuning import listen_calibration, stream_synthesis
from kws.tuning.stream_replay import judge_tracks
from kws.tuning.stream_scoring import cost


@pytest.fixture(scope="module")
def small_other_dir(other_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two validation clips of each other word, and the noise recordings."""
    target = tmp_path_factory.mktemp("other")
    words = sorted(p.name for p in other_dir.iterdir() if p.is_dir() and not p.name.startswith("_"))
    for clip in select_clips(other_dir, "validation", words)[::12]:
        (target / clip.label).mkdir(exist_ok=True)
        shutil.copyfile(clip.path, target / clip.key)
    shutil.copytree(other_dir / stream_synthesis.NOISE_FOLDER, target / stream_synthesis.NOISE_FOLDER)
    return target


@pytest.fixture
def model_copy(shipped_model, tmp_path: Path) -> Path:
    for path in shipped_model("little").parent.glob("little.*"):
        shutil.copyfile(path, tmp_path / path.name)
    return tmp_path / "little"


def test_the_rule_picks_the_cheapest_set_on_validation(little_model, shipped_model, small_dataset,
                                                       small_other_dir) -> None:
    big = load_model(shipped_model("big"))
    tracks = listen_calibration.build_tracks(little_model, big, [small_dataset], small_other_dir, noise_s=30.0, seed=0)
    section = listen_calibration.choose(tracks, little_model, big, {"data_dirs": [str(small_dataset)]})
    chosen, _ = params_from_metadata({"listen": section})
    alone, _ = params_from_metadata({"listen": section}, little_only=True)
    everything = list(tracks.values())
    alone_outcome = judge_tracks(everything, alone, with_big=False)
    naive = judge_tracks(everything, dataclasses.replace(DEFAULTS, confirm_below=0.0), with_big=False)
    assert cost(alone_outcome.score) <= cost(naive.score)  # the obvious window is in the grid: never worse
    cascade = judge_tracks(everything, chosen, with_big=True)
    assert cost(cascade.score) <= cost(judge_tracks(everything, dataclasses.replace(chosen, confirm_below=0.0),
                                                    with_big=True).score)
    assert cascade.big_fraction <= 0.2
    validation = section["calibration"]["validation"]
    assert validation["cascade"]["both"]["hit_rate"] == round(cascade.score.hit_rate, 6)
    assert validation["little_only"]["both"]["hits"] == alone_outcome.score.hits
    assert section["calibration"]["split"] == "validation"
    assert set(section["calibration"]["streams"]) == {"quiet", "noisy"}
    assert section["calibration"]["big"]["sha256"] == big.sha256


@pytest.mark.parametrize("big", ["big", "big_embedding"])
def test_the_command_writes_the_section_and_the_model_still_loads(big: str, model_copy, shipped_model, small_dataset,
                                                                   small_other_dir, capsys) -> None:
    """Against the network Big and the default Big on the pretrained front end (asked only where a detection needs
    it, as the listener asks)."""
    args = ["--model", str(model_copy), "--big", str(shipped_model(big)), "--data-dir", str(small_dataset),
            "--other-dir", str(small_other_dir), "--noise-minutes", "0.5"]
    before = model_copy.with_suffix(".json").read_text()
    assert calibrate.main(["listen", *args, "--dry-run"]) == 0
    assert model_copy.with_suffix(".json").read_text() == before
    assert calibrate.main(["listen", *args]) == 0
    assert "listen section written" in capsys.readouterr().out
    model = load_model(model_copy, prefer="zlib")
    section = json.loads(model_copy.with_suffix(".json").read_text())["listen"]
    assert params_from_metadata(model.metadata.raw) == (params_from_metadata({"listen": section})[0],
                                                        "the model's listen section")
    assert section["calibration"]["command"].startswith("python calibrate.py listen --model")
    assert json.loads(before)["sha256"] == json.loads(model_copy.with_suffix(".json").read_text())["sha256"]


def test_a_front_end_big_is_asked_about_the_window_the_listener_sends(little_model, shipped_model, small_dataset,
                                                                     small_other_dir) -> None:
    big = load_model(shipped_model("big_embedding"))
    tracks = listen_calibration.build_tracks(little_model, big, [small_dataset], small_other_dir, noise_s=30.0, seed=0)
    track = next(iter(tracks.values()))
    assert track.big_rows == {}  # nothing computed before a detection asks
    end = int(track.ends[len(track.ends) // 2])
    window = track.stream.samples[end - little_model.feature_config.clip_samples : end]
    np.testing.assert_allclose(track.big_row(end), big.predict_audio(window), atol=1e-6)
    assert list(track.big_rows) == [end]
