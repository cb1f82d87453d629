"""A cascade run over clips: Little first, Big when Little is unsure, and the run's report.

Clips may be labelled (a Speech Commands folder, or files under a folder named
after a label) or not (any WAV a Pi recorded): every clip is classified, and
accuracy is reported over the labelled ones only. The threshold is the one that
shipped with the Little model (its metadata's ``cascade`` section) unless the
caller gives one; choosing it is offline work (``calibrate.py``, :mod:`kws.tuning`).
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from tqdm import tqdm

from kws.audio import AudioError, read_clip
from kws.cascade import rule
from kws.data.clips import Clip, keywords_of
from kws.errors import KwsError
from kws.model.runtime import KeywordModel
from kws.rest.client import BigAnswer, BigClient, BigError, BigUnavailable

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClipOutcome:
    """What happened to one clip in a cascade run."""

    clip: str
    label: str | None
    """The true label where the clip has one; None for unlabelled audio."""
    little: str
    margin: float
    big: str | None
    """Big's label, or None when Big was not asked or did not answer."""
    fallback: bool
    """Big was asked but gave no usable answer, so Little's label stood."""
    fallback_reason: str | None
    """Why (one of :data:`kws.rest.client.FAILURE_REASONS`), for a fallback."""
    little_ms: float
    end_to_end_ms: float
    body_bytes: int
    wire_bytes: int
    payload: str | None
    """What was sent to Big ("pcm" or "features"), None when nothing was."""
    pack_bytes: int = 0
    """The SenML pack's size before compression (``body_bytes`` is what was sent)."""
    content_encoding: str | None = None
    """How the body was coded ("deflate" or "identity"), None when nothing was sent."""

    @property
    def asked_big(self) -> bool:
        return self.big is not None or self.fallback

    @property
    def prediction(self) -> str:
        return self.big if self.big is not None else self.little


def classify_clip(clip: Clip, little: KeywordModel, big: BigClient, threshold: float) -> ClipOutcome:
    """Little first; Big when Little's margin is below ``threshold`` and Big can answer."""
    samples = read_clip(clip.path)
    started = time.perf_counter()
    probabilities = little.predict_audio(samples)
    little_seconds = time.perf_counter() - started
    margin = float(rule.score_margin(probabilities))
    answer: BigAnswer | None = None
    fallback_reason = None
    if rule.asks_big(margin, threshold):
        try:
            answer = big.predict(samples)
        except BigError as error:  # down, refusing, slow or talking nonsense: Little's answer stands
            fallback_reason = error.reason
    return ClipOutcome(
        clip=clip.key,
        label=clip.label,
        little=little.labels[int(np.argmax(probabilities))],
        margin=round(margin, 6),
        big=answer.label if answer else None,
        fallback=fallback_reason is not None,
        fallback_reason=fallback_reason,
        little_ms=little_seconds * 1000.0,
        end_to_end_ms=(time.perf_counter() - started) * 1000.0,
        body_bytes=answer.body_bytes if answer else 0,
        wire_bytes=answer.wire_bytes if answer else 0,
        payload=answer.payload if answer else None,
        pack_bytes=answer.pack_bytes if answer else 0,
        content_encoding=answer.content_encoding if answer else None,
    )


def run_cascade(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, threshold: float, progress: bool = True,
    skipped: list[dict[str, str]] | None = None,
) -> list[ClipOutcome]:
    """Classify every clip; a Big outage or a bad answer only turns requests into fallbacks.

    A file that cannot be used (:class:`~kws.audio.AudioError`: another rate, empty, longer than a
    clip) costs its own clip only: it is logged and added to ``skipped`` with its reason. Ctrl-C
    stops the run after the clip in hand and returns the outcomes so far, so no classified clip
    is thrown away.
    """
    big.expect_labels(little.labels)
    outcomes: list[ClipOutcome] = []
    asked = fallbacks = 0
    with tqdm(clips, desc="cascade", unit="clip", disable=not progress) as bar:
        try:
            for clip in bar:
                try:
                    outcome = classify_clip(clip, little, big, threshold)
                except AudioError as error:
                    log.warning("skipped: %s", error)
                    if skipped is not None:
                        skipped.append({"clip": clip.key, "reason": str(error)})
                    continue
                outcomes.append(outcome)
                asked += outcome.asked_big
                fallbacks += outcome.fallback
                bar.set_postfix(big=asked, fallbacks=fallbacks, refresh=False)
        except KeyboardInterrupt:
            log.warning("interrupted after %d of %d clips: reporting those", len(outcomes), len(clips))
    if fallbacks:
        reasons = ", ".join(f"{reason} {count}" for reason, count in fallback_reasons(outcomes).items())
        # The outage itself was a warning when it began; this is the tally (the report has it too).
        log.info("%d of %d Big requests fell back to Little's answer (%s)", fallbacks, asked, reasons)
    return outcomes


def fallback_reasons(outcomes: Sequence[ClipOutcome]) -> dict[str, int]:
    """How many fallbacks had each reason, most frequent first."""
    return dict(Counter(o.fallback_reason for o in outcomes if o.fallback_reason).most_common())


def summarize(outcomes: Sequence[ClipOutcome], threshold: float) -> dict[str, Any]:
    """The run's report.

    ``accuracy`` is the cascade's and ``little_accuracy`` Little's alone, both over
    the ``labelled`` clips only (None when no clip has a label). ``big_requests``
    counts the clips sent to Big (margin below ``threshold``), answered or not;
    ``fallbacks`` those Big could not answer, where Little's label stood, and
    ``fallback_reasons`` counts them by reason (``timeout``, ``circuit_open``,
    ``bad_scores``, ...: see :data:`kws.rest.client.FAILURE_REASONS`).
    ``communication_bytes`` sums the request bodies Big answered, as sent (the SenML
    packs, deflated where the service takes it: ``pack_bytes`` is their size before),
    split by payload in ``bytes_by_payload``; ``wire_bytes`` adds the HTTP heads
    both ways and the response bodies, measured per exchange by
    :func:`kws.rest.client.exchange_bytes`. ``mb_per_800_clips`` scales
    ``communication_bytes`` to 800 clips (1 MB = 10^6 bytes). Latencies:
    ``little_*`` is Little's features and inference, ``end_to_end_median`` the
    whole decision including any Big round trip; WAV reading is in neither.
    """
    samples = len(outcomes)
    labelled = [o for o in outcomes if o.label is not None]
    little_ms = np.array([o.little_ms for o in outcomes])
    communication = sum(o.body_bytes for o in outcomes)
    big_requests = sum(o.asked_big for o in outcomes)
    by_payload: dict[str, int] = {}
    for outcome in outcomes:
        if outcome.payload is not None:
            by_payload[outcome.payload] = by_payload.get(outcome.payload, 0) + outcome.body_bytes
    return {
        "samples": samples,
        "labelled": len(labelled),
        "threshold": threshold,
        "accuracy": _mean(o.prediction == o.label for o in labelled) if labelled else None,
        "little_accuracy": _mean(o.little == o.label for o in labelled) if labelled else None,
        "predictions": dict(sorted(Counter(o.prediction for o in outcomes).items())),
        "big_requests": big_requests,
        "big_fraction": round(big_requests / samples, 6) if samples else 0.0,
        "fallbacks": sum(o.fallback for o in outcomes),
        "fallback_reasons": fallback_reasons(outcomes),
        "communication_bytes": communication,
        "bytes_by_payload": by_payload,
        "pack_bytes": sum(o.pack_bytes for o in outcomes),
        "wire_bytes": sum(o.wire_bytes for o in outcomes),
        "mb_per_800_clips": round(communication / max(samples, 1) * rule.COST_CLIPS / rule.MEGABYTE, 4),
        "latency_ms": {
            "little_median": _round(np.median(little_ms)) if samples else None,
            "little_p95": _round(np.percentile(little_ms, 95)) if samples else None,
            "end_to_end_median": _round(np.median([o.end_to_end_ms for o in outcomes])) if samples else None,
        },
        "clips": [
            {**asdict(o), "little_ms": _round(o.little_ms), "end_to_end_ms": _round(o.end_to_end_ms)} for o in outcomes
        ],
    }


def _mean(flags: Any) -> float:
    values = list(flags)
    return round(sum(values) / len(values), 6) if values else 0.0


def _round(value: float) -> float:
    return round(float(value), 3)


class IncompatibleModels(KwsError):
    """Big and Little were trained for different label sets, so Big's answers cannot stand in for Little's."""

    summary = "serves a model for other words than Little"


class NoThreshold(KwsError):
    """The Little model ships no cascade threshold, and none was given."""


def shipped_cascade(little: KeywordModel) -> dict[str, Any] | None:
    """The ``cascade`` section of the Little model's metadata (written at export), if it has one."""
    section = little.metadata.raw.get("cascade")
    return section if isinstance(section, dict) and isinstance(section.get("threshold"), (int, float)) else None


def big_identity(big_metadata: dict[str, Any]) -> dict[str, str]:
    """Name and sha256 of a Big model's .tflite, from its metadata (what the service's GET /model returns)."""
    sha256 = big_metadata.get("sha256")
    tflite_sha256 = sha256.get("tflite") if isinstance(sha256, dict) else sha256
    return {"name": str(big_metadata.get("name")), "sha256": str(tflite_sha256)}


def check_big(little: KeywordModel, big: BigClient) -> dict[str, Any] | None:
    """Big's name and sha256, after checking it knows Little's labels and agreeing on a payload;
    None when Big is down (its answers then fall back to Little's, clip by clip).

    Metadata that is not a model's (BigBadAnswer) is raised: the URL names something else.
    """
    big.expect_labels(little.labels)
    try:
        info = big.negotiate()
    except BigUnavailable:
        return None
    if keywords_of(info["labels"]) != keywords_of(little.labels):  # _silence_ and _unknown_ may differ
        raise IncompatibleModels(f"Big knows keywords {sorted(keywords_of(info['labels']))}, "
                                 f"Little {sorted(keywords_of(little.labels))}")
    identity = big_identity(info)
    calibrated_with = (shipped_cascade(little) or {}).get("big_model")
    if calibrated_with and calibrated_with != identity:
        log.warning(
            "the service's Big model (%s, sha256 %s…) is not the one Little's threshold was calibrated with "
            "(%s, sha256 %s…): the shipped threshold may ask Big too often or too rarely; "
            "recalibrate on labelled clips: python calibrate.py cascade --data-dir DIR",
            identity["name"], identity["sha256"][:12], calibrated_with.get("name"),
            str(calibrated_with.get("sha256"))[:12],
        )
    return {**identity, "payload": big.payload, "content_encoding": big.content_encoding,
            "calibrated_with": calibrated_with == identity}


def session_header(little: KeywordModel, big: BigClient) -> dict[str, Any]:
    """Where every report on Little and the service's Big starts: the service and both models, Big checked
    by :func:`check_big`; ``calibration`` says where the threshold came from, once it is chosen."""
    return {
        "service": big.service_url,
        "little_model": model_record(little),
        "big_model": check_big(little, big),
        "calibration": None,
    }


def model_record(model: KeywordModel) -> dict[str, str]:
    """A loaded model as reports name it: its name, sha256 and the file loaded."""
    return {"name": model.name, "sha256": model.sha256, "file": str(model.source)}


def given_or_shipped(little: KeywordModel, given: float | None) -> tuple[float | None, dict[str, Any] | None]:
    """The threshold a run applies and the report's ``calibration`` entry: ``given`` (no entry), else the
    one shipped in the Little model's metadata; (None, None) when there is neither."""
    shipped = shipped_cascade(little)
    if given is not None or shipped is None:
        return given, None
    return float(shipped["threshold"]), {"shipped": True, **shipped}


@dataclass(frozen=True)
class SessionSettings:
    """How a Little client session chooses its threshold."""

    threshold: float | None = None
    """A fixed threshold; None takes the one shipped in the Little model's metadata."""
    progress: bool = True


def run_session(
    clips: Sequence[Clip], little: KeywordModel, big: BigClient, settings: SessionSettings
) -> dict[str, Any]:
    """A whole Little client session: check Big, choose the threshold, run the cascade over ``clips``, and
    return the report. Raises NoThreshold, IncompatibleModels, BigRejected or BigBadAnswer (a service
    that refuses to say which model it serves, or says it wrongly)."""
    report = session_header(little, big)
    threshold, report["calibration"] = given_or_shipped(little, settings.threshold)
    if threshold is None:
        raise NoThreshold(f"{little.source}: its metadata has no cascade threshold; pass --threshold T, or "
                          "calibrate one: python calibrate.py cascade --help")
    report["mode"] = "cascade"
    skipped: list[dict[str, str]] = []
    outcomes = run_cascade(clips, little, big, threshold, settings.progress, skipped)
    report.update(summarize(outcomes, threshold))
    report["skipped"] = skipped
    report["interrupted"] = len(outcomes) + len(skipped) < len(clips)
    return report


def format_run_summary(report: dict[str, Any]) -> str:
    """One line a human reads after a run; the JSON report has everything."""
    megabytes = report["communication_bytes"] / rule.MEGABYTE
    if report["accuracy"] is None:
        quality = f"{report['samples']} unlabelled clips: {report['predictions']}"
    else:
        quality = (f"accuracy {report['accuracy']:.4f} (Little alone {report['little_accuracy']:.4f}) "
                   f"on {report['labelled']} labelled of {report['samples']} clips")
    payloads = [f"{name} {size / rule.MEGABYTE:.3f} MB" for name, size in report["bytes_by_payload"].items()]
    if report["pack_bytes"] != report["communication_bytes"]:
        payloads.append(f"deflated from {report['pack_bytes'] / rule.MEGABYTE:.3f} MB")
    sent = ", ".join(payloads)
    reasons = ", ".join(f"{reason} {count}" for reason, count in report.get("fallback_reasons", {}).items())
    return (
        f"{quality}; threshold {report['threshold']:.4f}; Big asked {report['big_requests']} times "
        f"({100 * report['big_fraction']:.1f}%), {report['fallbacks']} fallbacks{f' ({reasons})' if reasons else ''}; "
        f"{megabytes:.3f} MB sent{f' ({sent})' if sent else ''}, "
        f"{report['mb_per_800_clips']:.3f} MB per 800 clips"
        + (f"; {len(report['skipped'])} files skipped (reasons in the report)" if report.get("skipped") else "")
        + ("; interrupted: the clips classified until Ctrl-C" if report.get("interrupted") else "")
    )
