"""Clips per second through MQTT with four inference clients, against the same four models in one process.

Two ways to get four models' answers for the same real clips:

* ``in_process``: the four models loaded here, called one after the other on
  each clip's features;
* ``mqtt``: the production path. Four ``inference_client.py`` child processes
  behind Mosquitto; the cooperative run publishes each clip's features once
  (SenML, QoS ``--qos``) and collects the four answers.

Features are computed once, before either is timed: both paths start from the
same float32 features, so the difference is MQTT's cost (encoding, the broker's
fan-out, decoding) against its gain (four processes instead of one thread).
Each path runs ``--repeats`` times, interleaved so a change in machine load hits
both alike, and the medians are quoted.

    python -m bench.bench_mqtt --data-dir ../shared/data/speech_commands
    python -m bench.bench_mqtt --data-dir DIR --broker mqtt://127.0.0.1:1883   # an existing broker
"""

# ruff: noqa: E402 - imports follow a sys.path line on purpose
from __future__ import annotations

import os

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip at a time, as the programs it measures

import argparse
import contextlib
import logging
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from bench.common import add_data_dir_argument, parse_bench_args
from kws.model.runtime import KeywordModel, load_model
from kws.mqtt.brokers.mosquitto import LocalMosquitto
from kws.mqtt.fleet import InferenceFleet, specs_for_models
from kws.mqtt.policies import combine
from kws.mqtt.protocol import BrokerAddress, Topics, parse_broker_url
from kws.mqtt.run import CooperativeRun, LabelledFeatures, RunSettings
from kws.mqtt.session import choose_clips, prepare_clips
from kws.reports import format_table, write_json_report

log = logging.getLogger("bench_mqtt")

DEFAULT_MODELS = [f"models/ensemble_{index}" for index in range(1, 5)]
DEFAULT_REPORT = Path("reports/bench_mqtt.json")


def run_in_process(models: Sequence[KeywordModel], clips: Sequence[LabelledFeatures]) -> dict[str, float]:
    """Every model on every clip, one after the other; throughput and summed-probability accuracy."""
    correct = 0
    started = time.perf_counter()
    for clip in clips:
        scores = np.stack([model.predict_features(clip.features) for model in models])
        correct += models[0].labels[combine(scores, "sum")] == clip.true_label
    elapsed = time.perf_counter() - started
    return {"clips_per_s": len(clips) / elapsed, "accuracy": correct / len(clips)}


def run_mqtt(broker: BrokerAddress, models: Sequence[KeywordModel], clips: Sequence[LabelledFeatures],
             settings: RunSettings) -> dict[str, Any]:
    """One cooperative run (a fresh client id and clip ids) through the broker."""
    first = models[0]
    with CooperativeRun(broker, Topics(), first.feature_config, first.labels, settings) as cooperative:
        report = cooperative.run(clips)
    return {
        "clips_per_s": report["throughput_clips_per_s"],
        "accuracy": report["accuracy"],
        "latency_ms_median": report["latency_ms"]["median"],
        "incomplete": report["incomplete"],
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    models = [load_model(path) for path in args.models]
    first = models[0]
    clips = prepare_clips(choose_clips(args.data_dir, args.split, first.labels, args.clips), first.feature_config)
    settings = RunSettings(expect=len(models), timeout_s=args.timeout, qos_audio=args.qos, qos_prediction=args.qos)
    runs: dict[str, list[dict[str, Any]]] = {"in_process": [], "mqtt": []}
    with contextlib.ExitStack() as cleanup:
        if args.broker:
            broker = parse_broker_url(args.broker)
        else:
            state_dir = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="bench_mqtt_")))
            broker = cleanup.enter_context(LocalMosquitto(state_dir)).address
        cleanup.enter_context(InferenceFleet(specs_for_models(args.models), broker, Topics().prefix, "5", args.qos))
        run_mqtt(broker, models, clips[: len(models)], settings)  # warm up: clients online, interpreters primed
        for repeat in range(args.repeats):
            log.info("repeat %d of %d", repeat + 1, args.repeats)
            runs["in_process"].append(run_in_process(models, clips))
            runs["mqtt"].append(run_mqtt(broker, models, clips, settings))
    medians = {path: statistics.median(result["clips_per_s"] for result in results) for path, results in runs.items()}
    return {
        "setup": {
            "clips": len(clips),
            "repeats": args.repeats,
            "models": [model.name for model in models],
            "feature_shape": list(first.feature_config.shape),
            "qos": args.qos,
            "broker": args.broker or "private mosquitto (tests' configuration, persistence on)",
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
        },
        "in_process_clips_per_s": round(medians["in_process"], 2),
        "mqtt_clips_per_s": round(medians["mqtt"], 2),
        "mqtt_to_in_process": round(medians["mqtt"] / medians["in_process"], 3),
        "mqtt_latency_ms_median": statistics.median(result["latency_ms_median"] for result in runs["mqtt"]),
        "accuracy": {path: round(results[0]["accuracy"], 4) for path, results in runs.items()},
        "runs": {path: [round(result["clips_per_s"], 2) for result in results] for path, results in runs.items()},
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir_argument(parser)
    parser.add_argument("--split", default="test", help="split to take clips from (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="the models (default: ensemble_1..4)")
    parser.add_argument("--clips", type=int, default=400, help="clips per measurement (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="measurements per path (default: %(default)s)")
    parser.add_argument("--qos", type=int, choices=(0, 1, 2), default=1, help="QoS of clips and answers (default: 1)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-clip deadline, s (default: %(default)s)")
    parser.add_argument("--broker", help="use this broker (default: start a private mosquitto)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="JSON report (default: %(default)s)")
    args = parse_bench_args(parser, argv)
    if args.clips < 1 or args.repeats < 1:
        parser.error("--clips and --repeats must be at least 1")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    rows = [
        ["in-process (4 models, 1 thread)", report["in_process_clips_per_s"], report["accuracy"]["in_process"]],
        [f"MQTT (4 clients, QoS {args.qos})", report["mqtt_clips_per_s"], report["accuracy"]["mqtt"]],
    ]
    print(format_table(["path", "clips/s (median)", "accuracy"], rows, float_digits=2))
    print(f"MQTT / in-process: {report['mqtt_to_in_process']:.2f}; "
          f"MQTT latency median {report['mqtt_latency_ms_median']:.1f} ms per clip")
    write_json_report(args.report, report)
    log.info("report written to %s", args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
