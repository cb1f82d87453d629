"""Serve the Big model over HTTP: the cloud half of the Big/Little cascade.

The Little client on the Pi posts a clip it is unsure about as a SenML pack to
``/predict`` and gets Big's answer in JSON; ``/health``, ``/model`` and
``/metrics`` (Prometheus) tell operators how it is doing. The service itself is
:mod:`kws.rest.service`; this script parses the flags and runs it::

    python big_service.py                          # models/big_embedding on 127.0.0.1:8080
    python big_service.py --host 0.0.0.0 --port 8443 --token-file /etc/kws/token \\
        --certfile /etc/kws/cert.pem --keyfile /etc/kws/key.pem

Installed with pip this program is the command ``kws-big`` (same flags); from a
checkout it is ``python big_service.py``. Logs go to stderr, one line each (without the
time when stderr is the systemd journal, which stamps lines itself: :mod:`kws.util.logs`).
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip per worker thread

import argparse
import logging
import signal
import ssl
import sys
import threading
from collections.abc import Sequence
from pathlib import Path

from kws.errors import KwsError
from kws.rest.auth import TokenFileError, read_token_file
from kws.rest.service import (
    DEFAULT_HOST,
    DEFAULT_MODEL,
    DEFAULT_PORT,
    DEFAULT_THREADS,
    MAX_BODY_BYTES,
    BigService,
    start_server,
)
from kws.rest.tls import server_context
from kws.util.logs import setup_logging

log = logging.getLogger("big_service")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Serve the Big keyword-spotting model over HTTP: POST a SenML audio pack to /predict.",
        epilog="Endpoints: POST /predict, GET /health, GET /model, GET /metrics. Errors are JSON.",
    )
    parser.add_argument(
        "--host", default=DEFAULT_HOST, help="address to listen on; 0.0.0.0 for all interfaces (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help="TCP port; 0 picks a free one (default: %(default)s)"
    )
    parser.add_argument(
        "--model", type=Path, default=DEFAULT_MODEL, metavar="STEM",
        help="model stem or file, metadata beside it (default: %(default)s)",
    )
    parser.add_argument(
        "--threads", type=int, default=DEFAULT_THREADS, metavar="N",
        help="worker threads, each with its own interpreter (default: %(default)s)",
    )
    parser.add_argument(
        "--max-body", type=int, default=MAX_BODY_BYTES, metavar="BYTES",
        help="largest accepted request body (default: %(default)s)",
    )
    security = parser.add_argument_group("security (see docs/deploying-securely.md)")
    security.add_argument(
        "--token-file", type=Path, metavar="FILE",
        help="require 'Authorization: Bearer <token>' on /predict, the token being FILE's first line",
    )
    security.add_argument("--certfile", type=Path, metavar="PEM", help="serve HTTPS with this certificate chain")
    security.add_argument("--keyfile", type=Path, metavar="PEM", help="its private key (if not in --certfile)")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port {args.port} is not a TCP port (0-65535)")
    if args.threads < 1:
        parser.error(f"--threads must be at least 1, got {args.threads}")
    if args.max_body < 1:
        parser.error(f"--max-body must be at least 1 byte, got {args.max_body}")
    if args.keyfile and not args.certfile:
        parser.error("--keyfile needs --certfile")
    args.token = None
    if args.token_file:
        try:
            args.token = read_token_file(args.token_file)
        except TokenFileError as error:
            parser.error(f"--token-file: {error}")
    args.ssl_context = None
    if args.certfile:
        try:
            args.ssl_context = server_context(args.certfile, args.keyfile)
        except (OSError, ssl.SSLError) as error:
            parser.error(f"--certfile/--keyfile: cannot load a certificate and key ({error})")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(logging.DEBUG if args.verbose else logging.INFO)
    # Requests waiting for a worker are normal under load; waitress warns about each one.
    logging.getLogger("waitress.queue").setLevel(logging.ERROR)
    service = BigService(args.model, max_body_bytes=args.max_body)
    try:
        handle = start_server(service, args.host, args.port, args.threads, args.token, args.ssl_context)
    except OSError as error:
        log.error("cannot listen on --host %s --port %d: %s", args.host, args.port, error)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=handle.stop).start())
    try:
        model = service.load()  # /health answers 503 until this returns
    except KwsError as error:
        log.error("cannot load --model %s: %s", args.model, error.explain())
        handle.stop()
        return 2
    log.info("serving model %s on %s%s", model.name, handle.url, " (/predict needs the token)" if args.token else "")
    try:
        handle.wait()
    except KeyboardInterrupt:
        handle.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
