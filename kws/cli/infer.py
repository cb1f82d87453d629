"""An MQTT inference client: one keyword-spotting model answering every clip it is sent.

It subscribes to ``<prefix>/audio/+``, decodes each features pack (see
``kws.wire.features_pack``), runs its model and publishes the class probabilities on
``<prefix>/prediction/<clip id>``. A pack made with another FeatureConfig than the
model's is skipped, never answered wrongly; a malformed one is logged and skipped
too, and the client stays up. Counts of both are logged when it stops.

Run one per model; the cooperative client combines their answers::

    python inference_client.py --model models/ensemble_1 --broker mqtt://127.0.0.1:1883

To scale one model, start replicas with ``--share``: they join one MQTT 5 shared
subscription (``$share/<group>/kws/audio/+``), so each clip goes to one replica of
that model while every other model still sees every clip. The group defaults to the
model's name; mosquitto supports it, amqtt (the embedded broker) does not.

With an account (``--username``, ``--password-file``) its name defaults to the user
name, because a broker that pins answers to accounts (deploy/mosquitto/acl) takes
them only under ``kws/prediction/<username>/``. TLS: an ``mqtts://`` URL and
``--cafile`` (and ``--certfile``/``--keyfile`` for a client certificate).

It reconnects and resubscribes by itself after a broker restart, and stops cleanly
on SIGTERM or Ctrl-C (announcing itself offline and dropping its session). A broker
that refuses its account or a certificate that does not verify ends it at once
(exit 2, naming the flag to fix).

Installed with pip this program is the command ``kws-infer`` (same flags); from a
checkout it is ``python inference_client.py``. Logs go to stderr, one line each (without the
time when stderr is the systemd journal, which stamps lines itself: :mod:`kws.util.logs`).
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

import os

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip at a time

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence

from kws.cli.broker_flags import add_broker_arguments, check_broker_arguments
from kws.errors import KwsError
from kws.model.runtime import load_model
from kws.mqtt.connection import ConnectionSettings
from kws.mqtt.inference import InferenceClient, InferenceService
from kws.mqtt.protocol import Topics
from kws.util.logs import setup_logging

log = logging.getLogger("inference_client")


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Answer keyword-spotting features received over MQTT with one model.",
        epilog="examples:\n"
        "  python inference_client.py --model models/ensemble_1 --broker mqtt://127.0.0.1:1883\n"
        "  # two replicas of one model splitting its clips (shared subscription; mosquitto, not amqtt):\n"
        "  python inference_client.py --model models/ensemble_1 --share &\n"
        "  python inference_client.py --model models/ensemble_1 --share &",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--model", required=True, help="model stem or file, e.g. models/ensemble_1")
    parser.add_argument(
        "--name", help="client name in answers, status and client id (default: --username, else <model>-<pid>)"
    )
    parser.add_argument(
        "--share", nargs="?", const="", metavar="GROUP",
        help="join shared subscription GROUP so replicas split the clips (GROUP defaults to the model's name)",
    )
    parser.add_argument(
        "--qos", type=int, choices=(0, 1, 2), default=1,
        help="QoS of the audio subscription and of the answers (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N", help="TFLite interpreter threads (default: %(default)s)"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                        help="the least important log lines written to stderr (default: %(default)s; WARNING keeps "
                        "only skipped messages and connection trouble)")
    add_broker_arguments(parser)
    args = parser.parse_args(argv)
    return parser, args


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    setup_logging(args.log_level)
    broker, security = check_broker_arguments(parser, args)
    try:
        model = load_model(args.model, num_threads=args.threads)
        name = args.name or args.username or f"{model.name}-{os.getpid()}"
        if args.username and name != args.username:
            log.warning("answering as %r but logged in as %r: a broker that pins answers to accounts "
                        "(deploy/mosquitto/acl) refuses them", name, args.username)
        share = (args.share or model.name) if args.share is not None else None
        service = InferenceService(model, name, Topics(args.topic_prefix))
        settings = ConnectionSettings(broker, client_id=f"kws-{name}", mqtt_version=args.mqtt_version,
                                      session_expiry_s=args.session_expiry, security=security)
        client = InferenceClient(service, settings, qos=args.qos, share=share)
    except KwsError as error:
        parser.exit(error.exit_code, f"error: {error.explain()}\n")

    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda _number, _frame: stop.set())
    client.start()
    while not stop.is_set() and not client.connection.refused.is_set():
        stop.wait(0.2)
    client.stop()
    if client.connection.refusal is not None:  # logged where it happened; the exit status says it too
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
