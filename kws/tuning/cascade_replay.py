"""Little and Big hear every clip once; any threshold is then judged from their answers, without asking again.

This is how the cascade is tuned: :mod:`~kws.tuning.cascade_calibration` picks the
threshold that ships with the Little model, and :mod:`~kws.tuning.cascade_sweep`
draws every threshold's accuracy against what it sends, from one pass of both models
(:func:`predict_both`) and :class:`PairedPredictions`. Big is the service's
(:func:`service_answerer`) or a model in this process (:func:`model_answerer`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Union

import numpy as np
from tqdm import tqdm

from kws.audio import read_clip
from kws.cascade.rule import COST_CLIPS, MEGABYTE, asks_big, score_margin
from kws.data.clips import Clip
from kws.features import FeatureConfig, compute_features
from kws.frontend.mel import clip_log_mel
from kws.frontend.spec import FrontEndSpec
from kws.model.runtime import KeywordModel
from kws.rest import compression
from kws.rest.client import FEATURES_ENCODING, BigClient, BigUnavailable
from kws.wire import audio_pack, features_pack, mel_pack

#: The shipped rule's level: the cascade must not be shown less accurate than Big at 5 %.
DEFAULT_ALPHA = 0.05

#: Big's answer to one clip: its label, and the request body bytes that answer cost.
BigAnswerer = Callable[[np.ndarray], tuple[str, int]]
#: The index of an answer that is none of Little's labels: a Big that knows ``_silence_`` and ``_unknown_``
#: rejecting a clip. It equals no keyword clip's label, so on a keyword clip that answer counts as wrong.
REJECTED = -1


def label_index(little: KeywordModel, label: str) -> int:
    """``label`` as an index into Little's labels, or :data:`REJECTED` for one Little does not know."""
    return little.labels.index(label) if label in little.labels else REJECTED


@dataclass(frozen=True)
class CascadeOutcome:
    """What one threshold gives on a set of clips."""

    threshold: float
    accuracy: float
    big_fraction: float
    big_requests: int
    communication_bytes: int
    mb_per_800_clips: float

    def to_dict(self) -> dict[str, float | int]:
        """For JSON reports: fractions to 6 decimals like every other figure; the threshold exact."""
        rounded = {"accuracy", "big_fraction", "mb_per_800_clips"}
        return {name: round(value, 6) if name in rounded else value for name, value in asdict(self).items()}


@dataclass(frozen=True)
class PairedPredictions:
    """Little's and Big's predictions for the same clips: all a threshold needs to be judged.

    Every array has one entry per clip; labels are indices into one label list.
    """

    true_labels: np.ndarray
    margins: np.ndarray
    little: np.ndarray
    big: np.ndarray
    request_bytes: np.ndarray
    """Size of the request body each clip would cost if sent to Big."""

    @property
    def samples(self) -> int:
        return len(self.true_labels)

    @property
    def little_accuracy(self) -> float:
        return float(np.mean(self.little == self.true_labels)) if self.samples else 0.0

    @property
    def big_accuracy(self) -> float:
        return float(np.mean(self.big == self.true_labels)) if self.samples else 0.0

    def evaluate(self, threshold: float) -> CascadeOutcome:
        """Accuracy and Big traffic of the cascade at ``threshold``."""
        asked = asks_big(self.margins, threshold)
        predictions = np.where(asked, self.big, self.little)
        sent_bytes = int(np.sum(self.request_bytes[asked]))
        return CascadeOutcome(
            threshold=float(threshold),
            accuracy=float(np.mean(predictions == self.true_labels)) if self.samples else 0.0,
            big_fraction=float(np.mean(asked)) if self.samples else 0.0,
            big_requests=int(np.sum(asked)),
            communication_bytes=sent_bytes,
            mb_per_800_clips=sent_bytes / max(self.samples, 1) * COST_CLIPS / MEGABYTE,
        )

    def sweep(self, thresholds: Sequence[float]) -> list[CascadeOutcome]:
        """The cascade at each distinct threshold, in increasing order."""
        return [self.evaluate(threshold) for threshold in sorted(set(thresholds))]

    def candidate_thresholds(self) -> np.ndarray:
        """Every threshold that makes a different decision on these clips: 0, each midpoint
        between neighbouring distinct margins, and just above the largest.

        Midpoints rather than values just above a margin, so that a clip of another
        split whose margin lies between two calibration clips' is not decided by a hair.
        """
        distinct = np.unique(np.asarray(self.margins, dtype=np.float64))
        midpoints = (distinct[:-1] + distinct[1:]) / 2
        return np.concatenate([[0.0], midpoints, [np.nextafter(distinct[-1], np.inf)]])

    def mcnemar_p(self, threshold: float) -> float:
        """One-sided exact McNemar p-value of "the cascade at ``threshold`` is less accurate than Big".

        Only the clips where the two disagree carry information: ``b`` that Big gets
        right and the cascade wrong, ``c`` the other way round. Under "as accurate",
        each such clip is a fair coin, so p = P(Binomial(b + c, 1/2) >= b).
        """
        predictions = np.where(asks_big(self.margins, threshold), self.big, self.little)
        big_only = int(np.sum((self.big == self.true_labels) & (predictions != self.true_labels)))
        cascade_only = int(np.sum((predictions == self.true_labels) & (self.big != self.true_labels)))
        disagreements = big_only + cascade_only
        tail = sum(math.comb(disagreements, k) for k in range(big_only, disagreements + 1))
        return tail / 2**disagreements if disagreements else 1.0

    def calibrate(self, alpha: float = DEFAULT_ALPHA) -> CascadeOutcome:
        """The lowest threshold (so the fewest Big requests) at which the cascade is not shown to be
        less accurate than Big: one-sided exact McNemar test at level ``alpha`` on these clips.

        A point estimate ("reaches Big's accuracy on validation") would ride on a
        handful of clips; this rule asks Big as little as the evidence allows while
        the evidence cannot tell the cascade from Big. Always returns a threshold:
        the one just above the largest margin sends every clip to Big.
        """
        for threshold in self.candidate_thresholds():
            if self.mcnemar_p(threshold) >= alpha:
                return self.evaluate(threshold)
        return self.evaluate(self.candidate_thresholds()[-1])


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

    predictions: PairedPredictions
    """``request_bytes`` are those of the payload actually used to ask Big."""
    bytes_by_payload: dict[str, np.ndarray]
    """Each clip's request body size, per :func:`body_kinds`."""

    @property
    def kinds(self) -> tuple[str, ...]:
        """The body kinds measured, as :func:`body_kinds` names them."""
        return tuple(self.bytes_by_payload)

    def for_payload(self, payload: str) -> PairedPredictions:
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
        probabilities = little.predict_audio(samples)
        big_label, sent_bytes = big(samples)
        rows.append((
            little.labels.index(clip.label),
            float(score_margin(probabilities)),
            int(np.argmax(probabilities)),
            label_index(little, big_label),
            sent_bytes,
        ))
        sizes.append(payload_bytes(samples, big_reads))
    columns = (np.array(column) for column in zip(*rows))
    by_payload = {name: np.array([size[name] for size in sizes]) for name in body_kinds(big_reads)}
    return Paired(PairedPredictions(*columns), by_payload)


def service_metadata(big: BigClient, little: KeywordModel, purpose: str) -> dict[str, Any]:
    """The service's model metadata, after agreeing on a payload. Offline work cannot fall back to Little
    as a run does: a service that cannot answer is a :class:`~kws.rest.client.BigUnavailable` saying
    that it is needed for ``purpose`` ("calibrate", "sweep")."""
    big.expect_labels(little.labels)
    try:
        return big.negotiate()
    except BigUnavailable as error:
        needed = BigUnavailable(f"{error}; start big_service.py", error.reason)
        needed.summary = f"is needed to {purpose} but cannot answer"
        raise needed from error


def service_answerer(big: BigClient) -> BigAnswerer:
    """Big behind its REST service (what ``calibrate.py cascade`` and ``calibrate.py sweep`` use by default)."""

    def answer(samples: np.ndarray) -> tuple[str, int]:
        reply = big.predict(samples)
        return reply.label, reply.body_bytes

    return answer


def model_answerer(big: KeywordModel) -> BigAnswerer:
    """Big's model in this process (what export uses: no service needed)."""

    def answer(samples: np.ndarray) -> tuple[str, int]:
        return big.labels[int(np.argmax(big.predict_audio(samples)))], 0

    return answer
