"""Robustness: every shipped model, and the cascade, under the changes a Pi's clips go through.

The test split is clean studio-ish speech; a Pi hears its own cheap microphone in a real
room. This measures each model in ``models/`` on the test split under each everyday
change of :mod:`kws.training.changes` (speed, pitch, rooms of three sizes, microphone
band limits, recorded background noise at 20/10/0 dB SNR, a quieter talker, clipping,
a DC offset), and the Big/Little cascade offline from Little's and Big's predictions on
the same changed clips (no HTTP): once with its shipped threshold (``models/little.json``'s
``cascade`` section, else ``--threshold``), once with a threshold calibrated on
*validation* clips under the same changes (never on test)::

    python -m bench.bench_robustness --data-dir ../shared/data/speech_commands \\
        --other-dir ../shared/data/speech_commands_other

It prints a table, writes JSON (``--report``) and a PNG of accuracy per change and model
(``--plot``). Needs the training requirements (audiomentations, pyroomacoustics).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.cascade.rule import score_margin
from kws.data.clips import DatasetError, load_audio, resolve_data_dir, sample_clips, select_clips
from kws.model.installed import SERVICE_MODEL
from kws.model.runtime import KeywordModel, load_model
from kws.reports import format_table, write_json_report
from kws.training.changes import CHANGE_NAMES, CHANGES, ChangeContext, apply_change
from kws.training.non_keywords import noise_dir_of
from kws.tuning.cascade_replay import DEFAULT_ALPHA, PairedPredictions, label_index
from kws.util.logs import setup_logging
from kws.wire.audio_pack import encode_audio_pack

log = logging.getLogger("bench_robustness")


def model_predictions(models: Sequence[KeywordModel], audio: np.ndarray) -> dict[str, np.ndarray]:
    """Each model's probabilities for every clip (int16); a model's input is made once per FeatureConfig, or
    once per front end for heads on the pretrained front end (its embeddings)."""
    inputs: dict[Any, np.ndarray] = {}
    out = {}
    for model in models:
        key = model.metadata.front_end or model.feature_config
        if key not in inputs:  # model.features is the front end's embeddings or compute_features(clip, config)
            inputs[key] = np.stack([model.features(clip) for clip in audio])
        out[model.name] = np.stack([model.predict_features(row) for row in inputs[key]])
    return out


def paired(little: KeywordModel, big: KeywordModel, probabilities: dict[str, np.ndarray], truth: Sequence[str],
           request_bytes: np.ndarray) -> PairedPredictions:
    """Little's and Big's answers as :class:`PairedPredictions`, every label an index into Little's labels."""
    def indices(model: KeywordModel) -> np.ndarray:
        names = [model.labels[i] for i in probabilities[model.name].argmax(axis=1)]
        return np.array([label_index(little, name) for name in names])

    return PairedPredictions(
        true_labels=np.array([little.labels.index(label) for label in truth]),
        margins=score_margin(probabilities[little.name]),
        little=indices(little),
        big=indices(big),
        request_bytes=request_bytes,
    )


def measure(models: Sequence[KeywordModel], clips_audio: np.ndarray, truth: Sequence[str], context: ChangeContext,
            changes: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """Every model's probabilities on the clips under each change."""
    chosen = [change for change in CHANGES if change.name in changes]
    results = {}
    for change in chosen:
        log.info("%s: %d clips", change.name, len(clips_audio))
        results[change.name] = model_predictions(models, apply_change(change, clips_audio, context))
    return results


def accuracy(model: KeywordModel, probabilities: np.ndarray, truth: Sequence[str]) -> float:
    predicted = [model.labels[i] for i in probabilities.argmax(axis=1)]
    return float(np.mean([p == t for p, t in zip(predicted, truth)]))


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", type=Path, help="Speech Commands folder (default: the one rule of every tool)")
    parser.add_argument("--other-dir", type=Path, help="speech_commands_other, for its noise recordings "
                        "(default: beside --data-dir)")
    parser.add_argument("--models-dir", type=Path, default=Path("models"), help="default: %(default)s")
    parser.add_argument("--little", default="little", help="the cascade's Little model, by name (default: little)")
    parser.add_argument("--big", default=SERVICE_MODEL, help="the cascade's Big model, by name (default: %(default)s)")
    parser.add_argument("--threshold", type=float, help="the cascade's threshold when little.json has no 'cascade'")
    parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA,
                        help="level of the shipped rule, applied to changed validation clips (default: %(default)s)")
    parser.add_argument("--changes", nargs="+", choices=CHANGE_NAMES, default=list(CHANGE_NAMES), metavar="NAME",
                        help="changes to measure (default: all): " + ", ".join(CHANGE_NAMES).replace("%", "%%"))
    parser.add_argument("--split", choices=("test", "validation"), default="test",
                        help="split measured (default: %(default)s; validation to choose between models)")
    parser.add_argument("--clips-per-label", type=int, metavar="N", help="at most N clips per label (quick runs)")
    parser.add_argument("--report", type=Path, default=Path("reports/robustness.json"), help="default: %(default)s")
    parser.add_argument("--plot", type=Path, default=Path("reports/robustness.png"), help="default: %(default)s")
    args = parser.parse_args(argv)
    if not 0 < args.alpha < 1:
        parser.error("--alpha must lie in (0, 1)")
    return parser, args


def load_clips(data_dir: Path, split: str, labels: Sequence[str], per_label: int | None):
    clips = select_clips(data_dir, split, labels)
    if per_label:
        clips = sample_clips(clips, per_label)
    return load_audio(clips, progress=False), [clip.label for clip in clips]


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    setup_logging(logging.INFO)
    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    other_dir = args.other_dir or data_dir.parent / "speech_commands_other"
    noise_dir = noise_dir_of(other_dir)
    if any(name.startswith("noise") for name in args.changes) and not noise_dir.is_dir():
        parser.error(f"--other-dir: no noise recordings at {noise_dir}")
    paths = sorted(args.models_dir.glob("*.json"))
    if not paths:
        parser.error(f"--models-dir {args.models_dir} holds no models")
    models = [load_model(path) for path in paths]
    by_name = {model.name: model for model in models}
    for flag, name in (("--little", args.little), ("--big", args.big)):
        if name not in by_name:
            parser.error(f"{flag} {name!r} is not among the models in {args.models_dir}")
    little, big = by_name[args.little], by_name[args.big]
    shipped = little.metadata.raw.get("cascade", {}).get("threshold", args.threshold)

    keywords = [label for label in little.labels if not label.startswith("_")]
    test_audio, test_truth = load_clips(data_dir, args.split, keywords, args.clips_per_label)
    val_audio, val_truth = load_clips(data_dir, "validation", keywords, args.clips_per_label)
    sizes = np.array([len(encode_audio_pack(clip, device="bench").encode()) for clip in test_audio])
    val_sizes = np.array([len(encode_audio_pack(clip, device="bench").encode()) for clip in val_audio])
    noise = noise_dir if noise_dir.is_dir() else None
    test = measure(models, test_audio, test_truth, ChangeContext.for_split(noise, args.split), args.changes)
    validation = measure([little, big], val_audio, val_truth, ChangeContext.for_split(noise, "validation"),
                         args.changes)

    pooled = [paired(little, big, validation[name], val_truth, val_sizes) for name in args.changes]
    calibration = PairedPredictions(*(np.concatenate([getattr(p, f) for p in pooled]) for f in
                                      ("true_labels", "margins", "little", "big", "request_bytes")))
    calibrated = calibration.calibrate(args.alpha)  # the shipped rule, on clips that carry the changes
    log.info("threshold %.4f calibrated on %d changed validation clips", calibrated.threshold, calibration.samples)

    rows = []
    for name in args.changes:
        row: dict[str, Any] = {"change": name}
        for model in models:
            row[model.name] = round(accuracy(model, test[name][model.name], test_truth), 4)
        pair = paired(little, big, test[name], test_truth, sizes)
        for key, threshold in (("cascade_shipped", shipped), ("cascade_calibrated", calibrated.threshold)):
            if threshold is not None:
                outcome = pair.evaluate(threshold)
                row[key] = round(outcome.accuracy, 4)
                row[f"{key}_big_fraction"] = round(outcome.big_fraction, 4)
        rows.append(row)
    columns = [m.name for m in models] + [c for c in ("cascade_shipped", "cascade_shipped_big_fraction",
                                                      "cascade_calibrated", "cascade_calibrated_big_fraction")
                                          if c in rows[0]]
    print(format_table(["change", *columns], [[row["change"], *(row.get(c) for c in columns)] for row in rows]))
    clean = next((row for row in rows if row["change"] == "none"), None)
    report = {
        "data_dir": str(data_dir), "test_clips": len(test_truth), "validation_clips": len(val_truth),
        "models": {m.name: {"labels": list(m.labels), "sha256": m.sha256} for m in models},
        "cascade": {"little": little.name, "big": big.name, "shipped_threshold": shipped,
                    "calibrated": calibrated.to_dict(), "alpha": args.alpha},
        "rows": rows,
        "drop_from_clean": ({row["change"]: {c: round(clean[c] - row[c], 4) for c in columns if "fraction" not in c}
                             for row in rows} if clean else None),
    }
    write_json_report(args.report, report)
    plot(rows, [c for c in columns if "fraction" not in c], args.plot)
    print(f"report written to {args.report}, plot to {args.plot}")
    return 0


def plot(rows: Sequence[dict[str, Any]], columns: Sequence[str], path: Path) -> None:
    """Accuracy per change (x) and model (one line each), clean accuracy as the first point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(13, 5.5))
    positions = np.arange(len(rows))
    for column in columns:
        axis.plot(positions, [row[column] for row in rows], marker="o", label=column,
                  linewidth=2.5 if column.startswith(("little", "big", "cascade")) else 1.0)
    axis.set_xticks(positions, [row["change"] for row in rows], rotation=40, ha="right")
    axis.set_ylabel("accuracy on the test split")
    axis.set_ylim(max(0.0, min(min(row[c] for c in columns) for row in rows) - 0.05), 1.0)
    axis.grid(alpha=0.3)
    axis.legend(fontsize=8, ncol=2)
    axis.set_title("Keyword accuracy under everyday changes (unseen speakers)")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


if __name__ == "__main__":
    sys.exit(main())
