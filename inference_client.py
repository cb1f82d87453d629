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

It reconnects and resubscribes by itself after a broker restart, and stops cleanly
on SIGTERM or Ctrl-C (announcing itself offline and dropping its session).
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
import threading
from collections.abc import Sequence

from kws.model.metadata import ModelError
from kws.model.runtime import load_model
from kws.mqtt.connection import DEFAULT_SESSION_EXPIRY_S, MQTT_VERSIONS, ConnectionSettings
from kws.mqtt.inference import InferenceClient, InferenceService
from kws.mqtt.protocol import DEFAULT_TOPIC_PREFIX, ProtocolError, Topics, parse_broker_url

log = logging.getLogger("inference_client")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
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
        "--broker", default="mqtt://127.0.0.1:1883", metavar="URL", help="broker URL (default: %(default)s)"
    )
    parser.add_argument("--name", help="client name in answers, status and client id (default: <model>-<pid>)")
    parser.add_argument(
        "--topic-prefix", default=DEFAULT_TOPIC_PREFIX, metavar="PREFIX", help="topic prefix (default: %(default)s)"
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
        "--mqtt-version", choices=sorted(MQTT_VERSIONS), default="5",
        help="MQTT protocol version; 3.1.1 for amqtt (default: %(default)s)",
    )
    parser.add_argument(
        "--session-expiry", type=int, default=DEFAULT_SESSION_EXPIRY_S, metavar="S",
        help="seconds the broker keeps our session and queued clips while we are away (MQTT 5; default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=1, metavar="N", help="TFLite interpreter threads (default: %(default)s)"
    )
    parser.add_argument("--log-level", default="INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    try:
        broker = parse_broker_url(args.broker)
        model = load_model(args.model, num_threads=args.threads)
        name = args.name or f"{model.name}-{os.getpid()}"
        share = (args.share or model.name) if args.share is not None else None
        service = InferenceService(model, name, Topics(args.topic_prefix))
        settings = ConnectionSettings(
            broker, client_id=f"kws-{name}", mqtt_version=args.mqtt_version, session_expiry_s=args.session_expiry
        )
        client = InferenceClient(service, settings, qos=args.qos, share=share)
    except (ModelError, ProtocolError) as error:
        log.error("%s", error)
        return 2

    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda _number, _frame: stop.set())
    client.start()
    stop.wait()
    client.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
