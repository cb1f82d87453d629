"""DurationLog: a listener's hop latencies in fixed memory, with quantiles as np.quantile gives them."""

from __future__ import annotations

import numpy as np
import pytest

from kws.util.durations import BIN_RATIO, DurationLog


def test_quantiles_match_numpy_within_half_a_bin() -> None:
    durations = np.random.default_rng(3).lognormal(mean=np.log(3e-4), sigma=0.6, size=20_000)
    log = DurationLog()
    for value in durations:
        log.add(float(value))
    assert len(log) == 20_000 and log.total_s == pytest.approx(durations.sum())
    for q in (0.0, 0.5, 0.95, 0.99, 1.0):
        expected = float(np.quantile(durations, q, method="lower"))
        assert log.quantile(q) == pytest.approx(expected, rel=BIN_RATIO - 1)


def test_memory_stays_the_same_after_a_day_of_hops() -> None:
    log = DurationLog()
    before = log._bins.nbytes
    for _ in range(864_000):  # a day of 100 ms hops
        log.add(2e-4)
    assert log._bins.nbytes == before < 20_000
    assert log.quantile(0.5) == pytest.approx(2e-4, rel=BIN_RATIO - 1)


def test_extremes_and_an_empty_log() -> None:
    log = DurationLog()
    assert log.quantile(0.5) is None
    log.add(0.0)
    log.add(1e6)
    assert log.quantile(0.0) == pytest.approx(1e-6, rel=0.01) and log.quantile(1.0) >= 100.0
