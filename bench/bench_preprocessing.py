"""Time feature extraction per clip: numpy (what ships) against tf.signal (what TensorFlow pipelines use).

The same real clips go through :mod:`kws.features` and :mod:`kws.training.tf_reference`
for the default FeatureConfig and each one a shipped model uses, one clip at a
time (as the Pi and the services work) and as one batch (as training works).
TensorFlow runs eagerly and as a traced ``tf.function``. Times start from audio
already at the config's rate and length, since tf.signal has no resampler, and
include turning TensorFlow's result into a numpy array, as a caller must.

    python -m bench.bench_preprocessing --data-dir ../shared/data/speech_commands
"""

# ruff: noqa: E402 - imports follow a sys.path line on purpose
from __future__ import annotations

import os

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: with one TensorFlow thread below: a fair single-core comparison

import argparse
import logging
import platform
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from kws.audio import SAMPLE_RATE
from kws.data import clips as dataset
from kws.evaluation import metrics
from kws.features import (
    FeatureConfig,
    features_from_prepared,
    prepare_audio,
)
from kws.model.metadata import ModelMetadata
from kws.reports import format_table, write_json_report
from kws.util.logs import setup_logging

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("bench_preprocessing")

Extractor = Callable[[np.ndarray], np.ndarray]


def configs_to_bench(models_dir: Path) -> dict[FeatureConfig, list[str]]:
    """Each distinct FeatureConfig, with the names using it: 'default' and the shipped models."""
    users: dict[FeatureConfig, list[str]] = {FeatureConfig(): ["default"]}
    for metadata_path in sorted(models_dir.glob("*.json")):
        config = ModelMetadata.read(metadata_path).feature_config
        if config is not None:  # a head on the pretrained front end: bench_front_end measures its mel
            users.setdefault(config, []).append(metadata_path.stem)
    return users


def extractors(config: FeatureConfig) -> dict[str, Extractor]:
    """The implementations to time, each taking prepared audio and returning a numpy array."""
    import tensorflow as tf

    from kws.training import tf_reference

    compiled = tf_reference.compiled_features(config)
    return {
        "numpy": lambda audio: features_from_prepared(audio, config),
        "tf_eager": lambda audio: tf_reference.features(audio, config).numpy(),
        "tf_function": lambda audio: compiled(tf.constant(audio)).numpy(),
    }


def time_calls(extract: Extractor, inputs: Sequence[np.ndarray]) -> list[float]:
    """Seconds each call took; one untimed call first (tracing, caches, first-touch pages)."""
    extract(inputs[0])
    durations = []
    for audio in inputs:
        started = time.perf_counter()
        extract(audio)
        durations.append(time.perf_counter() - started)
    return durations


def bench_config(config: FeatureConfig, audio: np.ndarray, repeats: int) -> dict[str, dict[str, float]]:
    """Median milliseconds per clip of every extractor, single-clip and batched."""
    prepared = np.stack([prepare_audio(clip, SAMPLE_RATE, config) for clip in audio])
    single: dict[str, float] = {}
    batched: dict[str, float] = {}
    for name, extract in extractors(config).items():
        single[name] = metrics.median_ms(time_calls(extract, list(prepared)))
        batched[name] = metrics.median_ms(time_calls(extract, [prepared] * repeats)) / len(prepared)
    return {"single": single, "batched_per_clip": batched}


def ratios(times_ms: dict[str, float]) -> dict[str, float]:
    """How many times longer each TensorFlow variant takes than numpy."""
    return {name: value / times_ms["numpy"] for name, value in times_ms.items() if name != "numpy"}


def format_results(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        for mode in ("single", "batched_per_clip"):
            times = result[mode]
            rows.append([
                ", ".join(result["used_by"]), mode.replace("_per_clip", ""), times["numpy"], times["tf_eager"],
                times["tf_function"], result["ratios"][mode]["tf_eager"], result["ratios"][mode]["tf_function"],
            ])
    headers = ["config (used by)", "mode", "numpy ms", "tf eager ms", "tf.function ms", "eager/numpy", "function/numpy"]
    return format_table(headers, rows, float_digits=3)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="Speech Commands folder to take clips from (default: $KWS_DATA_DIR or ../shared)")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models", metavar="DIR",
                        help="folder of <name>.json metadata whose FeatureConfigs to bench (default: %(default)s)")
    parser.add_argument("--clips-per-label", type=int, default=8, metavar="N",
                        help="real clips of each label; the batch is all of them (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, metavar="N",
                        help="timed runs of the whole batch (default: %(default)s)")
    parser.add_argument("--tf-threads", type=int, default=1, metavar="N",
                        help="TensorFlow intra- and inter-op threads (default: %(default)s, like numpy here)")
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "bench_preprocessing.json",
                        metavar="FILE", help="JSON report (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    if args.clips_per_label < 1 or args.repeats < 1 or args.tf_threads < 1:
        parser.error("--clips-per-label, --repeats and --tf-threads must be at least 1")
    try:
        clips = dataset.sample_clips(dataset.list_clips(dataset.resolve_data_dir(args.data_dir)), args.clips_per_label)
    except dataset.DatasetError as error:
        parser.error(f"--data-dir: {error}")
    try:
        import tensorflow as tf

        from kws.training import tf_reference as tf_reference_features
    except ImportError:
        parser.exit(1, "error: this benchmark compares against TensorFlow: pip install tensorflow\n")
    tf_reference_features.limit_threads(args.tf_threads)
    audio = dataset.load_audio(clips)

    results = []
    for config, used_by in tqdm(configs_to_bench(args.models_dir).items(), desc="configs", unit="config"):
        times = bench_config(config, audio, args.repeats)
        results.append({
            "used_by": used_by, "feature_config": config.to_dict(), **times,
            "ratios": {mode: ratios(mode_times) for mode, mode_times in times.items()},
        })
    print(f"median ms per clip over {len(clips)} clips (batched: {args.repeats} runs of one {len(clips)}-clip batch)")
    print(format_results(results))
    write_json_report(args.report, {
        "environment": {
            "python": platform.python_version(), "numpy": np.__version__, "tensorflow": tf.__version__,
            "tf_threads": args.tf_threads, "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "cpus": os.cpu_count(), "machine": platform.machine(),
        },
        "clips": len(clips), "repeats": args.repeats, "results": results,
    })
    log.info("report written to %s", args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
