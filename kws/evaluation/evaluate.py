"""A model on labelled clips: accuracy, per-label accuracy, confusion, size and latency.

Runs wherever the model runs (the Pi, a laptop, CI) with the runtime requirements
alone: TensorFlow is never imported, so the figures are those of the code that
ships. Preprocessing and inference are timed separately for every clip; WAV
decoding is file I/O and is left out of both.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kws.audio import read_clip
from kws.data.clips import Clip
from kws.evaluation import metrics
from kws.model.runtime import KeywordModel
from kws.reports import format_table


@dataclass
class Evaluation:
    """What running a model over a list of clips gave: predictions and timings per clip."""

    labels: tuple[str, ...]
    true_labels: list[int] = field(default_factory=list)
    predicted_labels: list[int] = field(default_factory=list)
    preprocess_s: list[float] = field(default_factory=list)
    inference_s: list[float] = field(default_factory=list)

    @property
    def confusion_matrix(self) -> np.ndarray:
        return metrics.confusion_matrix(self.true_labels, self.predicted_labels, len(self.labels))

    @property
    def accuracy(self) -> float:
        return metrics.accuracy(self.confusion_matrix)


def evaluate_model(model: KeywordModel, clips: Sequence[Clip], progress: bool = True) -> Evaluation:
    """Classify every clip, timing its preprocessing and its inference apart."""
    evaluation = Evaluation(model.labels)
    label_index = {label: index for index, label in enumerate(model.labels)}
    for clip in tqdm(clips, desc=f"evaluating {model.name}", unit="clip", disable=not progress):
        audio = read_clip(clip.path)
        started = time.perf_counter()
        features = model.features(audio)
        featurised = time.perf_counter()
        probabilities = model.predict_features(features)
        finished = time.perf_counter()
        evaluation.true_labels.append(label_index[clip.label])
        evaluation.predicted_labels.append(int(np.argmax(probabilities)))
        evaluation.preprocess_s.append(featurised - started)
        evaluation.inference_s.append(finished - featurised)
    return evaluation


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
        "accuracy": metrics.accuracy(matrix),
        "per_class": metrics.per_class_accuracy(matrix, model.labels),
        "labels": list(model.labels),
        "confusion_matrix": matrix.tolist(),
        "model_bytes": model.size_bytes,
        "latency_ms": {
            "preprocess": metrics.median_ms(evaluation.preprocess_s),
            "inference": metrics.median_ms(evaluation.inference_s),
        },
    }


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
        f"split        {report['split']} of {report['data_dir']}: {report['samples']} clips",
        f"accuracy     {report['accuracy']:.4f}",
        f"model size   {report['model_bytes']} bytes ({report['model']['tflite_bytes']} as loaded)",
        (f"latency      median per clip: preprocessing {latency['preprocess']:.3f} ms, "
         f"inference {latency['inference']:.3f} ms"),
        "",
        per_class,
        "",
        "confusion matrix (rows: true label, columns: prediction)",
        confusion,
    ])
