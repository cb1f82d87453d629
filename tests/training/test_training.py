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
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="training needs TensorFlow (requirements/training.txt)")

from conftest import write_wav  # noqa: E402

from kws.audio import read_clip, read_recording  # noqa: E402
from kws.data.clips import DEFAULT_LABELS, NON_KEYWORD_LABELS, label_indices, list_clips, select_clips  # noqa: E402
from kws.data.splits import partition_of  # noqa: E402
from kws.model.runtime import load_model  # noqa: E402
from kws.training.non_keywords import NOISE_FOLDER, other_word_clips  # noqa: E402
from kws.training.pipeline import train_recipe  # noqa: E402
from kws.training.recipes import RECIPES  # noqa: E402


@pytest.fixture(scope="module")
def training_only_folder(small_dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Ogg Opus copies of ``yes`` and ``no`` clips, named after speakers the hash puts in every split:
    only being declared training-only keeps them out of validation and test."""
    soundfile = pytest.importorskip("soundfile")
    target = tmp_path_factory.mktemp("yes_no_opus")
    speakers = [f"{index:08x}" for index in range(40)]
    clips = [clip for clip in select_clips(small_dataset, "all", ("yes", "no"))]
    for speaker, clip in zip(speakers, clips * 3):
        (target / clip.label).mkdir(exist_ok=True)
        soundfile.write(str(target / clip.label / f"{speaker}_nohash_0.opus"), read_recording(clip.path), 16_000,
                        format="OGG", subtype="OPUS")
    assert {partition_of(path.name.split("_")[0]) for path in target.glob("*/*.opus")} == {"train", "validation",
                                                                                            "test"}
    return target


@pytest.fixture(scope="module")
def trained(
    small_dataset: Path, small_other: Path, training_only_folder: Path, models_dir: Path,
    tmp_path_factory: pytest.TempPathFactory
) -> dict[str, dict]:
    """A short Little candidate (pruned, int8, zlib, knows silence and other words), a short float
    TC-ResNet that also trains on a training-only folder of Opus clips, and a short Little distilled
    from the shipped Big (copied beside it, as train.py finds it)."""
    output = tmp_path_factory.mktemp("models")
    for path in models_dir.glob("big.*"):
        shutil.copyfile(path, output / path.name)
    quick = {
        "little_robust": dataclasses.replace(RECIPES["little_robust"], epochs=2, prune_epochs=3, distillation=None),
        "ensemble_3": dataclasses.replace(RECIPES["ensemble_3"], epochs=2),
        "little_distilled": dataclasses.replace(RECIPES["little_distilled"], epochs=2, prune_epochs=2),
    }
    extra_dirs = {"ensemble_3": [training_only_folder]}
    return {
        name: {
            "metadata": train_recipe(name, recipe, [small_dataset, *extra_dirs.get(name, [])], output, seed=7,
                                     other_dir=small_other, training_only_dirs=extra_dirs.get(name, [])),
            "recipe": recipe,
            "dir": output,
            "other": small_other,
        }
        for name, recipe in quick.items()
    }


def test_metadata_describes_the_files(trained: dict[str, dict], training_only_folder: Path) -> None:
    for name, run in trained.items():
        metadata = run["metadata"]
        on_disk = json.loads((run["dir"] / f"{name}.json").read_text())
        assert on_disk == json.loads(json.dumps(metadata))
        expected = list(DEFAULT_LABELS) + (list(NON_KEYWORD_LABELS) if run["recipe"].non_keywords else [])
        assert metadata["labels"] == expected
        for kind, filename in metadata["files"].items():
            blob = (run["dir"] / filename).read_bytes()
            assert metadata["sizes"][kind] == len(blob)
            assert metadata["sha256"][kind] == hashlib.sha256(blob).hexdigest()
        # 3 clips x 8 labels of the train split; Little also the other words' train clips and 10 % silence
        extra = len(other_word_clips(run["other"], "train")) + 2 if run["recipe"].non_keywords else 0
        if metadata["training"]["training_only_dirs"]:
            extra += len(list_clips(training_only_folder))
        assert metadata["training"]["train_clips"] == 24 + extra


def test_a_training_only_folder_is_trained_on_and_never_measured(
    trained: dict[str, dict], training_only_folder: Path, small_dataset: Path
) -> None:
    """Every clip of the declared folder is in training, none in validation or test, whatever the
    speaker hash of its names says; the labels stay balanced and the metadata says how."""
    training = trained["ensemble_3"]["metadata"]["training"]
    accuracy = trained["ensemble_3"]["metadata"]["accuracy"]
    added = list_clips(training_only_folder)
    assert training["training_only_dirs"] == [training_only_folder.name]
    assert training["validation_clips"] == len(select_clips(small_dataset, "validation"))
    assert training["test_clips"] == len(select_clips(small_dataset, "test"))
    assert training_only_folder.name not in accuracy["validation_by_data_dir"]
    assert training_only_folder.name not in accuracy["test_by_data_dir"]
    per_label = training["train_clips_per_label"]
    assert per_label["yes"] == 3 + sum(clip.label == "yes" for clip in added) and per_label["stop"] == 3
    weights = training["class_weights"]
    assert weights["yes"] < weights["stop"]
    assert weights["yes"] * per_label["yes"] == pytest.approx(weights["stop"] * per_label["stop"], rel=1e-3)


def test_little_is_pruned_quantized_and_compressed(trained: dict[str, dict]) -> None:
    metadata = trained["little_robust"]["metadata"]
    assert set(metadata["files"]) == {"tflite", "tflite_zlib"}
    assert metadata["sizes"]["tflite_zlib"] < metadata["sizes"]["tflite"]
    # Depthwise kernels are left dense, so the overall figure sits a little below the target.
    assert metadata["training"]["measured_sparsity"] > 0.6
    assert len(metadata["input_standardization"]["mean"]) == RECIPES["little_robust"].features.num_features


def test_distilled_little_records_its_teacher(trained: dict[str, dict], models_dir: Path) -> None:
    """A distilled Little learns Big's probabilities too: its metadata names the very Big file it learnt from."""
    distillation = trained["little_distilled"]["metadata"]["training"]["distillation"]
    big = json.loads((models_dir / "big.json").read_text())
    assert distillation["teacher"] == "big"
    assert distillation["teacher_sha256"] == big["sha256"]["tflite"]
    assert 0 < distillation["weight"] < 1 and distillation["temperature"] >= 1
    assert "distillation" not in trained["little_robust"]["metadata"]["training"]


def test_float_models_standardise_inside_the_graph(trained: dict[str, dict]) -> None:
    assert "input_standardization" not in trained["ensemble_3"]["metadata"]


def test_recorded_accuracy_is_what_the_interpreter_measures(trained: dict[str, dict], small_dataset: Path) -> None:
    for name, run in trained.items():
        model = load_model(run["dir"] / name, prefer="zlib")
        clips = select_clips(small_dataset, "test", model.labels)
        predictions = [int(np.argmax(model.predict_audio(read_clip(clip.path)))) for clip in clips]
        truth = label_indices(clips, model.labels)
        measured = float(np.mean(np.array(predictions) == truth))
        recorded = run["metadata"]["accuracy"]["test_by_data_dir"][small_dataset.name]
        assert recorded["samples"] == len(clips)
        # Training featurises in batches, clients clip by clip: float rounding may tip one near-tie.
        assert measured == pytest.approx(recorded["accuracy"], abs=1 / len(clips) + 1e-9)


def test_non_keyword_figures_are_recorded(trained: dict[str, dict], small_other: Path) -> None:
    """Little knows _silence_ and _unknown_: its metadata says how it did on keywords alone and how many
    non-keyword test clips (other words and silence cut from the test part of the noise) it rejected."""
    accuracy = trained["little_robust"]["metadata"]["accuracy"]
    by_dir = accuracy["test_by_data_dir"]
    assert by_dir[small_other.name]["samples"] == len(other_word_clips(small_other, "test")) > 0
    assert by_dir["_background_noise_"]["samples"] == 2  # 10 % of 24 keyword clips
    for key in ("test_keywords", "test_keywords_rejected", "test_non_keywords_rejected"):
        assert 0.0 <= accuracy[key] <= 1.0
    assert "test_non_keywords_rejected" not in trained["ensemble_3"]["metadata"]["accuracy"]


def test_other_words_keep_their_speakers_on_one_side(data_dir: Path) -> None:
    """The other words are split by the keywords' speaker hash: a voice heard in training is never tested."""
    source = data_dir.parent / "speech_commands_other"
    if not source.is_dir():
        pytest.skip(f"no {source}")
    by_split = {split: {clip.speaker for clip in other_word_clips(source, split)} for split in ("train", "test")}
    assert by_split["train"] and by_split["test"] and not by_split["train"] & by_split["test"]
    keyword_test_speakers = {clip.speaker for clip in select_clips(data_dir, "test")}
    assert all(partition_of(speaker) == "test" for speaker in keyword_test_speakers & by_split["test"])
    assert not keyword_test_speakers & by_split["train"]
    assert not {clip.label for clip in other_word_clips(source, "all")} & set(DEFAULT_LABELS)


def test_probabilities_come_out(trained: dict[str, dict], small_dataset: Path) -> None:
    model = load_model(trained["little_robust"]["dir"] / "little_robust", prefer="zlib")
    clip = select_clips(small_dataset, "test")[0]
    probabilities = model.predict_audio(read_clip(clip.path))
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


def test_a_student_without_its_teacher_is_a_cli_error(tmp_path: Path, small_dataset: Path, cli) -> None:
    done = cli("train.py", "--recipe", "little_distilled", "--output-dir", str(tmp_path),
               "--data-dir", str(small_dataset))
    assert done.returncode == 2
    assert "learns from big" in done.stderr and "--recipe big" in done.stderr


def test_a_ten_label_model_is_judged_on_what_it_must_refuse(
    trained: dict[str, dict], small_dataset: Path, small_other: Path, tmp_path: Path, cli
) -> None:
    """evaluate.py on a folder with ``_unknown_/`` (other words) and ``_silence_/`` (noise) beside the keywords:
    the report says how much of each was refused, and lists every clip's answer."""
    folder = tmp_path / "with_non_keywords"
    shutil.copytree(small_dataset, folder)
    for index, clip in enumerate(other_word_clips(small_other, "all")[:6]):
        (folder / "_unknown_").mkdir(exist_ok=True)
        shutil.copyfile(clip.path, folder / "_unknown_" / f"{clip.speaker}_nohash_{index}.wav")
    noise = read_recording(small_other / NOISE_FOLDER / "pink_noise.wav")
    (folder / "_silence_").mkdir()
    for index in range(4):
        piece = (noise[index * 16_000 : (index + 1) * 16_000] // (1 + 4 * index)).astype("<i2")
        write_wav(folder / "_silence_" / f"noise_nohash_{index}.wav", piece)
    stem = trained["little_robust"]["dir"] / "little_robust"
    done = cli("evaluate.py", "--model", str(stem), "--data-dir", str(folder), "--split", "all", "--quiet",
               "--report", str(tmp_path / "ten.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "ten.json").read_text())
    rejection = report["rejection"]
    assert rejection["non_keyword_clips"] == 10 and rejection["keyword_clips"] == len(list_clips(small_dataset))
    answers = report["predictions"]
    assert len(answers) == report["samples"] == 10 + rejection["keyword_clips"]
    refused = [answer["predicted"] in NON_KEYWORD_LABELS for answer in answers]
    non_keyword = [answer["label"] in NON_KEYWORD_LABELS for answer in answers]
    assert rejection["non_keywords_rejected"] == pytest.approx(
        sum(r for r, n in zip(refused, non_keyword) if n) / 10)
    assert rejection["keywords_rejected"] == pytest.approx(
        sum(r for r, n in zip(refused, non_keyword) if not n) / rejection["keyword_clips"])
    assert {answer["clip"] for answer in answers} >= {"_unknown_/" + p.name for p in (folder / "_unknown_").iterdir()}
    assert "non-keyword clips (_silence_, _unknown_)" in done.stdout

    # A keyword-only model on the same folder: the non-keyword folders are not its labels, and nothing is refused.
    done = cli("evaluate.py", "--model", str(trained["ensemble_3"]["dir"] / "ensemble_3"), "--data-dir", str(folder),
               "--split", "all", "--quiet", "--report", str(tmp_path / "eight.json"))
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "eight.json").read_text())
    assert "rejection" not in report and report["samples"] == len(list_clips(small_dataset))


# --------------------------------------------------------------------------- #
# A head on the pretrained front end (issue 18)
# --------------------------------------------------------------------------- #


@pytest.fixture(scope="module", params=["big_embedding_frozen", "big_embedding"])
def embedding_head(request: pytest.FixtureRequest, small_dataset: Path, small_other: Path,
                   tmp_path_factory: pytest.TempPathFactory):
    """Each front-end recipe, three epochs and one augmented variant, on the small folders, its cache in a fresh
    folder: the frozen head, and the head with the embedding's top tuned (shipped as one file that reads mel)."""
    pytest.importorskip("onnxruntime", reason="the front end runs under onnxruntime (requirements/server.txt)")
    import os

    from kws.frontend.embedding import FrontEnd
    from kws.frontend.spec import FrontEndError
    from kws.training.embedding_head import train_embedding_head

    recipe = dataclasses.replace(RECIPES[request.param], epochs=3, variants=1)
    try:
        FrontEnd.load(recipe.front_end)
    except FrontEndError as error:
        pytest.skip(f"no pretrained front end here: {error}")
    output, cache = tmp_path_factory.mktemp("head"), tmp_path_factory.mktemp("cache")
    previous = os.environ.get("KWS_CACHE_DIR")
    os.environ["KWS_CACHE_DIR"] = str(cache)
    try:
        metadata = train_embedding_head("big_embedding", recipe, [small_dataset], output, seed=3, other_dir=small_other)
        cached = sorted(cache.rglob("*.npy"))
        again = train_embedding_head("again", recipe, [small_dataset], output, seed=3, other_dir=small_other)
        assert cached and sorted(cache.rglob("*.npy")) == cached, "a second run computes nothing new"
    finally:
        if previous is None:
            os.environ.pop("KWS_CACHE_DIR", None)
        else:
            os.environ["KWS_CACHE_DIR"] = previous
    return {"metadata": metadata, "again": again, "dir": output, "recipe": recipe}


def test_a_head_on_the_front_end_says_what_it_reads(embedding_head, small_dataset: Path) -> None:
    metadata, recipe = embedding_head["metadata"], embedding_head["recipe"]
    tuned = recipe.tune_from_conv is not None
    assert metadata["front_end"] == dataclasses.replace(recipe.front_end, embedding_in_model=tuned).to_dict()
    assert metadata["feature_config"] is None
    assert metadata["input_shape"] == ([9, 76, 32, 1] if tuned else [9, 96])
    assert metadata["labels"] == list(DEFAULT_LABELS) + list(NON_KEYWORD_LABELS)
    assert metadata["training"]["front_end_variants"]["augmented"] == 1
    assert metadata["accuracy"] == embedding_head["again"]["accuracy"], "the same seed and cache, the same head"
    if tuned:
        assert metadata["architecture"]["tuned_from_conv"] == recipe.tune_from_conv
        assert metadata["architecture"]["trained_parameters"] < metadata["architecture"]["parameters"]
    model = load_model(embedding_head["dir"] / "big_embedding")
    assert model.front_end is not None
    clips = select_clips(small_dataset, "test", model.labels)
    predictions = [int(np.argmax(model.predict_audio(read_clip(clip.path)))) for clip in clips]
    measured = float(np.mean(np.array(predictions) == label_indices(clips, model.labels)))
    recorded = metadata["accuracy"]["test_by_data_dir"][small_dataset.name]
    assert measured == pytest.approx(recorded["accuracy"], abs=1 / len(clips) + 1e-9)
