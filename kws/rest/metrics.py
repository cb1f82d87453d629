"""The Big service's Prometheus metrics, kept with ``prometheus_client``.

Counting happens in WSGI middleware rather than inside the web framework so that
every answer is counted the same way, including the ones the framework makes
itself (404, 405, 413) and the errors of a crashed handler. Each server has its
own registry, so several servers in one process (tests, the benchmark) never mix
their counts; the process collector adds resident memory, CPU seconds and open
file descriptors.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

#: Upper bounds (seconds) of the latency histogram buckets; ``+Inf`` is implied.
DEFAULT_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: The media type of the exposition ``render`` returns.
PROMETHEUS_CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST


class HttpMetrics:
    """Request counters and a latency histogram of one HTTP service (thread-safe, as
    ``prometheus_client`` is).

    ``known_paths`` keeps the label set small: any other path is counted as
    ``other``, so a scanner probing random URLs cannot grow the metrics forever.
    """

    def __init__(
        self,
        known_paths: Sequence[str],
        timed_path: str,
        prefix: str = "kws",
        buckets: Sequence[float] = DEFAULT_LATENCY_BUCKETS,
    ) -> None:
        self.known_paths = frozenset(known_paths)
        self.timed_path = timed_path
        self.prefix = prefix
        self.registry = CollectorRegistry(auto_describe=True)
        prometheus_client.ProcessCollector(registry=self.registry)
        self._requests = Counter(
            f"{prefix}_http_requests", "HTTP requests answered, by path and status code.",
            ["path", "status"], registry=self.registry,
        )
        self._errors = Counter(
            f"{prefix}_http_errors", "HTTP requests answered with a 4xx or 5xx status, by status code.",
            ["status"], registry=self.registry,
        )
        self._latency = Histogram(
            f"{prefix}_predict_latency_seconds", f"Time to answer {timed_path}, from request to response body.",
            buckets=tuple(sorted(buckets)), registry=self.registry,
        )

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        path = path if path in self.known_paths else "other"
        self._requests.labels(path=path, status=str(status)).inc()
        if status >= 400:
            self._errors.labels(status=str(status)).inc()
        if path == self.timed_path:
            self._latency.observe(seconds)

    def add_gauge(self, name: str, help_text: str, read: Callable[[], float]) -> None:
        """A gauge whose value is read when /metrics is scraped (e.g. whether the model is loaded)."""
        Gauge(f"{self.prefix}_{name}", help_text, registry=self.registry).set_function(read)

    def requests_total(self, path: str, status: int) -> int:
        labels = {"path": path, "status": str(status)}
        value = self.registry.get_sample_value(f"{self.prefix}_http_requests_total", labels)
        return int(value or 0)

    def render(self) -> bytes:
        """The exposition text of every metric of this service."""
        return prometheus_client.generate_latest(self.registry)


WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def metrics_middleware(app: WsgiApp, metrics: HttpMetrics) -> WsgiApp:
    """Wrap a WSGI app so that each request is counted and timed into ``metrics``."""

    def counted_app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: dict[str, int] = {}

        def remembering_start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            seen["status"] = int(status.split(" ", 1)[0])
            return start_response(status, headers, exc_info)

        body = app(environ, remembering_start_response)
        try:
            chunks = list(body)  # the framework's bodies are small; collecting them times the whole answer
        finally:
            close = getattr(body, "close", None)
            if close is not None:
                close()
        metrics.observe(environ.get("PATH_INFO", ""), seen.get("status", 500), time.perf_counter() - started)
        return chunks

    return counted_app
