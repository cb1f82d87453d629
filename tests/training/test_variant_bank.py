"""A bank of augmented variants (recipe.variant_bank) and the cache by content behind it, on real clips:
the features and the teacher's opinion of every variant are computed once, a second run computes
nothing, what the cache serves is what a fresh run computes, and an edited clip is never served stale."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("tensorflow", reason="training needs TensorFlow (requirements/training.txt)")

from kws.data.clips import DEFAULT_LABELS, NON_KEYWORD_LABELS  # noqa: E402
from kws.model.runtime import KeywordModel, load_model  # noqa: E402
from kws.training.content_cache import CACHE_VARIABLE, to_int16  # noqa: E402
from kws.training.data import SILENCE_SOURCE, SplitData, clean_features, load_non_keywords, load_split  # noqa: E402
from kws.training.distillation import Distillation, teacher_outputs  # noqa: E402
from kws.training.non_keywords import NoiseBank, noise_dir_of  # noqa: E402
from kws.training.pipeline import train_recipe  # noqa: E402
from kws.training.recipes import RECIPES, missing_teachers, training_order  # noqa: E402
from kws.training.variant_bank import VariantBank, cached_features  # noqa: E402

LABELS = (*DEFAULT_LABELS, *NON_KEYWORD_LABELS)
#: little_field, one epoch, unpruned, two augmented variants, taught by the tiny teacher below.
STUDENT = dataclasses.replace(RECIPES["little_field"], distillation=Distillation("teacher", 0.5, 2.0),
                              variant_bank=2, epochs=1, prune_sparsity=0.0)


def cache_files(folder: Path) -> dict[str, tuple[int, str]]:
    """Every cache file under ``folder``: its modification time and the SHA-256 of its bytes."""
    return {str(path.relative_to(folder)): (path.stat().st_mtime_ns, hashlib.sha256(path.read_bytes()).hexdigest())
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def teacher_dir(small_dataset: Path, small_other: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An output folder holding ``teacher``: a float ten-label Little, one epoch on the small folders."""
    output = tmp_path_factory.mktemp("teacher")
    recipe = dataclasses.replace(RECIPES["little_robust"], distillation=None, epochs=1, prune_sparsity=0.0,
                                 quantization="float32", compress=False)
    train_recipe("teacher", recipe, [small_dataset], output, seed=5, other_dir=small_other)
    return output


@pytest.fixture(scope="module")
def teacher(teacher_dir: Path) -> KeywordModel:
    return load_model(teacher_dir / "teacher")


@pytest.fixture(scope="module")
def train_split(small_dataset: Path, small_other: Path) -> SplitData:
    """The small folders' training clips with the other words and silence placeholders, as the pipeline has them."""
    keywords = load_split((small_dataset,), "train", LABELS)
    return keywords.concatenate(load_non_keywords(small_other, "train", LABELS, len(keywords)))


@pytest.fixture
def fresh_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "cache"
    monkeypatch.setenv(CACHE_VARIABLE, str(folder))
    return folder


def test_a_bank_trains_the_same_twice_and_the_second_run_computes_nothing(
    teacher_dir: Path, small_dataset: Path, small_other: Path, fresh_cache: Path
) -> None:
    first = train_recipe("little_field", STUDENT, [small_dataset], teacher_dir, seed=7, other_dir=small_other)
    cached = cache_files(fresh_cache)
    assert {Path(name).parts[0] for name in cached} == {"features", "teacher"}
    again = train_recipe("again", STUDENT, [small_dataset], teacher_dir, seed=7, other_dir=small_other)
    assert cache_files(fresh_cache) == cached, "the second run computes nothing new"
    assert again["accuracy"] == first["accuracy"]
    assert first["training"]["variant_bank"] == {"clean": 1, "augmented": 2, "drawn": "one variant per clip per epoch",
                                                 "teacher": "hears every variant"}
    assert first["training"]["distillation"]["teacher_sha256"] == load_model(teacher_dir / "teacher").sha256


@pytest.fixture(params=["tiny", "big_embedding"])
def any_teacher(request: pytest.FixtureRequest, shipped_model) -> KeywordModel:
    """The tiny feature teacher, and the shipped big_embedding (little_field's teacher, on the pretrained
    front end, which hears int16 clips only)."""
    if request.param == "tiny":
        return request.getfixturevalue("teacher")
    pytest.importorskip("onnxruntime", reason="the front end runs under onnxruntime (requirements/server.txt)")
    from kws.model.metadata import ModelError

    try:
        return load_model(shipped_model("big_embedding"))
    except ModelError as error:
        pytest.skip(f"no pretrained front end here: {error}")


def test_a_teachers_cached_outputs_match_a_fresh_run(
    any_teacher: KeywordModel, train_split: SplitData, fresh_cache: Path
) -> None:
    audio = np.concatenate([train_split.audio[:20], train_split.audio[:5] * np.float32(0.3)])  # exact, then not
    computed = teacher_outputs(any_teacher, audio, "teacher, computed")
    stored = cache_files(fresh_cache)
    served = teacher_outputs(any_teacher, audio, "teacher, from the cache")
    assert cache_files(fresh_cache) == stored and stored, "the second call is served from the cache"
    fresh = np.stack([any_teacher.clone().predict_audio(clip) for clip in to_int16(audio)])
    assert served.shape == (len(audio), len(any_teacher.labels))
    np.testing.assert_allclose(served, fresh, rtol=0, atol=1e-6)
    np.testing.assert_array_equal(served, computed)


def test_an_edited_clip_misses_the_cache(teacher: KeywordModel, train_split: SplitData, fresh_cache: Path) -> None:
    clips = to_int16(train_split.audio[:12])
    features, opinions = cached_features(clips, STUDENT.features), teacher_outputs(teacher, clips)
    before = cache_files(fresh_cache)
    edited = clips.copy()
    edited[3, 8_000] += 1 if edited[3, 8_000] < 32767 else -1
    features_again, opinions_again = cached_features(edited, STUDENT.features), teacher_outputs(teacher, edited)
    after = cache_files(fresh_cache)
    assert set(before) < set(after) and len(after) == len(before) + 2, "one new batch of features, one of the teacher's"
    assert all(after[name] == before[name] for name in before), "nothing stored is rewritten"
    np.testing.assert_array_equal(features_again, clean_features(edited.astype(np.float32) / 32768.0, STUDENT.features))
    np.testing.assert_allclose(opinions_again[3], teacher.predict_audio(edited[3]), rtol=0, atol=1e-6)
    np.testing.assert_array_equal(np.delete(features_again, 3, 0), np.delete(features, 3, 0))
    np.testing.assert_array_equal(np.delete(opinions_again, 3, 0), np.delete(opinions, 3, 0))


def test_the_banks_clean_variant_is_the_clean_features(
    train_split: SplitData, small_other: Path, fresh_cache: Path
) -> None:
    recipe = dataclasses.replace(STUDENT, distillation=None, variant_bank=1)
    noise = NoiseBank.load(noise_dir_of(small_other), "train")
    bank = VariantBank.build(recipe, train_split, noise, seed=3)
    assert bank.features.shape == (2, len(train_split), *recipe.features.shape) and bank.teacher is None
    silent = train_split.sources == SILENCE_SOURCE
    assert silent.any() and not silent.all()
    clean = clean_features(train_split.audio[~silent], recipe.features)
    np.testing.assert_array_equal(bank.features[0][~silent], clean)
    placeholders = clean_features(train_split.audio[silent], recipe.features)
    assert not np.array_equal(bank.features[0][silent], placeholders), "the silence clips are cut, not left as zeros"
    changed = np.abs(bank.features[1] - bank.features[0]).max(axis=(1, 2)) > 1e-3
    assert changed.mean() > 0.5, "the augmented variant is not the clean one"


def test_a_drawn_variant_comes_with_the_teachers_opinion_of_it(
    teacher: KeywordModel, train_split: SplitData, small_other: Path, fresh_cache: Path
) -> None:
    noise = NoiseBank.load(noise_dir_of(small_other), "train")
    data = dataclasses.replace(train_split, weights=np.ones(len(train_split), np.float32))
    bank = VariantBank.build(STUDENT, data, noise, seed=3, teacher=teacher)
    assert bank.teacher.shape == (3, len(data), len(LABELS))
    sequence = bank.sequence(STUDENT, data, seed=3, standardization=None)  # little_field has no SpecAugment masks
    drawn = set()
    for _ in range(3):  # epochs
        for index in range(len(sequence)):
            batch, targets, _ = sequence[index]
            rows = sequence.order[index * STUDENT.batch_size : (index + 1) * STUDENT.batch_size]
            variants = sequence.choice[rows]
            np.testing.assert_array_equal(batch, bank.features[variants, rows])
            np.testing.assert_array_equal(targets[:, 0], data.labels[rows])
            np.testing.assert_array_equal(targets[:, 1:], bank.teacher[variants, rows])
            drawn.update(variants.tolist())
        sequence.on_epoch_end()
    assert drawn == {0, 1, 2}


def test_masks_are_drawn_per_batch_whatever_the_order(
    train_split: SplitData, small_other: Path, fresh_cache: Path
) -> None:
    masked = dataclasses.replace(STUDENT.augment, time_masks=2, time_mask_frames=6)
    recipe = dataclasses.replace(STUDENT, distillation=None, batch_size=8, augment=masked)
    bank = VariantBank.build(recipe, train_split, NoiseBank.load(noise_dir_of(small_other), "train"), seed=3)
    sequence = bank.sequence(recipe, train_split, seed=3, standardization=None)
    second, first = sequence[1][0], sequence[0][0]  # asked out of order, as Keras may
    np.testing.assert_array_equal(sequence[0][0], first)
    np.testing.assert_array_equal(sequence[1][0], second)
    rows = sequence.order[:8]
    assert not np.array_equal(first, bank.features[sequence.choice[rows], rows]), "the masks were applied"


def test_little_field_is_little_robust_taught_by_big_embedding_from_a_bank(tmp_path: Path) -> None:
    field, robust = RECIPES["little_field"], RECIPES["little_robust"]
    assert dataclasses.replace(field, distillation=robust.distillation, variant_bank=0,
                               description=robust.description) == robust
    assert (field.distillation.teacher, field.variant_bank, robust.variant_bank) == ("big_embedding", 4, 0)
    assert RECIPES["big_embedding"].front_end is not None  # trained by kws.training.embedding_head
    assert training_order(["little_field", "big_embedding"]) == ["big_embedding", "little_field"]
    assert missing_teachers(["big_embedding", "little_field"], tmp_path) == []
    assert missing_teachers(["little_field"], tmp_path) == [("little_field", "big_embedding")]
