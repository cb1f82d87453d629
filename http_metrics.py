"""Request counters and a latency histogram in the Prometheus text format.

Kept as WSGI middleware rather than inside the web framework so that every
answer is counted the same way, including the ones the framework makes
itself (404, 405, 413) and the errors of a crashed handler.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any

#: Upper bounds (seconds) of the latency histogram buckets; ``+Inf`` is implied.
DEFAULT_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: The media type of the Prometheus text exposition format.
PROMETHEUS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class HttpMetrics:
    """Thread-safe counters of one HTTP service.

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
        self.buckets = tuple(sorted(buckets))
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, int]] = Counter()
        self._errors: Counter[int] = Counter()
        self._bucket_counts = [0] * (len(self.buckets) + 1)
        self._latency_sum = 0.0

    def observe(self, path: str, status: int, seconds: float) -> None:
        """Count one answered request."""
        path = path if path in self.known_paths else "other"
        with self._lock:
            self._requests[(path, status)] += 1
            if status >= 400:
                self._errors[status] += 1
            if path == self.timed_path:
                self._bucket_counts[bisect.bisect_left(self.buckets, seconds)] += 1
                self._latency_sum += seconds

    def requests_total(self, path: str, status: int) -> int:
        with self._lock:
            return self._requests[(path, status)]

    def render(self, gauges: dict[str, tuple[str, float]] | None = None) -> str:
        """The exposition text; ``gauges`` maps a name to (help, value) for extra one-off values."""
        p = self.prefix
        with self._lock:
            requests = sorted(self._requests.items())
            errors = sorted(self._errors.items())
            bucket_counts = list(self._bucket_counts)
            latency_sum = self._latency_sum
        lines = [
            f"# HELP {p}_http_requests_total HTTP requests answered, by path and status code.",
            f"# TYPE {p}_http_requests_total counter",
            *(
                f'{p}_http_requests_total{{path="{path}",status="{status}"}} {count}'
                for (path, status), count in requests
            ),
            f"# HELP {p}_http_errors_total HTTP requests answered with a 4xx or 5xx status, by status code.",
            f"# TYPE {p}_http_errors_total counter",
            *(f'{p}_http_errors_total{{status="{status}"}} {count}' for status, count in errors),
            f"# HELP {p}_predict_latency_seconds Time to answer {self.timed_path}, from request to response body.",
            f"# TYPE {p}_predict_latency_seconds histogram",
        ]
        cumulative = 0
        for bound, count in zip((*self.buckets, float("inf")), bucket_counts):
            cumulative += count
            lines.append(f'{p}_predict_latency_seconds_bucket{{le="{_prometheus_float(bound)}"}} {cumulative}')
        lines += [
            f"{p}_predict_latency_seconds_sum {latency_sum:.6f}",
            f"{p}_predict_latency_seconds_count {cumulative}",
        ]
        for name, (help_text, value) in (gauges or {}).items():
            lines += [f"# HELP {p}_{name} {help_text}", f"# TYPE {p}_{name} gauge", f"{p}_{name} {value:g}"]
        return "\n".join(lines) + "\n"


def _prometheus_float(value: float) -> str:
    return "+Inf" if value == float("inf") else repr(value)


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
