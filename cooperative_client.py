"""Cooperative inference over MQTT: several models answer each clip, their answers are combined.

This client computes each clip's features once, with the FeatureConfig of a
model's metadata (never a hard-coded one), publishes them, and combines the
inference clients' answers by summed probabilities or by majority vote. It then
prints a summary table and writes a JSON report (accuracy, per-model accuracy,
answers per clip, incomplete and missing clips, throughput, latency).

The whole ensemble in one command, with a broker inside this process and one
inference client per model as child processes::

    python cooperative_client.py --embedded-broker \\
        --spawn models/ensemble_1 models/ensemble_2 models/ensemble_3 models/ensemble_4 \\
        --data-dir /work/shared/data/speech_commands

Against a running broker (mosquitto) and clients started elsewhere::

    python cooperative_client.py --broker mqtt://127.0.0.1:1883 --config-from models/ensemble_1 \\
        --expect 4 --data-dir DIR --policy vote --report reports/mqtt_vote.json
"""

# ruff: noqa: E402 - imports follow the environment line on purpose
from __future__ import annotations

import os

# One clip at a time: OpenBLAS's thread pool only adds hand-offs to the small matrix
# products of one clip's features (see little_client.py for the measurement).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import contextlib
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

import dataset
import embedded_broker
from cooperative_run import CooperativeRun, LabelledFeatures, RunSettings
from ensemble_report import format_summary
from ensemble_tracker import POLICIES
from inference_fleet import FleetError, InferenceFleet, specs_for_models
from kws_model import ModelError, ModelMetadata, model_stem
from mqtt_connection import DEFAULT_SESSION_EXPIRY_S, MQTT_VERSIONS
from mqtt_protocol import DEFAULT_TOPIC_PREFIX, BrokerAddress, Topics, parse_broker_url
from preprocessing import FeatureConfig, compute_features
from reporting import write_json_report

log = logging.getLogger("cooperative_client")

DEFAULT_BROKER = "mqtt://127.0.0.1:1883"


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Run keyword-spotting clips through an ensemble of MQTT inference clients; combine the answers.",
        epilog="example, the whole ensemble in one command:\n"
        "  python cooperative_client.py --embedded-broker \\\n"
        "      --spawn models/ensemble_1 models/ensemble_2 models/ensemble_3 models/ensemble_4 \\\n"
        "      --data-dir /work/shared/data/speech_commands",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    where = parser.add_argument_group("broker and clients")
    where.add_argument(
        "--broker", metavar="URL",
        help=f"broker URL (default: {DEFAULT_BROKER}; with --embedded-broker only its port counts, else a free one)",
    )
    where.add_argument(
        "--embedded-broker", action="store_true",
        help="start an amqtt broker inside this process (MQTT 3.1.1, so no --share)",
    )
    where.add_argument(
        "--spawn", nargs="+", metavar="MODEL", default=[],
        help="start one inference client per model as a child process, stopped at the end",
    )
    where.add_argument(
        "--client-logs", type=Path, metavar="DIR",
        help="write each spawned client's log to DIR/<name>.log (default: this terminal)",
    )
    where.add_argument(
        "--topic-prefix", default=DEFAULT_TOPIC_PREFIX, metavar="PREFIX", help="topic prefix (default: %(default)s)"
    )
    where.add_argument(
        "--mqtt-version", choices=sorted(MQTT_VERSIONS),
        help="MQTT protocol version (default: 5, or 3.1.1 with --embedded-broker)",
    )
    where.add_argument(
        "--session-expiry", type=int, default=DEFAULT_SESSION_EXPIRY_S, metavar="S",
        help="seconds the broker keeps our session across a disconnection (MQTT 5; default: %(default)s)",
    )

    data = parser.add_argument_group("clips")
    data.add_argument(
        "--data-dir", type=Path, required=True, metavar="DIR", help="Speech Commands folder (<label>/<name>.wav)"
    )
    data.add_argument(
        "--split", default="test", help="train, validation, test, all, or a split file (default: %(default)s)"
    )
    data.add_argument("--limit", type=int, metavar="N", help="use N clips spread evenly over the split")
    data.add_argument(
        "--config-from", metavar="MODEL",
        help="model whose metadata gives the FeatureConfig and labels (default: the first --spawn model)",
    )

    run = parser.add_argument_group("run")
    run.add_argument(
        "--expect", type=int, metavar="N", help="answers per clip, one per model (default: the number of --spawn)"
    )
    run.add_argument(
        "--timeout", type=float, default=10.0, metavar="S",
        help="seconds a clip waits for its answers after publication (default: %(default)s)",
    )
    run.add_argument(
        "--policy", choices=POLICIES, default="sum",
        help="combine by summed probabilities or by majority vote (default: %(default)s)",
    )
    run.add_argument(
        "--qos-audio", type=int, choices=(0, 1, 2), default=1, help="QoS of the features (default: %(default)s)"
    )
    run.add_argument(
        "--qos-prediction", type=int, choices=(0, 1, 2), default=1, help="QoS of the answers (default: %(default)s)"
    )
    run.add_argument(
        "--max-pending", type=int, default=256, metavar="N",
        help="clips published but unfinished at most, so broker queues stay short (default: %(default)s)",
    )
    run.add_argument("--rate", type=float, metavar="CLIPS_PER_S", help="pace publishing (default: as fast as allowed)")
    run.add_argument(
        "--ready-timeout", type=float, default=60.0, metavar="S",
        help="seconds to wait for the clients to come online (default: %(default)s)",
    )
    run.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here")
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser, parser.parse_args(argv)


def read_feature_source(model: str) -> ModelMetadata:
    """The metadata of the model whose FeatureConfig and labels the run uses (the model file is not loaded)."""
    stem = model_stem(model)
    return ModelMetadata.read(stem.with_name(stem.name + ".json"))


def select_clips(data_dir: Path, split: str, labels: Sequence[str], limit: int | None) -> list[dataset.Clip]:
    """The split's clips, or ``limit`` of them spread evenly so every label is represented."""
    clips = dataset.select_clips(data_dir, split, labels)
    if limit is not None and limit < len(clips):
        step = len(clips) / limit
        clips = [clips[int(index * step)] for index in range(limit)]
    return clips


def prepare_clips(clips: Sequence[dataset.Clip], config: FeatureConfig) -> list[LabelledFeatures]:
    """Every clip's features, computed once for all the models."""
    return [
        LabelledFeatures(clip.label, compute_features(dataset.read_wav(clip.path), config))
        for clip in tqdm(clips, desc="computing features", unit="clip")
    ]


def choose_broker(args: argparse.Namespace) -> BrokerAddress:
    """The broker to use; with --embedded-broker, the port of --broker if given, else a free one."""
    if not args.embedded_broker:
        return parse_broker_url(args.broker or DEFAULT_BROKER)
    port = parse_broker_url(args.broker).port if args.broker else 0
    return BrokerAddress("127.0.0.1", port)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Everything between parsed arguments and the finished report; cleans up on any exit."""
    source = args.config_from or (args.spawn[0] if args.spawn else None)
    if source is None:
        raise ValueError("say which model's FeatureConfig to use: --config-from MODEL (or --spawn MODEL ...)")
    expect = args.expect or len(args.spawn)
    if expect < 1:
        raise ValueError("say how many answers each clip gets: --expect N (or --spawn MODEL ...)")
    mqtt_version = args.mqtt_version or (embedded_broker.MQTT_VERSION if args.embedded_broker else "5")
    if args.embedded_broker and mqtt_version != embedded_broker.MQTT_VERSION:
        raise ValueError(f"the embedded broker speaks MQTT {embedded_broker.MQTT_VERSION} only")
    metadata = read_feature_source(source)
    clips = select_clips(args.data_dir, args.split, metadata.labels, args.limit)
    topics = Topics(args.topic_prefix)
    broker = choose_broker(args)
    settings = RunSettings(
        expect=expect, timeout_s=args.timeout, policy=args.policy, qos_audio=args.qos_audio,
        qos_prediction=args.qos_prediction, max_pending=args.max_pending, rate=args.rate,
        ready_timeout_s=args.ready_timeout,
    )
    with contextlib.ExitStack() as cleanup:
        if args.embedded_broker:
            broker = cleanup.enter_context(embedded_broker.EmbeddedBroker(broker.host, broker.port)).address
        fleet = None
        if args.spawn:
            fleet = cleanup.enter_context(InferenceFleet(
                specs_for_models(args.spawn), broker, topics.prefix, mqtt_version,
                qos=max(args.qos_audio, args.qos_prediction), log_dir=args.client_logs,
            ))
        labelled = prepare_clips(clips, metadata.feature_config)  # while the clients start
        cooperative = cleanup.enter_context(CooperativeRun(
            broker, topics, metadata.feature_config, metadata.labels, settings,
            mqtt_version=mqtt_version, session_expiry_s=args.session_expiry, fleet=fleet,
        ))
        return cooperative.run(labelled, context={
            "broker": broker.url,
            "mqtt_version": mqtt_version,
            "embedded_broker": args.embedded_broker,
            "config_from": metadata.name,
            "data_dir": str(args.data_dir),
            "split": args.split,
        })


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, lambda _number, _frame: sys.exit(143))  # unwind: stop children and broker
    try:
        report = run(args)
    except (ValueError, ModelError, dataset.DatasetError, FleetError, TimeoutError, OSError) as error:
        # ProtocolError is a ValueError: a bad --broker URL or --topic-prefix lands here too
        parser.exit(2, f"error: {error}\n")
    except KeyboardInterrupt:
        parser.exit(130, "interrupted\n")
    print(format_summary(report))
    if args.report:
        write_json_report(args.report, report)
        print(f"report written to {args.report}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
