"""The Big/Little decision rule and its offline evaluation (every threshold judged from one pass), on
hand-made predictions; and the export step that writes the shipped threshold."""

from __future__ import annotations

import numpy as np
import pytest

from kws.cascade.rule import score_margin
from kws.tuning.cascade_replay import PairedPredictions

# Five clips: Little is sure and right, sure and wrong, unsure and right, unsure and wrong (x2).
PREDICTIONS = PairedPredictions(
    true_labels=np.array([0, 1, 2, 3, 4]),
    margins=np.array([0.9, 0.8, 0.3, 0.1, 0.2]),
    little=np.array([0, 0, 2, 0, 0]),
    big=np.array([0, 1, 1, 3, 4]),
    request_bytes=np.full(5, 40_000),
)


def test_score_margin_is_top1_minus_top2() -> None:
    probabilities = np.array([[0.7, 0.2, 0.1], [0.4, 0.4, 0.2], [1.0, 0.0, 0.0]])
    np.testing.assert_allclose(score_margin(probabilities), [0.5, 0.0, 1.0])


def test_threshold_zero_never_asks_big() -> None:
    outcome = PREDICTIONS.evaluate(0.0)
    assert outcome.big_requests == 0 and outcome.accuracy == PREDICTIONS.little_accuracy == 0.4


def test_threshold_above_every_margin_asks_big_always() -> None:
    outcome = PREDICTIONS.evaluate(1.0)
    assert outcome.big_fraction == 1.0 and outcome.accuracy == PREDICTIONS.big_accuracy == 0.8


def test_evaluate_counts_accuracy_traffic_and_cost() -> None:
    outcome = PREDICTIONS.evaluate(0.25)  # asks about the clips with margins 0.1 and 0.2; Big gets both right
    assert outcome.big_requests == 2 and outcome.accuracy == pytest.approx(0.8)
    assert outcome.communication_bytes == 80_000
    assert outcome.mb_per_800_clips == pytest.approx(80_000 / 5 * 800 / 1e6)


def many_clips(big_only: int, cascade_only: int, agree: int = 50) -> PairedPredictions:
    """Clips where Little is sure (margin 0.9); Big is right on ``big_only`` that Little gets wrong and
    wrong on ``cascade_only`` that Little gets right; both right on ``agree``."""
    n = big_only + cascade_only + agree
    truth = np.zeros(n, dtype=int)
    little = np.zeros(n, dtype=int)
    big = np.zeros(n, dtype=int)
    little[:big_only] = 1
    big[big_only:big_only + cascade_only] = 1
    return PairedPredictions(truth, np.full(n, 0.9), little, big, np.full(n, 3_000))


def test_mcnemar_p_is_the_binomial_tail_of_the_disagreements() -> None:
    clips = many_clips(big_only=6, cascade_only=1)
    assert clips.mcnemar_p(0.0) == pytest.approx(8 / 128)  # P(Bin(7, 1/2) >= 6)
    assert clips.mcnemar_p(1.0) == 1.0, "asking Big about every clip is Big"
    assert many_clips(big_only=7, cascade_only=1).mcnemar_p(0.0) == pytest.approx(9 / 256)


def test_calibrate_keeps_little_when_the_evidence_cannot_tell_it_from_big() -> None:
    assert many_clips(big_only=6, cascade_only=1).calibrate(alpha=0.05).threshold == 0.0
    assert many_clips(big_only=7, cascade_only=1).calibrate(alpha=0.05).threshold > 0.9, "7:1 is significant"


def test_calibrate_picks_the_fewest_requests_not_shown_worse_than_big() -> None:
    clips = many_clips(big_only=12, cascade_only=0)
    clips = PairedPredictions(  # Little's errors are its least sure clips, in order of margin
        clips.true_labels, np.concatenate([np.linspace(0.05, 0.6, 12), np.full(50, 0.9)]),
        clips.little, clips.big, clips.request_bytes,
    )
    outcome = clips.calibrate(alpha=0.05)
    assert clips.mcnemar_p(outcome.threshold) >= 0.05
    lower = [t for t in clips.candidate_thresholds() if t < outcome.threshold]
    assert lower and all(clips.mcnemar_p(t) < 0.05 for t in lower)
    assert outcome.big_requests == 8, "4 errors left (p = 1/16 >= 0.05); 5 would be significant (p = 1/32)"


def test_calibrate_on_five_clips_cannot_tell_and_keeps_little() -> None:
    assert PREDICTIONS.calibrate(alpha=0.05).threshold == 0.0


def test_sweep_is_sorted_and_deduplicated() -> None:
    rows = PREDICTIONS.sweep([0.5, 0.0, 0.5, 1.0])
    assert [row.threshold for row in rows] == [0.0, 0.5, 1.0]
    assert rows[-1].to_dict()["big_fraction"] == 1.0


def test_export_writes_the_cascade_section_against_the_paired_big(shipped_model, small_dataset, tmp_path) -> None:
    import json
    import shutil

    from kws.tuning.cascade_calibration import calibrate_export

    for stem in (shipped_model("little"), shipped_model("big")):
        for path in stem.parent.glob(stem.name + ".*"):
            shutil.copy(path, tmp_path)
    metadata = json.loads((tmp_path / "little.json").read_text())
    metadata.pop("cascade")
    (tmp_path / "little.json").write_text(json.dumps(metadata))
    calibration = calibrate_export(tmp_path / "little", tmp_path / "big", [small_dataset])
    section = json.loads((tmp_path / "little.json").read_text())["cascade"]
    big = json.loads((tmp_path / "big.json").read_text())
    assert section["threshold"] == calibration.threshold
    assert section["big_model"] == {"name": "big", "sha256": big["sha256"]["tflite"]}
    assert section["split"] == "validation" and section["validation"]["samples"] == 24  # 3 clips x 8 labels
    assert section["validation"]["mcnemar_p"] >= section["alpha"]
    sizes = section["validation"]["bytes_per_request"]
    assert sizes["features"] * 10 < sizes["pcm"]
    assert sizes["pcm_deflate"] < 0.7 * sizes["pcm"] and sizes["features_deflate"] < sizes["features"]


def test_a_big_that_rejects_a_keyword_folders_clip_counts_it_wrong(shipped_model, small_dataset, small_other,
                                                                   tmp_path) -> None:
    """The ten-label Big answers ``_silence_`` for noise filed under a keyword: a wrong answer, not a crash."""
    import shutil

    import numpy as np
    from conftest import write_wav

    from kws.audio import read_recording
    from kws.data.clips import select_clips
    from kws.model.runtime import load_model
    from kws.tuning.cascade_replay import REJECTED, model_answerer, predict_both

    folder = tmp_path / "clips"
    shutil.copytree(small_dataset, folder)
    noise_file = sorted((small_other / "_background_noise_").glob("*.wav"))[0]
    write_wav(folder / "yes" / "fffffff0_nohash_0.wav", read_recording(noise_file)[:16_000].astype(np.int16))
    little, big = load_model(shipped_model("little")), load_model(shipped_model("big_embedding"))
    clips = [clip for clip in select_clips(folder, "all", little.labels) if clip.label == "yes"]
    paired = predict_both(clips, little, model_answerer(big), big.metadata.front_end, "test", progress=False)
    noise_row = [clip.path.name for clip in clips].index("fffffff0_nohash_0.wav")
    assert paired.predictions.big[noise_row] == REJECTED
    assert paired.predictions.big_accuracy < 1.0
