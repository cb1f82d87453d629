"""Time the pretrained front end per clip: the Pi's numpy mel and int8, the server's ONNX mel and embedding.

Real clips go through each step one clip at a time, as the Pi and the service work
(:mod:`kws.frontend`): the numpy mel and its int8 packing (the Pi), the ONNX mel graph and the
embedding graph on the clip's 9 windows (the server), and the embedding with the windows of
``--batch`` clips in one call (what a service that batches concurrent requests would pay per
clip). Medians per clip, and each step's share of its machine's work: the Pi's (numpy mel and
int8) and the server's from audio (ONNX mel and embedding); from the Pi's mel the server runs the
embedding alone. A Big whose TFLite file holds the embedding with its top tuned (``--model``, the
service's default) replaces the embedding graph: its row is that file run on one clip's windows, and
its share is of the server's work for that Big (ONNX mel and the file). numpy gets one BLAS thread,
onnxruntime ``--threads`` (1, as the service) and the TFLite interpreter one thread.

    python -m bench.bench_front_end --data-dir ../shared/data/speech_commands --clips 200
"""

# ruff: noqa: E402 - imports follow an environment line on purpose
from __future__ import annotations

import os

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: a single-core figure, and what a Pi client gets

import argparse
import importlib.metadata
import logging
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.bench_preprocessing import time_calls
from bench.common import add_report_arguments, finish, parse_bench_args
from kws.data import clips as dataset
from kws.evaluation import metrics
from kws.frontend.embedding import FrontEnd, mel_windows
from kws.frontend.mel import clip_log_mel
from kws.frontend.quantize import quantize_mel
from kws.frontend.spec import FrontEndError, FrontEndSpec
from kws.model.installed import SERVICE_MODEL
from kws.model.metadata import ModelError
from kws.model.runtime import KeywordModel, load_model
from kws.reports import format_table

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("bench_front_end")

#: (step, machine) in the table's order.
STEPS = (
    ("numpy mel", "pi"),
    ("int8 mel", "pi"),
    ("onnx mel", "server"),
    ("embedding (9 windows)", "server"),
    ("embedding, batched", "server (batched)"),
)
#: The step of a Big whose file holds the embedding (``embedding_in_model``), and the work it is a share of.
IN_MODEL_STEP = ("embedding + head in one TFLite file", "server (embedding in the model)")


def time_steps(front_end: FrontEnd, audio: Sequence[np.ndarray], batch: int,
               in_model: KeywordModel | None = None) -> dict[str, list[float]]:
    """Seconds each step took, per clip (the batched embedding: a batch's time over its clip count); with
    ``in_model``, a model whose file holds the embedding, also that file on each clip's mel windows."""
    spec = front_end.spec
    frames = [clip_log_mel(clip, spec) for clip in audio]
    batches = [frames[start : start + batch] for start in range(0, len(frames) - batch + 1, batch)] or [frames]
    extra = {}
    if in_model is not None:
        windows = [mel_windows(clip_frames, in_model.metadata.front_end) for clip_frames in frames]
        extra[IN_MODEL_STEP[0]] = time_calls(in_model.predict_features, windows)
    return {
        "numpy mel": time_calls(lambda clip: clip_log_mel(clip, spec), audio),
        "int8 mel": time_calls(quantize_mel, frames),
        "onnx mel": time_calls(front_end.mel, audio),
        "embedding (9 windows)": time_calls(front_end.embed_mel, frames),
        "embedding, batched": [seconds / len(batches[0]) for seconds in time_calls(front_end.embed_mels, batches)],
        **extra,
    }


def summarise(durations: dict[str, list[float]]) -> dict[str, dict[str, float]]:
    """Median and 90th-percentile ms per clip of each step, and its share of its machine's per-clip work."""
    medians = {step: metrics.median_ms(seconds) for step, seconds in durations.items()}
    totals = {
        "pi": medians["numpy mel"] + medians["int8 mel"],
        "server": medians["onnx mel"] + medians["embedding (9 windows)"],
        "server (batched)": medians["onnx mel"] + medians["embedding, batched"],
    }
    steps = STEPS
    if IN_MODEL_STEP[0] in medians:
        totals[IN_MODEL_STEP[1]] = medians["onnx mel"] + medians[IN_MODEL_STEP[0]]
        steps = (*STEPS, IN_MODEL_STEP)
    return {
        step: {
            "machine": machine,
            "median_ms": medians[step],
            "p90_ms": float(np.percentile(durations[step], 90)) * 1e3,
            "share": medians[step] / totals[machine],
        }
        for step, machine in steps
    }


def format_results(summary: dict[str, dict[str, float]]) -> str:
    rows = [[step, values["machine"], values["median_ms"], values["p90_ms"], f"{values['share']:.0%}"]
            for step, values in summary.items()]
    return format_table(["step", "where", "median ms", "p90 ms", "share of its machine"], rows, float_digits=2)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_report_arguments(parser, REPO_ROOT / "reports" / "bench_front_end.json")
    parser.add_argument("--clips", type=int, default=200, metavar="N",
                        help="real clips, spread over the labels and speakers (default: %(default)s)")
    parser.add_argument("--batch", type=int, default=8, metavar="N",
                        help="clips whose windows share one embedding call in the batched row (default: %(default)s)")
    parser.add_argument("--model", type=Path, default=Path("models") / SERVICE_MODEL, metavar="STEM",
                        help="a Big whose file holds the embedding, timed as one more row when its metadata says so "
                        "(default: %(default)s)")
    parser.add_argument("--threads", type=int, default=1, metavar="N",
                        help="onnxruntime intra-op threads (default: %(default)s, as the service)")
    args = parse_bench_args(parser, argv)
    if args.clips < 1 or args.batch < 1 or args.threads < 1:
        parser.error("--clips, --batch and --threads must be at least 1")
    spec = FrontEndSpec()
    try:
        front_end = FrontEnd.load(spec, threads=args.threads)
    except FrontEndError as error:
        parser.exit(1, f"error: {error}\n")
    try:
        big = load_model(args.model)
    except (ModelError, FileNotFoundError) as error:
        parser.exit(1, f"error: --model {args.model}: {error}\n")
    in_model = big if big.metadata.front_end is not None and big.metadata.front_end.embedding_in_model else None
    clips = dataset.spread_evenly(dataset.list_clips(args.data_dir), args.clips)
    audio = list(dataset.load_audio(clips))
    summary = summarise(time_steps(front_end, audio, min(args.batch, len(audio)), in_model))
    pi_ms = summary["numpy mel"]["median_ms"] + summary["int8 mel"]["median_ms"]
    from_audio_ms = summary["onnx mel"]["median_ms"] + summary["embedding (9 windows)"]["median_ms"]
    table = "\n".join([
        f"median per clip over {len(audio)} clips, onnxruntime {args.threads} thread(s), numpy 1 BLAS thread",
        format_results(summary),
        f"Pi: {pi_ms:.2f} ms a clip; server from audio: {from_audio_ms:.2f} ms, "
        f"from the Pi's mel: {summary['embedding (9 windows)']['median_ms']:.2f} ms",
        *([f"{big.name} (the embedding in its file): {summary[IN_MODEL_STEP[0]]['median_ms']:.2f} ms from the Pi's mel"]
          if in_model is not None else []),
    ])
    report: dict[str, Any] = {
        "environment": {
            "python": platform.python_version(), "numpy": np.__version__,
            "onnxruntime": importlib.metadata.version("onnxruntime"), "onnxruntime_threads": args.threads,
            "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS"),
            "cpus": os.cpu_count(), "machine": platform.machine(),
        },
        "front_end": spec.to_dict(), "model": {"name": big.name, "sha256": big.sha256}, "clips": len(audio),
        "batch": min(args.batch, len(audio)), "steps": summary,
    }
    return finish(table, report, args.report)


if __name__ == "__main__":
    sys.exit(main())
