"""Big's part: confirm, correct or reject a detection Little is unsure of.

The window of the detection goes to the Big service as the cascade sends a clip
(:meth:`kws.rest.client.BigClient.predict`, a SenML audio pack). Big's answer is judged
by :func:`judge`, which the calibration applies to the in-process Big model too:

* Big's best label is not a keyword (``_silence_``, ``_unknown_``), or its best
  keyword's probability is below ``big_min_score``: **rejected**, nothing is reported;
* otherwise Big's best keyword is the detection (**confirmed** when it is Little's,
  **corrected** when not), with Big's probability as its score.

When Big cannot answer (unreachable, 5xx), refuses the request (4xx: a bug on this
side, logged) or answers something unusable, Little's detection stands and is counted.
After Big was unreachable it is not asked again for :data:`RETRY_AFTER_S` (the detections
in between stand as Little's at once), so an outage with long timeouts does not hold
back the reports. Nothing Big says is used before it is checked.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kws.listen.detector import is_keyword, keyword_indices
from kws.rest.client import BigClient, BigRejected, BigUnavailable

log = logging.getLogger(__name__)

CONFIRMED, CORRECTED, REJECTED = "confirmed", "corrected", "rejected"
#: Big gave no usable answer, so Little's detection stands.
UNAVAILABLE, FAILED = "unavailable", "error"
OUTCOMES = (CONFIRMED, CORRECTED, REJECTED, UNAVAILABLE, FAILED)
#: Seconds during which an unreachable Big is not asked again.
RETRY_AFTER_S = 10.0


@dataclass(frozen=True)
class Verdict:
    """What asking Big about one detection gave, and what it cost."""

    outcome: str
    label: str | None = None
    """Big's keyword when confirmed or corrected."""
    score: float | None = None
    body_bytes: int = 0
    wire_bytes: int = 0
    seconds: float = 0.0

    @property
    def decided(self) -> bool:
        """Whether Big's word is final (it answered), rather than Little's standing."""
        return self.outcome in (CONFIRMED, CORRECTED, REJECTED)


def judge(little_label: str, labels: Sequence[str], probabilities: np.ndarray, min_score: float) -> Verdict:
    """Big's decision on a detection from its probabilities over ``labels`` (no cost filled in)."""
    keywords = keyword_indices(labels)
    keyword = int(keywords[int(np.argmax(probabilities[keywords]))])
    score = float(probabilities[keyword])
    if not is_keyword(labels[int(np.argmax(probabilities))]) or score < min_score:
        return Verdict(REJECTED, score=score)
    label = labels[keyword]
    return Verdict(CONFIRMED if label == little_label else CORRECTED, label=label, score=score)


class BigConfirmer:
    """Asks the Big service about detection windows; never raises, so the stream goes on whatever Big does."""

    def __init__(self, client: BigClient, min_score: float, retry_after_s: float = RETRY_AFTER_S) -> None:
        self.client = client
        self.min_score = min_score
        self.retry_after_s = retry_after_s
        self.not_sent = 0
        """Detections not sent because Big had just been unreachable."""
        self._down_until = 0.0
        self._warned_error = False

    def confirm(self, little_label: str, window: np.ndarray) -> Verdict:
        started = time.perf_counter()
        if started < self._down_until:
            self.not_sent += 1
            return Verdict(UNAVAILABLE)
        try:
            answer = self.client.predict(window)
            labels = tuple(str(label) for label in answer.labels)
            probabilities = np.asarray(answer.scores, dtype=np.float64)  # checked probabilities (kws.rest.answers)
            if len(labels) != probabilities.shape[0] or not np.all(np.isfinite(probabilities)):
                raise ValueError(f"{len(labels)} labels but {probabilities.shape[0]} scores, or scores not finite")
            verdict = judge(little_label, labels, probabilities, self.min_score)
        except BigUnavailable:
            self._down_until = time.perf_counter() + self.retry_after_s
            return Verdict(UNAVAILABLE, seconds=time.perf_counter() - started)
        except BigRejected as error:  # our pack was refused: a bug here, worth one loud line
            self._warn(f"Big refused a detection window ({error}); Little's detections stand")
            return Verdict(FAILED, seconds=time.perf_counter() - started)
        except (KeyError, TypeError, ValueError, IndexError) as error:
            self._warn(f"Big's answer is unusable ({type(error).__name__}: {error}); Little's detections stand")
            return Verdict(FAILED, seconds=time.perf_counter() - started)
        return Verdict(
            verdict.outcome, verdict.label, verdict.score,
            body_bytes=answer.body_bytes, wire_bytes=answer.wire_bytes, seconds=time.perf_counter() - started,
        )

    def _warn(self, message: str) -> None:
        if not self._warned_error:
            log.error(message)
            self._warned_error = True
