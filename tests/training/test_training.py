"""train.py end to end on a few real clips: the files it writes load, and say what they are.

Accuracy is not the point here (two epochs on 72 clips); the contract is: a recipe
produces a TFLite model whose metadata every client can rely on, pruning really
zeroes weights, int8 models get their input standardisation in the metadata, and
the accuracy recorded at training is what the shipped interpreter measures.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="training needs TensorFlow (requirements/training.txt)")

from kws.audio import read_wav  # noqa: E402
from kws.data.clips import DEFAULT_LABELS, label_indices, select_clips  # noqa: E402
from kws.model.runtime import load_model  # noqa: E402
from kws.training.pipeline import train_recipe  # noqa: E402
from kws.training.recipes import RECIPES  # noqa: E402


@pytest.fixture(scope="module")
def trained(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """A short Little (pruned, int8, zlib) and a short float TC-ResNet, trained once."""
    output = tmp_path_factory.mktemp("models")
    quick = {
        "little": dataclasses.replace(RECIPES["little"], epochs=2, prune_epochs=3),
        "ensemble_3": dataclasses.replace(RECIPES["ensemble_3"], epochs=2),
    }
    return {
        name: {"metadata": train_recipe(name, recipe, [small_dataset], output, seed=7), "dir": output}
        for name, recipe in quick.items()
    }


def test_metadata_describes_the_files(trained: dict[str, dict]) -> None:
    for name, run in trained.items():
        metadata = run["metadata"]
        on_disk = json.loads((run["dir"] / f"{name}.json").read_text())
        assert on_disk == json.loads(json.dumps(metadata))
        assert metadata["labels"] == list(DEFAULT_LABELS)
        for kind, filename in metadata["files"].items():
            blob = (run["dir"] / filename).read_bytes()
            assert metadata["sizes"][kind] == len(blob)
            assert metadata["sha256"][kind] == hashlib.sha256(blob).hexdigest()
        assert metadata["training"]["train_clips"] == 24  # 3 clips x 8 labels of the train split


def test_little_is_pruned_quantized_and_compressed(trained: dict[str, dict]) -> None:
    metadata = trained["little"]["metadata"]
    assert set(metadata["files"]) == {"tflite", "tflite_zlib"}
    assert metadata["sizes"]["tflite_zlib"] < metadata["sizes"]["tflite"]
    # Depthwise kernels are left dense, so the overall figure sits a little below the target.
    assert metadata["training"]["measured_sparsity"] > 0.6
    assert len(metadata["input_standardization"]["mean"]) == RECIPES["little"].features.num_features


def test_float_models_standardise_inside_the_graph(trained: dict[str, dict]) -> None:
    assert "input_standardization" not in trained["ensemble_3"]["metadata"]


def test_recorded_accuracy_is_what_the_interpreter_measures(trained: dict[str, dict], small_dataset: Path) -> None:
    for name, run in trained.items():
        model = load_model(run["dir"] / name, prefer="zlib")
        clips = select_clips(small_dataset, "test", model.labels)
        predictions = [int(np.argmax(model.predict_audio(read_wav(clip.path)))) for clip in clips]
        truth = label_indices(clips, model.labels)
        measured = float(np.mean(np.array(predictions) == truth))
        # Training featurises in batches, clients clip by clip: float rounding may tip one near-tie.
        assert measured == pytest.approx(run["metadata"]["accuracy"]["test"], abs=1 / len(clips) + 1e-9)


def test_probabilities_come_out(trained: dict[str, dict], small_dataset: Path) -> None:
    model = load_model(trained["little"]["dir"] / "little", prefer="zlib")
    clip = select_clips(small_dataset, "test")[0]
    probabilities = model.predict_audio(read_wav(clip.path))
    assert probabilities.shape == (len(model.labels),)
    assert probabilities.sum() == pytest.approx(1.0, abs=0.02)  # int8 softmax: steps of 1/256


def test_unknown_recipe_is_a_cli_error(cli) -> None:
    done = cli("train.py", "--recipe", "huge")
    assert done.returncode == 2
    assert "--recipe" in done.stderr


def test_missing_data_dir_is_a_cli_error(tmp_path: Path, cli) -> None:
    done = cli("train.py", "--recipe", "little", "--data-dir", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "--data-dir" in done.stderr
