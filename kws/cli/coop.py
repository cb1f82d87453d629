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

Only answers from the clients that announced the expected models count; everything
else is counted in the report's ``rejected_answers``. Against the secure recipe
(deploy/mosquitto) add ``--broker mqtts://HOST:8883 --username kws-coop
--password-file FILE --cafile ca.crt``.

Installed with pip this program is the command ``kws-coop`` (same flags); from a
checkout it is ``python cooperative_client.py``. Logs go to stderr, one line each (without the
time when stderr is the systemd journal, which stamps lines itself: :mod:`kws.util.logs`).
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip at a time

import argparse
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from kws.cli.broker_flags import add_broker_arguments, check_broker_arguments
from kws.data.clips import resolve_data_dir
from kws.errors import KwsError
from kws.mqtt.policies import POLICIES
from kws.mqtt.protocol import DEFAULT_BROKER
from kws.mqtt.report import format_summary
from kws.mqtt.run import RunSettings
from kws.mqtt.session import CooperativeOptions, run_cooperative
from kws.reports import write_json_report
from kws.util.logs import setup_logging


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Run keyword-spotting clips through an ensemble of MQTT inference clients; combine the answers.",
        epilog="example, the whole ensemble in one command:\n"
        "  python cooperative_client.py --embedded-broker \\\n"
        "      --spawn models/ensemble_1 models/ensemble_2 models/ensemble_3 models/ensemble_4 \\\n"
        "      --data-dir DIR",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_broker_arguments(
        parser, default_broker=None, default_mqtt_version=None,
        broker_help=f"broker URL, mqtt://host[:1883] or mqtts://host[:8883] for TLS (default: {DEFAULT_BROKER}; "
        "with --embedded-broker only its port counts, else a free one)",
        mqtt_version_help="MQTT protocol version (default: 5, or 3.1.1 with --embedded-broker)",
    )
    where = parser.add_argument_group("broker and clients started here")
    where.add_argument(
        "--embedded-broker", action="store_true",
        help="start an amqtt broker inside this process (MQTT 3.1.1, no accounts, no TLS, no --share)",
    )
    where.add_argument(
        "--spawn", nargs="+", metavar="MODEL", default=[],
        help="start one inference client per model as a child process, stopped at the end; it gets this "
        "client's account and TLS files",
    )
    where.add_argument(
        "--client-logs", type=Path, metavar="DIR",
        help="write each spawned client's log to DIR/<name>.log (default: this program's stderr)",
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

    run = add_run_arguments(parser)
    run.add_argument("--report", type=Path, metavar="PATH", help="write the JSON report here")
    parser.add_argument(
        "--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
        help="of this client and of the spawned ones (default: %(default)s)",
    )
    return parser, parser.parse_args(argv)


def add_run_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``run`` argument group of the cooperative client: whom to wait for, how long, how to combine."""
    run = parser.add_argument_group("run")
    run.add_argument(
        "--expect", type=int, metavar="N",
        help="answers per clip, one per model (default: the number of --expect-models or of --spawn)",
    )
    run.add_argument(
        "--expect-models", nargs="+", metavar="NAME", default=[],
        help="accept answers only from clients that announced one of these models (default: the --spawn "
        "models; without --spawn, any model with our FeatureConfig)",
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
    return run


def run_settings(args: argparse.Namespace) -> RunSettings:
    """The run the ``run`` group describes; ``expect`` 0 and no ``expect_models`` when the flags give none
    (the session then expects one answer from each model it spawns)."""
    return RunSettings(
        expect=args.expect or 0, expect_models=tuple(args.expect_models), timeout_s=args.timeout,
        policy=args.policy, qos_audio=args.qos_audio, qos_prediction=args.qos_prediction,
        max_pending=args.max_pending, rate=args.rate, ready_timeout_s=args.ready_timeout,
    )


def options_from(parser: argparse.ArgumentParser, args: argparse.Namespace) -> CooperativeOptions:
    _, security = check_broker_arguments(parser, args, embedded=args.embedded_broker)
    return CooperativeOptions(
        data_dir=resolve_data_dir(args.data_dir), split=args.split, limit=args.limit, spawn=args.spawn,
        config_from=args.config_from, broker=args.broker,
        embedded_broker=args.embedded_broker, security=security, topic_prefix=args.topic_prefix,
        mqtt_version=args.mqtt_version, session_expiry_s=args.session_expiry,
        client_logs=args.client_logs, client_log_level=args.log_level, run=run_settings(args),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    setup_logging(args.log_level)
    signal.signal(signal.SIGTERM, lambda _number, _frame: sys.exit(143))  # unwind: stop children and broker
    try:
        report = run_cooperative(options_from(parser, args))
    except KwsError as error:
        parser.exit(error.exit_code, f"error: {error.explain()}\n")
    except KeyboardInterrupt:  # before any clip was sent (loading, starting clients, waiting for them)
        parser.exit(130, "interrupted before any clip was sent\n")
    print(format_summary(report) + ("\ninterrupted: the clips sent until Ctrl-C" if report["interrupted"] else ""))
    if args.report:
        write_json_report(args.report, report)
        print(f"report written to {args.report}")
    return 130 if report["interrupted"] else 0


if __name__ == "__main__":
    sys.exit(main())
