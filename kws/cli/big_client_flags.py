"""The command-line options of a Big service client, shared by every program that talks to Big.

``little_client.py`` and ``calibrate.py`` add them with :func:`add_big_client_arguments`
and turn them into the package's :class:`~kws.rest.client.BigClientSettings` with
:func:`big_client_settings`, so the flags, their checks and their messages are written once.
"""

from __future__ import annotations

import argparse
import ipaddress
import logging
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from kws.rest.auth import TokenFileError, read_token_file
from kws.rest.breaker import DEFAULT_COOLDOWN_S, DEFAULT_FAILURES
from kws.rest.client import (
    DEFAULT_RETRIES,
    DEFAULT_SERVICE,
    DEFAULT_TIMEOUT_S,
    PAYLOAD_CHOICES,
    BigClientSettings,
    UnusableProxy,
    environment_proxy,
)
from kws.rest.compression import COMPRESS_CHOICES
from kws.wire.audio_pack import AudioPackError, check_device_id

log = logging.getLogger(__name__)


def add_big_client_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``Big service`` argument group: where Big is and how patiently to ask it."""
    group = parser.add_argument_group("Big service")
    group.add_argument(
        "--service", metavar="URL", default=DEFAULT_SERVICE, help="Big service base URL (default: %(default)s)"
    )
    group.add_argument(
        "--timeout", metavar="S", type=float, default=DEFAULT_TIMEOUT_S,
        help="seconds per Big request attempt: connecting, each read, the whole answer; never retried "
        "(default: %(default)s)",
    )
    group.add_argument(
        "--retries", metavar="N", type=int, default=DEFAULT_RETRIES,
        help="extra attempts on refused or reset connections and 502/503/504 (default: %(default)s)",
    )
    group.add_argument("--device", metavar="ID", help="device id in the SenML base name (default: this host's name)")
    group.add_argument(
        "--payload", choices=PAYLOAD_CHOICES, default="auto",
        help="what goes to Big: the clip (pcm, ~43 KB) or Big's int8 features (~3 KB); "
        "auto takes features when the service does (default: %(default)s)",
    )
    group.add_argument(
        "--compress", choices=COMPRESS_CHOICES, default="auto",
        help="deflate each request body (a clip's pack travels as ~25 KB instead of ~43 KB, features as ~2.2 KB); "
        "auto does when the service lists it in /health, none never (default: %(default)s)",
    )
    group.add_argument(
        "--token-file", type=Path, metavar="FILE",
        help="send 'Authorization: Bearer <token>', the token being FILE's first line",
    )
    group.add_argument(
        "--cafile", type=Path, metavar="PEM", help="CA certificate(s) an https:// --service must be signed by"
    )
    group.add_argument(
        "--breaker-failures", metavar="N", type=int, default=DEFAULT_FAILURES,
        help="after N failures in a row stop asking Big for a cool-down (default: %(default)s)",
    )
    group.add_argument(
        "--breaker-cooldown", metavar="S", type=float, default=DEFAULT_COOLDOWN_S,
        help="seconds Big is not asked once the breaker opens, then it is tried again (default: %(default)s)",
    )
    return group


#: The Big service's endpoints, which a --service URL must not end in (the client adds them).
ENDPOINTS = ("predict", "health", "model", "metrics")


def big_client_settings(parser: argparse.ArgumentParser, args: argparse.Namespace) -> BigClientSettings:
    """The settings the flags describe, the token read from its file; a usage error (exit 2, naming the
    flag) for a value argparse's types cannot catch."""
    service = urlsplit(args.service)
    if service.scheme not in ("http", "https") or not service.hostname:
        parser.error(f"--service must be an http:// or https:// URL with a host, got {args.service!r}")
    endpoint = service.path.rstrip("/").rsplit("/", 1)[-1]
    if endpoint in ENDPOINTS:
        base = urlunsplit((service.scheme, service.netloc, service.path.rstrip("/")[: -len(endpoint) - 1], "", ""))
        parser.error(f"--service names the service, not one of its endpoints: give {base}, not {args.service} "
                     f"(the client adds /{endpoint} itself)")
    if args.timeout <= 0 or args.retries < 0:
        parser.error("--timeout must be positive and --retries at least 0")
    if args.breaker_failures < 1 or args.breaker_cooldown < 0:
        parser.error("--breaker-failures must be at least 1 and --breaker-cooldown at least 0")
    if args.cafile is not None and not args.cafile.is_file():
        parser.error(f"--cafile {args.cafile} is not a file")
    if args.cafile is not None and service.scheme != "https":
        parser.error("--cafile checks an https:// --service; this one is http://")
    try:
        environment_proxy(args.service)  # the client reads it again; here a bad one is a usage error
    except UnusableProxy as error:
        parser.error(f"--service {args.service}: {error}")
    token = None
    if args.token_file is not None:
        try:
            token = read_token_file(args.token_file)
        except TokenFileError as error:
            parser.error(f"--token-file: {error}")
        if service.scheme == "http" and not _is_loopback(service.hostname):
            log.warning("--token-file over http:// to %s: the token crosses the network in clear", service.hostname)
    if args.device is not None:
        try:
            check_device_id(args.device)
        except AudioPackError as error:
            parser.error(f"--device: {error}")
    return BigClientSettings(
        args.service, timeout=args.timeout, retries=args.retries, device=args.device, payload=args.payload,
        compress=args.compress, token=token, cafile=None if args.cafile is None else str(args.cafile),
        breaker_failures=args.breaker_failures, breaker_cooldown_s=args.breaker_cooldown,
    )


def _is_loopback(host: str) -> bool:
    try:
        return host == "localhost" or ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
