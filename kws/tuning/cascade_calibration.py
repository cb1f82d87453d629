"""Choosing the cascade's threshold on labelled clips that were never tested on.

The threshold belongs to the Little model, like its features: at export it is
calibrated on the validation speakers against the Big model Little will be paired
with, and written into ``models/little.json`` as its ``cascade`` section (the rule,
the threshold, Big's name and sha256, and the validation figures it was chosen
from), so a Pi with no labelled clips uses it as it is::

    python -m kws.tuning.cascade_calibration --little models/little --big models/big \\
        --data-dir ../shared/data/speech_commands --data-dir ../shared/data/speech_commands_extra \\
        --data-dir ../shared/data/speech_commands_more

A user with labelled clips of their own recalibrates with ``little_client.py
--calibrate DIR``, against the Big service. Either way Little and Big answer every
clip once and every candidate threshold is judged offline
(:class:`~kws.cascade.rule.PairedPredictions`).
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np
from tqdm import tqdm

from kws.audio import read_clip
from kws.cascade import rule
from kws.data.clips import Clip, DatasetError, select_clips
from kws.features import FeatureConfig, compute_features
from kws.frontend.mel import clip_log_mel
from kws.frontend.spec import FrontEndSpec
from kws.model.metadata import metadata_path, write_section
from kws.model.runtime import KeywordModel, load_model
from kws.rest import compression
from kws.rest.client import FEATURES_ENCODING, BigClient
from kws.util.logs import setup_logging
from kws.wire import audio_pack, features_pack, mel_pack

log = logging.getLogger(__name__)

#: The split thresholds are calibrated on; the test split is never used for it.
CALIBRATION_SPLIT = "validation"

#: Big's answer to one clip: its label, and the request body bytes that answer cost.
BigAnswerer = Callable[[np.ndarray], tuple[str, int]]


def little_probabilities(model: KeywordModel, samples: np.ndarray) -> np.ndarray:
    """Class probabilities of one clip."""
    return model.predict_audio(samples)


#: What Big reads besides the clip, as its metadata says: its own features (a FeatureConfig), or the
#: pretrained front end's mel frames (a FrontEndSpec), which the Pi computes and sends instead of the clip.
BigInput = Union[FeatureConfig, FrontEndSpec]


def big_input(big_metadata: dict[str, Any]) -> BigInput:
    """What a Big's metadata (``models/<name>.json``, or its service's ``GET /model``) says the Pi may compute."""
    if big_metadata.get("front_end") is not None:
        return FrontEndSpec.from_dict(big_metadata["front_end"])
    return FeatureConfig.from_dict(big_metadata["feature_config"])


def computed_payload(big: BigInput) -> str:
    """The payload the Pi computes for this Big: ``mel`` for a head on the front end, else ``features``."""
    return "mel" if isinstance(big, FrontEndSpec) else "features"


def body_kinds(big: BigInput) -> tuple[str, ...]:
    """Each way a clip can travel to this Big, as the reports count its bytes: the clip and what the Pi
    computes for Big, each as a plain SenML pack and deflated (:mod:`kws.rest.compression`)."""
    computed = computed_payload(big)
    return ("pcm", computed, "pcm_deflate", f"{computed}_deflate")


def payload_bytes(samples: np.ndarray, big: BigInput) -> dict[str, int]:
    """What one clip costs to send to Big, per :func:`body_kinds`: the audio pack and the int8
    features or mel pack, each plain and deflated."""
    if isinstance(big, FrontEndSpec):
        computed = mel_pack.mel_pack_body("calibration-1", clip_log_mel(samples, big), big)
    else:
        computed = features_pack.features_pack_body(
            "calibration-1", compute_features(samples, big), big, encoding=FEATURES_ENCODING
        )
    packs = {"pcm": audio_pack.audio_pack_body(samples, device="calibration"), computed_payload(big): computed}
    deflated = {f"{name}_deflate": len(compression.compress(pack)) for name, pack in packs.items()}
    return {**{name: len(pack) for name, pack in packs.items()}, **deflated}


@dataclass(frozen=True)
class Paired:
    """Both models on the same clips, with what each clip would cost per payload."""

    predictions: rule.PairedPredictions
    """``request_bytes`` are those of the payload actually used to ask Big."""
    bytes_by_payload: dict[str, np.ndarray]
    """Each clip's request body size, per :func:`body_kinds`."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The body kinds measured, as :func:`body_kinds` names them."""
        return tuple(self.bytes_by_payload)

    def for_payload(self, payload: str) -> rule.PairedPredictions:
        return dataclasses.replace(self.predictions, request_bytes=self.bytes_by_payload[payload])


def predict_both(
    clips: Sequence[Clip],
    little: KeywordModel,
    big: BigAnswerer,
    big_reads: BigInput,
    desc: str,
    progress: bool = True,
) -> Paired:
    """Little and Big on every clip, labels as indices into Little's (clips must be labelled)."""
    rows, sizes = [], []
    for clip in tqdm(clips, desc=desc, unit="clip", disable=not progress):
        samples = read_clip(clip.path)
        probabilities = little_probabilities(little, samples)
        big_label, sent_bytes = big(samples)
        rows.append((
            little.labels.index(clip.label),
            float(rule.score_margin(probabilities)),
            int(np.argmax(probabilities)),
            little.labels.index(big_label),
            sent_bytes,
        ))
        sizes.append(payload_bytes(samples, big_reads))
    columns = (np.array(column) for column in zip(*rows))
    by_payload = {name: np.array([size[name] for size in sizes]) for name in body_kinds(big_reads)}
    return Paired(rule.PairedPredictions(*columns), by_payload)


def service_answerer(big: BigClient) -> BigAnswerer:
    """Big behind its REST service (what ``--calibrate`` and ``--sweep`` use)."""

    def answer(samples: np.ndarray) -> tuple[str, int]:
        reply = big.predict(samples)
        return reply.label, reply.body_bytes

    return answer


def model_answerer(big: KeywordModel) -> BigAnswerer:
    """Big's model in this process (what export uses: no service needed)."""

    def answer(samples: np.ndarray) -> tuple[str, int]:
        return big.labels[int(np.argmax(big.predict_audio(samples)))], 0

    return answer


@dataclass(frozen=True)
class Calibration:
    """A threshold, the rule that chose it and the validation figures it was chosen from."""

    outcome: rule.CascadeOutcome
    paired: Paired
    alpha: float
    big_model: dict[str, str]
    data_dirs: tuple[str, ...]

    @property
    def threshold(self) -> float:
        return self.outcome.threshold

    def to_section(self) -> dict[str, Any]:
        """The ``cascade`` section of the Little model's metadata."""
        predictions = self.paired.predictions
        per_payload = {name: self.paired.for_payload(name).evaluate(self.threshold) for name in self.paired.kinds}
        return {
            "rule": rule.RULE.format(alpha=self.alpha),
            "alpha": self.alpha,
            "threshold": self.threshold,
            "big_model": dict(self.big_model),
            "split": CALIBRATION_SPLIT,
            "data_dirs": list(self.data_dirs),
            "validation": {
                "samples": predictions.samples,
                "little_accuracy": round(predictions.little_accuracy, 6),
                "big_accuracy": round(predictions.big_accuracy, 6),
                "accuracy": round(self.outcome.accuracy, 6),
                "big_fraction": round(self.outcome.big_fraction, 6),
                "big_requests": self.outcome.big_requests,
                "mcnemar_p": round(predictions.mcnemar_p(self.threshold), 6),
                "bytes_per_request": {
                    name: round(float(np.mean(self.paired.bytes_by_payload[name])), 1) for name in per_payload
                },
                "mb_per_800_clips": {name: round(outcome.mb_per_800_clips, 4) for name, outcome in per_payload.items()},
            },
        }


def calibrate(
    data_dirs: Sequence[Path],
    split: str,
    little: KeywordModel,
    big: BigAnswerer,
    big_model: dict[str, Any],
    alpha: float = rule.DEFAULT_ALPHA,
    progress: bool = True,
) -> Calibration:
    """The shipped rule (:meth:`~kws.cascade.rule.PairedPredictions.calibrate`) on ``split`` of every folder."""
    clips = [clip for data_dir in data_dirs for clip in select_clips(data_dir, split, little.labels)]
    if not clips:
        raise DatasetError(f"{', '.join(map(str, data_dirs))}: no {split} clips to calibrate on")
    paired = predict_both(clips, little, big, big_input(big_model), desc=f"calibrating on {split}", progress=progress)
    outcome = paired.predictions.calibrate(alpha)
    calibration = Calibration(outcome, paired, alpha, big_identity(big_model), tuple(Path(d).name for d in data_dirs))
    log.info(
        "threshold %.4f: %s accuracy %.4f (Big %.4f, Little %.4f), Big asked %.1f%% of %d clips",
        outcome.threshold, split, outcome.accuracy, paired.predictions.big_accuracy,
        paired.predictions.little_accuracy, 100 * outcome.big_fraction, len(clips),
    )
    return calibration


def big_identity(big_metadata: dict[str, Any]) -> dict[str, str]:
    """Name and sha256 of a Big model's .tflite, from its metadata (what the service's GET /model returns)."""
    sha256 = big_metadata.get("sha256")
    tflite_sha256 = sha256.get("tflite") if isinstance(sha256, dict) else sha256
    return {"name": str(big_metadata.get("name")), "sha256": str(tflite_sha256)}


def calibrate_export(little_stem: Path, big_stem: Path, data_dirs: Sequence[Path],
                     alpha: float = rule.DEFAULT_ALPHA) -> Calibration:
    """The export step: calibrate the Little model against its Big (in this process) on the validation
    speakers of ``data_dirs`` and write the ``cascade`` section into the Little model's metadata."""
    little, big = load_model(little_stem, prefer="zlib"), load_model(big_stem)
    calibration = calibrate(data_dirs, CALIBRATION_SPLIT, little, model_answerer(big), big.metadata.raw, alpha)
    write_section(metadata_path(little_stem), "cascade", calibration.to_section())
    return calibration


def main(argv: Sequence[str] | None = None) -> int:
    """Export step: calibrate the Little model against its Big and write the ``cascade`` section."""
    parser = argparse.ArgumentParser(description="Calibrate the cascade threshold that ships with the Little model.")
    parser.add_argument("--little", type=Path, default=Path("models/little"), metavar="STEM")
    parser.add_argument("--big", type=Path, default=Path("models/big"), metavar="STEM")
    parser.add_argument("--data-dir", type=Path, action="append", required=True, metavar="DIR",
                        help="labelled folder whose validation speakers calibrate (repeatable)")
    parser.add_argument("--alpha", type=float, default=rule.DEFAULT_ALPHA, help="test level (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    calibration = calibrate_export(args.little, args.big, args.data_dir, args.alpha)
    print(f"threshold {calibration.threshold:.4f} written to {metadata_path(args.little)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
