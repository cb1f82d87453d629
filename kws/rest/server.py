"""Serve a WSGI app so that no client can stall or exhaust the service: waitress, bounded and tuned.

Why waitress and not cheroot (which served the app before): cheroot hands a
connection to a worker thread as soon as its first byte arrives, and the worker
then blocks reading the rest, so eight clients trickling their headers took all
eight workers and /health went silent. Waitress reads every request in one
asynchronous I/O loop and hands a worker only a *complete* request, so slow
clients cost a socket and a small buffer each, never a worker.

On top of waitress's own limits (head size, body size, idle connections) this
module adds what it lacks, using its documented extension points (the parser,
channel and error-task classes and the server's maintenance pass):

====  =====================================================================
414   request line over :attr:`ServerLimits.max_request_line` bytes
431   request head over ``max_header_bytes``, or more than ``max_headers`` lines
413   body over ``max_body_bytes`` (Content-Length or chunked, while reading)
400   malformed HTTP: bad chunked framing, a bad header line, a bad request line
501   a Transfer-Encoding other than chunked (RFC 9112, section 6.1)
====  =====================================================================

All of them come back as JSON, ``{"error": ..., "status": N}``, like every error
of the app, and the connection is closed after them. A request must arrive
whole within ``read_deadline_s`` of its first byte (a connection that has not
sent a complete first request within that time of connecting is treated the
same way), else the connection is closed; an idle keep-alive connection is
closed after ``idle_timeout_s``. So memory stays within
``connection_limit x (max_header_bytes + max_body_bytes)`` of rest, whatever
the clients send. HTTPS, when asked for, is :mod:`kws.rest.tls`.
"""

from __future__ import annotations

import json
import logging
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any

from waitress import wasyncore
from waitress.adjustments import Adjustments
from waitress.channel import HTTPChannel
from waitress.parser import HTTPRequestParser
from waitress.server import TcpWSGIServer
from waitress.task import ErrorTask, ThreadedTaskDispatcher
from waitress.utilities import BadRequest, RequestHeaderFieldsTooLarge

from kws.rest.metrics import HttpMetrics
from kws.rest.tls import TlsChannelMixin

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class ServerLimits:
    """What one request may cost the server; every limit is enforced while reading."""

    max_body_bytes: int = 64 * 1024
    max_request_line: int = 4096
    """Method, target and version; longer is 414 (nginx and most proxies allow 4-8 KiB)."""
    max_header_bytes: int = 16 * 1024
    """The whole head, request line included; longer is 431."""
    max_headers: int = 100
    """Header lines; more is 431 (Apache's LimitRequestFields default)."""
    read_deadline_s: float = 15.0
    """A request must arrive whole within this of its first byte; a slow-loris client is dropped."""
    idle_timeout_s: int = 60
    """A keep-alive connection with no request in progress is closed after this."""
    connection_limit: int = 1000
    """Open connections at most; past it, new ones wait in the listen backlog."""


#: The first byte of a TLS record that carries a handshake (a ClientHello), followed by major version 3.
TLS_HANDSHAKE = b"\x16"


class UriTooLong(BadRequest):
    code = 414
    reason = "URI Too Long"


def _error_message(error: Any, limits: ServerLimits) -> str:
    """What the client reads: the limit it crossed or what is malformed, in this service's words."""
    detail = str(error.body)
    if error.code == 413:
        return f"body is over the {limits.max_body_bytes}-byte limit"
    if error.code == 431 and detail.startswith("exceeds max_header"):
        return f"request head is over the {limits.max_header_bytes}-byte limit"
    if error.code == 400:
        return f"malformed HTTP request: {detail}"
    if error.code == 501:
        return f"{detail.rstrip('.')}: only chunked is"
    if error.code >= 500:
        return "internal error; the service log has the details"
    return detail


class _LimitedParser(HTTPRequestParser):
    """Waitress's request parser with the 414 and header-count checks it lacks, and a start time."""

    limits = ServerLimits()
    header_lines = 0

    def __init__(self, adj: Adjustments) -> None:
        super().__init__(adj)
        self.started = time.monotonic()

    def received(self, data: bytes) -> int:
        if not self.header_plus and data[:1] == TLS_HANDSHAKE and data[1:2] == b"\x03":
            # A TLS ClientHello has no CRLF: waiting for the end of its "head" would let an https://
            # client time out. Say at once what it is: the answer is plain text, its TLS layer fails.
            self.parse_header(b"GET / HTTP/1.0\r\n")
            self._refuse(BadRequest("a TLS handshake reached this plain-HTTP service: use an http:// URL "
                                    "(or put nginx with TLS in front, deploy/nginx)"))
            return len(data)
        if not self.headers_finished and not self.completed:
            head = (self.header_plus + data).lstrip()  # waitress skips blank lines before a request
            line_end = head.find(b"\r\n")
            line_length = line_end if line_end >= 0 else len(head)
            if line_length > self.limits.max_request_line:
                self.parse_header(b"GET / HTTP/1.0\r\n")  # what waitress does for its own head errors
                self._refuse(UriTooLong(f"request line is over the {self.limits.max_request_line}-byte limit"))
                return len(data)
        consumed = super().received(data)
        if self.headers_finished and self.error is None and self.header_lines > self.limits.max_headers:
            self._refuse(RequestHeaderFieldsTooLarge(
                f"request has {self.header_lines} header lines, over the limit of {self.limits.max_headers}"
            ))
        if self.error is not None:  # refused already: no "100 Continue" inviting the body first
            self.expect_continue = False
        return consumed

    def parse_header(self, header_plus: bytes) -> None:
        # header_plus is the request line, the header lines and the blank line, each ended by CRLF.
        self.header_lines = header_plus.count(b"\r\n") - 2
        super().parse_header(header_plus)

    def _refuse(self, error: BadRequest) -> None:
        self.error = error
        self.completed = True


class _JsonErrorTask(ErrorTask):
    """Waitress's own error answers (400, 413, 414, 431, 501, 500) as the service's JSON errors."""

    def execute(self) -> None:
        error = self.request.error
        server = self.channel.server
        body = json.dumps(
            {"error": _error_message(error, server.limits), "status": error.code}, separators=(",", ":")
        ).encode("utf-8")
        self.status = f"{error.code} {error.reason}"
        self.response_headers.append(("Content-Type", JSON_CONTENT_TYPE))
        self.set_close_on_finish()
        self.content_length = len(body)
        self.write(body)
        if server.http_metrics is not None:
            server.http_metrics.observe("", error.code, 0.0)  # never reached the app: counted as path "other"


class LimitedChannel(HTTPChannel):
    """One connection: waitress's, with JSON errors and the clock the read deadline needs."""

    error_task_class = _JsonErrorTask
    first_request_done = False

    def receiving_since(self) -> float | None:
        """Monotonic time the request now arriving began; None while idle between requests."""
        if self.request is not None:
            return self.request.started
        return None if self.first_request_done else self.connected_at

    def service(self) -> None:
        self.first_request_done = True
        super().service()

    def __init__(self, server: Any, sock: Any, addr: Any, adj: Adjustments, map: Any = None) -> None:
        self.connected_at = time.monotonic()
        super().__init__(server, sock, addr, adj, map)


class TlsChannel(TlsChannelMixin, LimitedChannel):
    """A connection served over TLS (:mod:`kws.rest.tls`), with the same limits and JSON errors."""


class _LimitedServer(TcpWSGIServer):
    """Waitress's TCP server; its maintenance pass also closes connections past the read deadline."""

    limits = ServerLimits()
    http_metrics: HttpMetrics | None = None
    ssl_context: ssl.SSLContext | None = None

    def maintenance(self, now: float) -> None:
        super().maintenance(now)  # idle keep-alive connections
        cutoff = time.monotonic() - self.limits.read_deadline_s
        for channel in list(self.active_channels.values()):
            since = channel.receiving_since()
            if since is not None and since < cutoff and not channel.requests:
                log.debug("closing %s: no complete request within %.0f s", channel.addr, self.limits.read_deadline_s)
                channel.will_close = True

    def drain(self) -> int:
        """Stop accepting, and close each connection with no request in progress; how many stay open.

        Runs in the I/O thread (through the trigger); called again until none is left, so
        requests already read are answered before the server goes.
        """
        if self.accepting:
            self.accepting = False
            wasyncore.dispatcher.close(self)  # the listening socket only: the trigger must keep working
        for channel in list(self.active_channels.values()):
            if not channel.requests:
                channel.will_close = True
        return len(self.active_channels)


class ServerHandle:
    """A running server: its URL, and :meth:`stop` to shut it down."""

    def __init__(self, server: _LimitedServer, thread: threading.Thread, metrics: HttpMetrics | None) -> None:
        self._server = server
        self._thread = thread
        self.metrics = metrics
        """The server's request counters (what /metrics shows)."""
        self.host = str(server.effective_host)
        self.port = int(server.effective_port)
        self.scheme = "https" if server.ssl_context is not None else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    def stop(self, grace_s: float = 5.0) -> None:
        """Stop accepting, answer the requests already read (for up to ``grace_s``), close every
        connection and wait for the workers."""
        server = self._server
        deadline = time.monotonic() + grace_s
        while self._thread.is_alive() and time.monotonic() < deadline and self._drain_step() != 0:
            time.sleep(0.01)
        if self._thread.is_alive():
            server.trigger.pull_trigger(lambda: wasyncore.close_all(server._map))
            self._thread.join(timeout=10)
        server.task_dispatcher.shutdown(cancel_pending=True, timeout=5)
        log.info("stopped listening on %s", self.url)

    def _drain_step(self) -> int | None:
        """One :meth:`_LimitedServer.drain` in the I/O thread: the connections left, None if it did not run."""
        done = threading.Event()
        left: list[int] = []
        self._server.trigger.pull_trigger(lambda: (left.append(self._server.drain()), done.set()))
        return left[0] if done.wait(timeout=1.0) else None

    def wait(self) -> None:
        """Block until the server stops (or the process is interrupted)."""
        while self._thread.is_alive():
            self._thread.join(timeout=0.5)

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def serve(
    app: Any,
    host: str,
    port: int,
    threads: int,
    limits: ServerLimits = ServerLimits(),
    metrics: HttpMetrics | None = None,
    ssl_context: ssl.SSLContext | None = None,
    name: str = "kws-big-service",
) -> ServerHandle:
    """Listen on ``host:port`` (0 picks a free port) and serve ``app`` from a background thread.

    ``threads`` workers run the app; the connections themselves are read by one I/O
    thread, so the number of connected (or slow) clients does not depend on it.
    Raises OSError when the address cannot be bound.
    """
    adjustments = Adjustments(
        host=host,
        port=port,
        threads=threads,
        ident=name,
        url_scheme="https" if ssl_context is not None else "http",
        connection_limit=limits.connection_limit,
        channel_timeout=limits.idle_timeout_s,
        cleanup_interval=1,  # how often maintenance (and so the read deadline) runs
        max_request_header_size=limits.max_header_bytes,
        max_request_body_size=limits.max_body_bytes + 1,  # waitress refuses at >=; the limit itself is allowed
        asyncore_use_poll=True,  # select() cannot watch file descriptors above 1023
        log_socket_errors=False,  # resets by hostile clients are routine, not tracebacks for the log
        expose_tracebacks=False,
        recv_bytes=65536,  # a 43 KB clip in one or two reads, not six: less server CPU per clip
    )
    dispatcher = ThreadedTaskDispatcher()
    dispatcher.set_thread_count(threads)
    parser = type("Parser", (_LimitedParser,), {"limits": limits})
    channel_base = TlsChannel if ssl_context is not None else LimitedChannel
    channel = type("Channel", (channel_base,), {"parser_class": parser})
    server_class = type(
        "Server",
        (_LimitedServer,),
        {"limits": limits, "http_metrics": metrics, "ssl_context": ssl_context, "channel_class": channel},
    )
    server = server_class(app, map={}, dispatcher=dispatcher, adj=adjustments)
    thread = threading.Thread(target=server.run, name=f"{name}-{server.effective_port}", daemon=True)
    thread.start()
    handle = ServerHandle(server, thread, metrics)
    log.info("listening on %s with %d worker threads", handle.url, threads)
    return handle
