"""The options of the MQTT programs: where the broker is, who we are to it, how we trust it.

``cooperative_client.py`` and ``inference_client.py`` add them with
:func:`add_broker_arguments` and check them with :func:`check_broker_arguments`,
so the flags, their help and their error messages are written once. The names are
those of Mosquitto's own clients (``mosquitto_sub --cafile ...``), but the password
comes from a file, never from the command line (see :mod:`kws.mqtt.security`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from kws.mqtt.connection import DEFAULT_SESSION_EXPIRY_S, MQTT_VERSIONS
from kws.mqtt.protocol import (
    DEFAULT_BROKER,
    DEFAULT_TOPIC_PREFIX,
    BrokerAddress,
    ProtocolError,
    Topics,
    parse_broker_url,
)
from kws.mqtt.security import BrokerSecurity, SecurityError


def add_broker_arguments(
    parser: argparse.ArgumentParser,
    broker_help: str = "broker URL, mqtt://host[:1883] or mqtts://host[:8883] for TLS (default: %(default)s)",
    default_broker: str | None = DEFAULT_BROKER,
    default_mqtt_version: str | None = "5",
    mqtt_version_help: str = "MQTT protocol version; 3.1.1 for amqtt (default: %(default)s)",
) -> argparse._ArgumentGroup:
    """The ``broker`` argument group: address, account, TLS, topic prefix, protocol version, session."""
    group = parser.add_argument_group("broker (account and TLS flags as in Mosquitto's own clients)")
    group.add_argument("--broker", metavar="URL", default=default_broker, help=broker_help)
    group.add_argument("--username", metavar="NAME", help="log in to the broker with this account")
    group.add_argument(
        "--password-file", type=Path, metavar="FILE",
        help="the account's password: the first line of FILE (keep it mode 600; never on the command line)",
    )
    group.add_argument(
        "--cafile", type=Path, metavar="FILE",
        help="trust only this CA's certificates for the broker (mqtts://; default: the system's CAs)",
    )
    group.add_argument("--certfile", type=Path, metavar="FILE", help="client certificate to present (mqtts://)")
    group.add_argument("--keyfile", type=Path, metavar="FILE", help="private key of --certfile")
    group.add_argument(
        "--topic-prefix", default=DEFAULT_TOPIC_PREFIX, metavar="PREFIX", help="topic prefix (default: %(default)s)"
    )
    group.add_argument(
        "--mqtt-version", choices=sorted(MQTT_VERSIONS), default=default_mqtt_version, help=mqtt_version_help
    )
    group.add_argument(
        "--session-expiry", type=int, default=DEFAULT_SESSION_EXPIRY_S, metavar="S",
        help="seconds the broker keeps our session and queued messages while we are away (MQTT 5; "
        "default: %(default)s)",
    )
    return group


def check_broker_arguments(
    parser: argparse.ArgumentParser, args: argparse.Namespace, embedded: bool = False
) -> tuple[BrokerAddress, BrokerSecurity]:
    """The broker's address (``--broker``, else the default) and our security; a usage error (exit 2,
    naming the flag) for a bad URL, an unreadable password file, an unusable TLS file, TLS files with
    a plain-text URL. With ``embedded`` only the URL's port counts and the session checks the rest."""
    try:
        broker = parse_broker_url(args.broker or DEFAULT_BROKER)
    except ProtocolError as error:
        parser.error(f"--broker: {error}")
    try:
        Topics(args.topic_prefix)
    except ProtocolError as error:
        parser.error(f"--topic-prefix: {error}")
    if args.session_expiry < 0:
        parser.error("--session-expiry must be at least 0")
    try:
        security = BrokerSecurity.load(
            username=args.username, password_file=args.password_file,
            cafile=args.cafile, certfile=args.certfile, keyfile=args.keyfile,
        )
        if not embedded:
            security.check_for(broker)
    except SecurityError as error:
        parser.error(str(error))
    return broker, security
