"""A model on labelled clips: accuracy, per-label accuracy, confusion, size, latency, and each clip's answer.

A model that knows ``_silence_`` and ``_unknown_`` is also judged on what it must
refuse: in a folder with ``_unknown_/`` (other words) and ``_silence_/`` (noise)
beside the keyword folders, the report's ``rejection`` says how many of those clips
came out as either, and how many keyword clips were wrongly refused.

Runs wherever the model runs (the Pi, a laptop, CI) with the runtime requirements
alone: TensorFlow is never imported, so the figures are those of the code that
ships. Preprocessing and inference are timed separately for every clip; WAV
decoding is file I/O and is left out of both.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kws.audio import AudioError, read_clip
from kws.data.clips import Clip, is_keyword
from kws.evaluation import metrics
from kws.model.runtime import KeywordModel
from kws.reports import format_table

log = logging.getLogger(__name__)


@dataclass
class Evaluation:
    """What running a model over a list of clips gave: predictions and timings per clip."""

    labels: tuple[str, ...]
    clips: list[str] = field(default_factory=list)
    """Each clip's key (``label/name.ext``), in the order classified."""
    true_labels: list[int] = field(default_factory=list)
    predicted_labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    """The predicted label's probability, per clip."""
    skipped: list[dict[str, str]] = field(default_factory=list)
    """Files that could not be used: ``{"clip": key, "reason": message}``."""
    interrupted: bool = False
    """Ctrl-C ended the run early: the figures are those of the clips classified until then."""
    preprocess_s: list[float] = field(default_factory=list)
    inference_s: list[float] = field(default_factory=list)

    @property
    def confusion_matrix(self) -> np.ndarray:
        return metrics.confusion_matrix(self.true_labels, self.predicted_labels, len(self.labels))

    @property
    def accuracy(self) -> float:
        return metrics.accuracy(self.confusion_matrix)


def evaluate_model(
    model: KeywordModel, clips: Sequence[Clip], progress: bool = True, strict: bool = False
) -> Evaluation:
    """Classify every clip, timing its preprocessing and its inference apart.

    A file that cannot be used (:class:`~kws.audio.AudioError`) is skipped and noted in
    ``skipped``, or raised with ``strict``. Ctrl-C stops the run and keeps what was measured
    (``interrupted``), so an hour of evaluation is never thrown away for the last clip.
    """
    evaluation = Evaluation(model.labels)
    label_index = {label: index for index, label in enumerate(model.labels)}
    try:
        for clip in tqdm(clips, desc=f"evaluating {model.name}", unit="clip", disable=not progress):
            _evaluate_clip(model, clip, evaluation, label_index, strict)
    except KeyboardInterrupt:
        evaluation.interrupted = True
        log.warning("interrupted after %d of %d clips: reporting those", len(evaluation.true_labels), len(clips))
    return evaluation


def _evaluate_clip(
    model: KeywordModel, clip: Clip, evaluation: Evaluation, label_index: dict[str, int], strict: bool
) -> None:
    try:
        audio = read_clip(clip.path)
    except AudioError as error:
        if strict:
            raise
        log.warning("skipped: %s", error)
        evaluation.skipped.append({"clip": clip.key, "reason": str(error)})
        return
    started = time.perf_counter()
    features = model.features(audio)
    featurised = time.perf_counter()
    probabilities = model.predict_features(features)
    finished = time.perf_counter()
    evaluation.clips.append(clip.key)
    evaluation.true_labels.append(label_index[clip.label])
    evaluation.predicted_labels.append(int(np.argmax(probabilities)))
    evaluation.scores.append(round(float(np.max(probabilities)), 4))
    evaluation.preprocess_s.append(featurised - started)
    evaluation.inference_s.append(finished - featurised)


def build_report(model: KeywordModel, evaluation: Evaluation, split: str, data_dir: Path) -> dict[str, Any]:
    """The JSON report: the figures, and enough provenance to reproduce them."""
    matrix = evaluation.confusion_matrix
    return {
        "model": {
            "name": model.name,
            "file": str(model.source),
            "sha256": model.sha256,
            "tflite_bytes": len(model.model_bytes),
        },
        "interpreter": model.interpreter_name,
        "split": split,
        "data_dir": str(data_dir),
        "samples": int(matrix.sum()),
        "interrupted": evaluation.interrupted,
        "skipped": evaluation.skipped,
        "accuracy": metrics.accuracy(matrix),
        "per_class": metrics.per_class_accuracy(matrix, model.labels),
        "labels": list(model.labels),
        "confusion_matrix": matrix.tolist(),
        "model_bytes": model.size_bytes,
        "latency_ms": {
            "preprocess": metrics.median_ms(evaluation.preprocess_s),
            "inference": metrics.median_ms(evaluation.inference_s),
        },
        **({"rejection": rejection} if (rejection := rejection_figures(evaluation)) else {}),
        "predictions": [
            {"clip": key, "label": evaluation.labels[true], "predicted": evaluation.labels[predicted], "score": score}
            for key, true, predicted, score in zip(
                evaluation.clips, evaluation.true_labels, evaluation.predicted_labels, evaluation.scores
            )
        ],
    }


def rejection_figures(evaluation: Evaluation) -> dict[str, Any] | None:
    """For a model with non-keyword labels, on clips that include some: what it refused, right and wrong.

    ``non_keywords_rejected``: the share of ``_silence_``/``_unknown_`` clips that came out as
    any non-keyword label (which of the two does not matter to a listener); ``keyword_accuracy``
    and ``keywords_rejected``: the keyword clips alone, and the share of them refused. None when
    the model knows no non-keyword label or no such clip was evaluated.
    """
    refusing = np.array([not is_keyword(label) for label in evaluation.labels])
    if not refusing.any():
        return None
    true = np.asarray(evaluation.true_labels, dtype=np.int64)
    predicted = np.asarray(evaluation.predicted_labels, dtype=np.int64)
    non_keyword, refused = refusing[true], refusing[predicted]
    if not non_keyword.any():
        return None
    keyword = ~non_keyword
    return {
        "non_keyword_clips": int(non_keyword.sum()),
        "non_keywords_rejected": float(refused[non_keyword].mean()),
        "keyword_clips": int(keyword.sum()),
        "keyword_accuracy": float((true == predicted)[keyword].mean()) if keyword.any() else None,
        "keywords_rejected": float(refused[keyword].mean()) if keyword.any() else None,
    }


def format_rejection(rejection: dict[str, Any] | None) -> list[str]:
    """The summary's lines on what a ten-label model refused (none for a keyword-only evaluation)."""
    if not rejection:
        return []
    lines = [f"rejected     {rejection['non_keywords_rejected']:.4f} of {rejection['non_keyword_clips']} "
             "non-keyword clips (_silence_, _unknown_)"]
    if rejection["keyword_clips"]:
        lines.append(f"keywords     accuracy {rejection['keyword_accuracy']:.4f} on {rejection['keyword_clips']} "
                     f"keyword clips, {rejection['keywords_rejected']:.4f} of them wrongly rejected")
    return lines


def format_summary(report: dict[str, Any]) -> str:
    """The report as a person reads it: headline figures, per-class table, confusion matrix."""
    labels = report["labels"]
    support = [sum(row) for row in report["confusion_matrix"]]
    per_class = format_table(
        ["label", "clips", "accuracy"],
        [[label, support[i], report["per_class"][label]] for i, label in enumerate(labels)],
    )
    confusion = format_table(
        ["true \\ predicted", *labels],
        [[label, *row] for label, row in zip(labels, report["confusion_matrix"])],
    )
    latency = report["latency_ms"]
    return "\n".join([
        f"model        {report['model']['name']} ({report['model']['file']}, sha256 {report['model']['sha256'][:12]})",
        f"interpreter  {report['interpreter']}",
        f"split        {report['split']} of {report['data_dir']}: {report['samples']} clips"
        + (f", {len(report['skipped'])} files skipped (their reasons are in the report)" if report["skipped"] else "")
        + (" (interrupted: the clips classified until Ctrl-C)" if report["interrupted"] else ""),
        f"accuracy     {report['accuracy']:.4f}",
        f"model size   {report['model_bytes']} bytes ({report['model']['tflite_bytes']} as loaded)",
        (f"latency      median per clip: preprocessing {latency['preprocess']:.3f} ms, "
         f"inference {latency['inference']:.3f} ms"),
        *format_rejection(report.get("rejection")),
        "",
        per_class,
        "",
        "confusion matrix (rows: true label, columns: prediction)",
        confusion,
    ])
