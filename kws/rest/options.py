"""The command-line options of a Big service client, shared by every tool that talks to Big.

``little_client.py`` (and any later tool on the Pi) adds them with
:func:`add_big_client_arguments` and builds its client with :func:`big_client_from_args`,
so the flags, their checks and their messages are written once.
"""

from __future__ import annotations

import argparse
from urllib.parse import urlsplit

from kws.rest.client import DEFAULT_RETRIES, DEFAULT_TIMEOUT_S, PAYLOAD_CHOICES, BigClient
from kws.wire.audio_pack import AudioPackError, check_device_id

DEFAULT_SERVICE = "http://127.0.0.1:8080"


def add_big_client_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``Big service`` argument group: where Big is and how patiently to ask it."""
    group = parser.add_argument_group("Big service")
    group.add_argument(
        "--service", metavar="URL", default=DEFAULT_SERVICE, help="Big service base URL (default: %(default)s)"
    )
    group.add_argument(
        "--timeout", metavar="S", type=float, default=DEFAULT_TIMEOUT_S,
        help="seconds per Big request attempt (default: %(default)s)",
    )
    group.add_argument(
        "--retries", metavar="N", type=int, default=DEFAULT_RETRIES,
        help="extra attempts on network errors and 502/503/504 (default: %(default)s)",
    )
    group.add_argument("--device", metavar="ID", help="device id in the SenML base name (default: this host's name)")
    group.add_argument(
        "--payload", choices=PAYLOAD_CHOICES, default="auto",
        help="what goes to Big: the clip (pcm, ~43 KB) or Big's int8 features (~3 KB); "
        "auto takes features when the service does (default: %(default)s)",
    )
    return group


def check_big_client_arguments(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Usage errors (exit 2, naming the flag) for values argparse's types cannot catch."""
    service = urlsplit(args.service)
    if service.scheme not in ("http", "https") or not service.hostname:
        parser.error(f"--service must be an http:// or https:// URL with a host, got {args.service!r}")
    if args.timeout <= 0 or args.retries < 0:
        parser.error("--timeout must be positive and --retries at least 0")
    if args.device is not None:
        try:
            check_device_id(args.device)
        except AudioPackError as error:
            parser.error(f"--device: {error}")


def big_client_from_args(args: argparse.Namespace) -> BigClient:
    return BigClient(args.service, timeout=args.timeout, retries=args.retries, device=args.device, payload=args.payload)
