"""A circuit breaker: after a few failures in a row, stop asking a service for a cool-down.

Without it a Big service that is down, refuses the Pi or answers after 30 s
makes every unsure clip wait out its own timeout. With it, ``failures``
consecutive failures open the circuit: for ``cooldown_s`` the service is not
asked at all (the caller keeps its own answer at once), then one request is let
through; a success closes the circuit, a failure opens it for another cool-down.
Opening is logged once per outage and recovery once; the retries between are
debug lines.
"""

from __future__ import annotations

import logging
import threading
import time

log = logging.getLogger(__name__)

DEFAULT_FAILURES = 3
DEFAULT_COOLDOWN_S = 30.0


class CircuitBreaker:
    """Consecutive-failure circuit breaker (thread-safe); ``name`` is what the log lines call the service."""

    def __init__(self, name: str, failures: int = DEFAULT_FAILURES, cooldown_s: float = DEFAULT_COOLDOWN_S) -> None:
        if failures < 1 or cooldown_s < 0:
            raise ValueError(f"a breaker needs failures >= 1 and cooldown_s >= 0, got {failures} and {cooldown_s}")
        self.name = name
        self.failures = failures
        self.cooldown_s = cooldown_s
        self._lock = threading.Lock()
        self._consecutive = 0
        self._open_until: float | None = None
        self._trial = False
        self._warned = False
        self.openings = 0
        """How many times the circuit has opened (for reports)."""

    @property
    def is_open(self) -> bool:
        with self._lock:
            return self._open_until is not None and time.monotonic() < self._open_until

    def seconds_left(self) -> float:
        """Of the cool-down now running; 0 when the circuit is closed or the cool-down is over."""
        with self._lock:
            return 0.0 if self._open_until is None else max(0.0, self._open_until - time.monotonic())

    def allow(self) -> bool:
        """Whether to ask the service now: the circuit is closed, or the cool-down is over (one trial)."""
        with self._lock:
            now = time.monotonic()
            if self._open_until is None:
                return True
            if now < self._open_until:
                return False
            self._trial = True  # half-open: this request alone decides; the others wait another cool-down
            self._open_until = now + self.cooldown_s
            return True

    def success(self) -> None:
        with self._lock:
            recovered = self._open_until is not None
            self._consecutive = 0
            self._open_until = None
            self._trial = False
            self._warned = False
        if recovered:
            log.info("%s answers again; asking it again", self.name)

    def failure(self) -> None:
        with self._lock:
            self._consecutive += 1
            retrying = self._trial
            self._trial = False
            if not retrying and self._consecutive < self.failures:
                return
            self._open_until = time.monotonic() + self.cooldown_s
            self.openings += 1
            first = not self._warned
            self._warned = True
        if first:
            log.warning(
                "%s failed %d times in a row: not asking it for %.0f s, then once, and again after each failure",
                self.name, self._consecutive, self.cooldown_s,
            )
        else:
            log.debug("%s still fails; next try in %.0f s", self.name, self.cooldown_s)
