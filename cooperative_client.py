"""Cooperative inference over MQTT: several models answer each clip, their answers are combined.

Computes each clip's features once, publishes them, and combines the inference
clients' answers by summed probabilities or majority vote; prints a summary and
writes a JSON report. The work is in :mod:`kws.mqtt.session`. The whole ensemble in
one command, with a broker inside this process and one client per model::

    python cooperative_client.py --embedded-broker \\
        --spawn models/ensemble_1 models/ensemble_2 models/ensemble_3 models/ensemble_4

Against a running broker (mosquitto) and clients started elsewhere::

    python cooperative_client.py --broker mqtt://127.0.0.1:1883 --config-from models/ensemble_1 \\
        --expect 4 --policy vote --report reports/mqtt_vote.json
"""

# ruff: noqa: E402 - imports follow the environment line on purpose
from __future__ import annotations

import os

# One clip at a time: OpenBLAS's thread pool only adds hand-offs to the small matrix
# products of one clip's features (see little_client.py for the measurement).
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from kws.data.clips import DatasetError, resolve_data_dir
from kws.model.metadata import ModelError
from kws.mqtt.connection import DEFAULT_SESSION_EXPIRY_S, MQTT_VERSIONS
from kws.mqtt.fleet import FleetError
from kws.mqtt.policies import POLICIES
from kws.mqtt.protocol import DEFAULT_TOPIC_PREFIX
from kws.mqtt.report import format_summary
from kws.mqtt.session import DEFAULT_BROKER, CooperativeOptions, run_cooperative
from kws.reports import write_json_report


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Run keyword-spotting clips through an ensemble of MQTT inference clients; combine the answers.",
        epilog="example, the whole ensemble in one command:\n"
        "  python cooperative_client.py --embedded-broker \\\n"
        "      --spawn models/ensemble_1 models/ensemble_2 models/ensemble_3 models/ensemble_4 \\\n"
        "      --data-dir DIR",
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
        help="write each spawned client's log to DIR/<name>.log (default: this program's stderr)",
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
        "--data-dir", type=Path, metavar="DIR",
        help="Speech Commands folder, <label>/<name>.wav (default: $KWS_DATA_DIR or ../shared/data/speech_commands)",
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
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="of this client and of the spawned ones (default: %(default)s)",
    )
    return parser, parser.parse_args(argv)


def options_from(args: argparse.Namespace) -> CooperativeOptions:
    run = {
        "timeout_s": args.timeout, "policy": args.policy, "qos_audio": args.qos_audio,
        "qos_prediction": args.qos_prediction, "max_pending": args.max_pending, "rate": args.rate,
        "ready_timeout_s": args.ready_timeout,
    }
    return CooperativeOptions(
        data_dir=resolve_data_dir(args.data_dir), split=args.split, limit=args.limit, spawn=args.spawn,
        config_from=args.config_from, expect=args.expect, broker=args.broker, embedded_broker=args.embedded_broker,
        topic_prefix=args.topic_prefix, mqtt_version=args.mqtt_version, session_expiry_s=args.session_expiry,
        client_logs=args.client_logs, client_log_level=args.log_level, run=run,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    signal.signal(signal.SIGTERM, lambda _number, _frame: sys.exit(143))  # unwind: stop children and broker
    try:
        report = run_cooperative(options_from(args))
    except (ValueError, ModelError, DatasetError, FleetError, TimeoutError, OSError) as error:
        # ProtocolError is a ValueError (a bad --broker URL or --topic-prefix); ConnectionError an OSError
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
