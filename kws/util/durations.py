"""Durations of a run of any length, in fixed memory: how a process that listens for months keeps its latencies.

A list with one float per 100 ms hop grows by about 35 MB a day. :class:`DurationLog`
keeps the count and the total exactly and the distribution as a histogram of
log-spaced bins (1 % wide, from 1 µs to 100 s: 1 853 counters, 15 KB), from which
any quantile of the whole run is read to within half a bin, 0.5 %.
"""

from __future__ import annotations

import math

import numpy as np

#: The shortest and longest durations the bins tell apart; anything outside falls in the first or last bin.
SHORTEST_S = 1e-6
LONGEST_S = 100.0
#: Each bin is this much wider than the one before: quantiles are exact to within half of it.
BIN_RATIO = 1.01
_LOG_RATIO = math.log(BIN_RATIO)
_BINS = int(math.ceil(math.log(LONGEST_S / SHORTEST_S) / _LOG_RATIO)) + 1


class DurationLog:
    """Count, total and quantiles of durations in seconds, in the same memory after a second or a year."""

    def __init__(self) -> None:
        self.count = 0
        self.total_s = 0.0
        self._bins = np.zeros(_BINS, dtype=np.int64)

    def add(self, seconds: float) -> None:
        self.count += 1
        self.total_s += seconds
        position = math.log(max(seconds, SHORTEST_S) / SHORTEST_S) / _LOG_RATIO
        self._bins[min(int(position), _BINS - 1)] += 1

    def __len__(self) -> int:
        return self.count

    def quantile(self, q: float) -> float | None:
        """The ``q`` quantile (0 to 1) of every duration added, to within 0.5 %; None when there are none."""
        if not self.count:
            return None
        rank = min(self.count - 1, int(q * (self.count - 1)))  # the lower of the two around q, as 'lower' would
        index = int(np.searchsorted(np.cumsum(self._bins), rank, side="right"))
        return SHORTEST_S * BIN_RATIO ** (index + 0.5)  # the bin's geometric middle
