"""Measure a shipped keyword-spotting model on real clips: accuracy, confusion, size, latency.

Runs wherever the model runs (the Pi, a laptop, CI) with the runtime requirements
alone (numpy, a TFLite interpreter, tqdm): TensorFlow is never imported, so the
figures are those of the code that ships. Preprocessing and inference are timed
separately for every clip; WAV decoding is file I/O and is left out of both.

Examples::

    python evaluate.py --model models/little --data-dir data/mini_speech_commands
    python evaluate.py --model models/big.tflite --data-dir DIR --split all --report reports/big.json
    python evaluate.py --model models/little --data-dir DIR --split kws_test_split.txt
"""

from __future__ import annotations

import os

# One BLAS thread, set before numpy loads OpenBLAS. A clip's matrices are tiny and
# the Pi featurises one clip at a time; OpenBLAS's thread hand-off instead costs
# ~7 ms a clip (8x the work itself) whenever another process holds a core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

import dataset
import metrics
from kws_model import KeywordModel, ModelError, load_model
from reporting import format_table, write_json_report

log = logging.getLogger("evaluate")


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


def evaluate_model(model: KeywordModel, clips: Sequence[dataset.Clip], progress: bool = True) -> Evaluation:
    """Classify every clip, timing its preprocessing and its inference apart."""
    evaluation = Evaluation(model.labels)
    label_index = {label: index for index, label in enumerate(model.labels)}
    for clip in tqdm(clips, desc=f"evaluating {model.name}", unit="clip", disable=not progress):
        audio = dataset.read_wav(clip.path)
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


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--model", required=True, metavar="PATH",
        help="model stem (models/little) or one of its files (.json, .tflite, .tflite.zlib)",
    )
    parser.add_argument(
        "--prefer", choices=("zlib", "tflite"), default="zlib",
        help="for a stem, which file to load when the metadata lists both (default: %(default)s, what the Pi ships)",
    )
    parser.add_argument(
        "--data-dir", type=Path, default=dataset.DEFAULT_DATA_DIR, metavar="DIR",
        help="folder of <label>/<speaker>_nohash_<n>.wav clips (default: %(default)s)",
    )
    parser.add_argument(
        "--split", default="test",
        help="'train', 'validation', 'test' (speaker-disjoint hash split), 'all', "
        "or a split file of label/name.wav lines (default: %(default)s)",
    )
    parser.add_argument(
        "--clips-per-label", type=int, metavar="N",
        help="evaluate at most N clips of each label, spread over the split (quick checks)",
    )
    parser.add_argument("--report", type=Path, metavar="FILE", help="also write the figures to this JSON file")
    parser.add_argument("--quiet", action="store_true", help="no progress bar, warnings only")
    return parser, parser.parse_args(argv)


def check_data_flags(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Reject a missing --data-dir or an unknown --split before the model is loaded."""
    if not args.data_dir.is_dir():
        parser.error(f"--data-dir {args.data_dir} is not a folder (download one with 'python dataset.py download')")
    if args.split not in dataset.SPLIT_NAMES and not Path(args.split).is_file():
        parser.error(f"--split {args.split!r} is neither one of {', '.join(dataset.SPLIT_NAMES)} nor a split file")
    if args.clips_per_label is not None and args.clips_per_label < 1:
        parser.error("--clips-per-label must be at least 1")


def select_clips(
    parser: argparse.ArgumentParser, args: argparse.Namespace, labels: Sequence[str]
) -> list[dataset.Clip]:
    """The clips to evaluate, in the model's labels; any problem is a usage error naming its flag."""
    try:
        dataset.list_clips(args.data_dir, labels)
    except dataset.DatasetError as error:
        parser.error(f"--data-dir: {error}")
    try:
        clips = dataset.select_clips(args.data_dir, args.split, labels)
    except dataset.DatasetError as error:
        parser.error(f"--split: {error}")
    if not clips:
        parser.error(f"--split {args.split} holds no clips of {args.data_dir}")
    if args.clips_per_label is not None:
        clips = dataset.sample_clips(clips, args.clips_per_label)
    return clips


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO, format="%(levelname)s %(name)s: %(message)s"
    )
    check_data_flags(parser, args)
    try:
        model = load_model(args.model, prefer=args.prefer)
    except ModelError as error:
        parser.error(f"--model {args.model}: {error}")
    clips = select_clips(parser, args, model.labels)
    log.info("evaluating %s on %d clips (%s split of %s)", model.name, len(clips), args.split, args.data_dir)
    try:
        evaluation = evaluate_model(model, clips, progress=not args.quiet)
    except dataset.DatasetError as error:
        parser.exit(1, f"error: {error}\n")
    report = build_report(model, evaluation, args.split, args.data_dir)
    print(format_summary(report))
    if args.report:
        write_json_report(args.report, report)
        log.info("report written to %s", args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
