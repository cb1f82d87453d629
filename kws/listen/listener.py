"""The listening loop: a source's hops through Little, the detector and, when unsure, Big.

Each hop computes only its new feature frames and one window's probabilities
(:class:`~kws.listen.stream.WindowClassifier`); the detector decides
(:class:`~kws.listen.detector.Detector`). A detection Little is sure of is reported at
once; one in the uncertain band (``confirm_below``) goes to Big on a worker thread, so
a slow or missing Big never holds up the audio, and is reported when Big has answered.
Reports keep the stream's order, and ``time_s`` is always the moment of detection in
the stream, not when Big answered.

A stream that ends in the middle of a hop has the hop completed with silence; one
that ends before a whole window has the window completed so; both are noted, never
an error. Ctrl-C (KeyboardInterrupt) ends the run like the end of the stream: what is
pending is settled and the statistics are complete.
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.listen.confirm import CONFIRMED, CORRECTED, UNAVAILABLE, BigConfirmer, Verdict
from kws.listen.detector import Candidate, Detector
from kws.listen.params import ListenParams
from kws.listen.source import AudioSource
from kws.listen.stream import AudioRing, WindowClassifier, check_streamable
from kws.model.runtime import KeywordModel
from kws.util.durations import DurationLog

log = logging.getLogger(__name__)

LITTLE, BIG = "little", "big"


class StopListening(Exception):
    """Raised by an ``emit`` that can take no more (a closed stdout): the run ends as at Ctrl-C."""


@dataclass(frozen=True)
class Detection:
    """One keyword heard, as reported: one JSON object per line on stdout."""

    time_s: float
    """Seconds from the stream's start to the moment of detection (the end of its window)."""
    label: str
    score: float
    decided_by: str
    """``little``, or ``big`` when Big confirmed or corrected it."""

    def to_dict(self) -> dict[str, object]:
        return {"time_s": round(self.time_s, 3), "label": self.label, "score": round(self.score, 4),
                "decided_by": self.decided_by}

    def to_json(self) -> str:
        return json.dumps(self.to_dict())


@dataclass
class Trace:
    """What became of one of Little's detections (for the report)."""

    candidate: Candidate
    little_label: str
    asked_big: bool
    verdict: Verdict | None = None
    detection: Detection | None = None

    def to_dict(self) -> dict[str, object]:
        return {
            "time_s": round(self.candidate.time_s, 3), "little_label": self.little_label,
            "little_score": round(self.candidate.score, 4), "asked_big": self.asked_big,
            "big_outcome": self.verdict.outcome if self.verdict else None,
            "reported": self.detection.to_dict() if self.detection else None,
        }


@dataclass
class ListenStats:
    """Everything a run measured; :mod:`kws.listen.report` turns it into the summary and the JSON report."""

    audio_samples: int = 0
    """Samples the source gave (padding excluded)."""
    padded_samples: int = 0
    hop_seconds: DurationLog = field(default_factory=DurationLog)
    """Processing time of the hops (features, Little, detector; Big runs beside it), in fixed memory."""
    traces: list[Trace] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    @property
    def audio_s(self) -> float:
        return self.audio_samples / SAMPLE_RATE

    @property
    def detections(self) -> list[Detection]:
        return [trace.detection for trace in self.traces if trace.detection is not None]


class _InOrder:
    """Detections waiting to be reported in stream order, some of them on Big's answer.

    The main thread reports what is ready after every hop; an answer from Big also reports at
    once from the worker thread (a live stream may be silent for a while, a file may have
    ended). One lock keeps the order; a report that finds it taken leaves the work to the
    holder, who looks again before letting go, so no answer waits for the next hop.
    """

    def __init__(self, emit: Callable[[Detection], None]) -> None:
        self._emit = emit
        self._queue: deque[tuple[Trace, Future[Verdict] | None]] = deque()
        self._lock = threading.Lock()
        self._again = threading.Event()
        self.stopped: StopListening | None = None
        """Set when ``emit`` refused from the worker thread; the main thread then stops."""

    def add(self, trace: Trace, answer: Future[Verdict] | None) -> None:
        with self._lock:
            self._queue.append((trace, answer))
        if answer is not None:
            answer.add_done_callback(self._answered)

    def _answered(self, _: Future[Verdict]) -> None:
        self._again.set()
        try:
            self.flush(blocking=False)
        except StopListening as stop:
            self.stopped = stop

    def flush(self, wait: bool = False, blocking: bool = True) -> None:
        """Report every detection at the front whose fate is known (all of them when ``wait``)."""
        while True:
            if not self._lock.acquire(blocking=blocking):
                return
            try:
                self._again.clear()
                self._report_ready(wait)
            finally:
                self._lock.release()
            if not self._again.is_set():
                return

    def _report_ready(self, wait: bool) -> None:
        while self._queue:
            trace, answer = self._queue[0]
            if answer is not None:
                if not wait and not answer.done():
                    return
                try:
                    trace.verdict = answer.result()
                except KeyboardInterrupt:  # a second Ctrl-C while Big is being waited for: Little's word stands
                    trace.verdict = Verdict(UNAVAILABLE)
            self._queue.popleft()
            trace.detection = settle(trace)
            if trace.detection is not None:
                self._emit(trace.detection)


def settle(trace: Trace) -> Detection | None:
    """The reported detection: Big's keyword when it confirmed or corrected, none when it rejected,
    Little's when it was not asked or gave no usable answer."""
    verdict, candidate = trace.verdict, trace.candidate
    if verdict is not None and verdict.outcome in (CONFIRMED, CORRECTED):
        return Detection(candidate.time_s, verdict.label or trace.little_label, float(verdict.score or 0.0), BIG)
    if verdict is not None and verdict.decided:
        return None
    return Detection(candidate.time_s, trace.little_label, candidate.score, LITTLE)


class _Interruption:
    """Ctrl-C and SIGTERM during a run, taken only where that is safe.

    Python raises KeyboardInterrupt between any two bytecodes, so one landing just after a
    lock was taken and before its ``try`` leaves the lock held, and the run's last flush then
    waits for it for ever. Here a signal stops the run at once only while the main thread
    waits for audio (it holds nothing then); otherwise it is noted and the run stops after the
    hop in progress, 100 ms later at most. Installed only on the main thread (signals go nowhere else).
    """

    def __init__(self) -> None:
        self.requested: str | None = None
        """Why the run is to stop, once a signal came."""
        self.waiting = False
        self._previous: dict[int, Any] = {}

    def install(self) -> _Interruption:
        if threading.current_thread() is threading.main_thread():
            for number in (signal.SIGINT, signal.SIGTERM):
                self._previous[number] = signal.signal(number, self._on_signal)
        return self

    def restore(self) -> None:
        for number, handler in self._previous.items():
            signal.signal(number, handler)
        self._previous.clear()

    def _on_signal(self, number: int, _frame: object) -> None:
        self.requested = "interrupted" if number == signal.SIGINT else "stopped by SIGTERM"
        if self.waiting:
            raise StopListening(self.requested)

    def check(self) -> None:
        if self.requested:
            raise StopListening(self.requested)


class Listener:
    """One stream, start to end; :meth:`run` may be called once."""

    def __init__(
        self,
        model: KeywordModel,
        params: ListenParams,
        confirmer: BigConfirmer | None = None,
        emit: Callable[[Detection], None] | None = None,
    ) -> None:
        check_streamable(model.feature_config, params.hop_samples)
        self.model = model
        self.params = params
        self.confirmer = confirmer
        self.classifier = WindowClassifier(model)
        self.detector = Detector(model.labels, params.smoothing_windows, params.threshold, params.suppression_samples)
        self.ring = AudioRing(model.feature_config.clip_samples)
        self.stats = ListenStats()
        self._end = 0
        self._output = _InOrder(emit or (lambda detection: None))
        self._pool: ThreadPoolExecutor | None = None

    def run(self, source: AudioSource) -> ListenStats:
        """Listen until the source ends or Ctrl-C; the statistics are complete either way."""
        hop = self.params.hop_samples
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="big-confirm") if self.confirmer else None
        interruption = _Interruption().install()
        try:
            while (block := self._read(source, hop, interruption)).size:
                self.stats.audio_samples += block.size
                if block.size < hop:
                    self._note(f"the stream ended mid-hop: its last {1000 * block.size / SAMPLE_RATE:.0f} ms "
                               "were completed with silence")
                    self.stats.padded_samples += hop - block.size
                    block = np.concatenate([block, np.zeros(hop - block.size, dtype=np.int16)])
                self._hop(block)
                interruption.check()
            if self.stats.audio_samples == 0:
                self._note("the stream was empty")
            elif not self.classifier.features.ready:
                self._note(f"the stream ({self.stats.audio_s:.2f} s) ended before a whole window: "
                           "the window was completed with silence")
                while not self.classifier.features.ready:
                    self.stats.padded_samples += hop
                    self._hop(np.zeros(hop, dtype=np.int16))
        except (KeyboardInterrupt, StopListening) as stop:
            self.stats.interrupted = True
            self._note(f"stopped after {self.stats.audio_s:.1f} s of audio ({str(stop) or 'interrupted'})")
        finally:
            interruption.restore()  # a second Ctrl-C while Big's last answers are awaited: Little's words stand
            self._output.flush(wait=True)
            if self._pool is not None:
                self._pool.shutdown(wait=False)
        self.stats.notes.extend(source.notes)
        return self.stats

    @staticmethod
    def _read(source: AudioSource, hop: int, interruption: _Interruption) -> np.ndarray:
        """The next hop of audio, where a Ctrl-C may stop the run at once (nothing is held while waiting)."""
        interruption.waiting = True
        try:
            return source.read(hop)
        finally:
            interruption.waiting = False

    def _note(self, message: str) -> None:
        log.info(message)
        self.stats.notes.append(message)

    def _hop(self, block: np.ndarray) -> None:
        started = time.perf_counter()
        self._end += block.size
        self.ring.push(block)
        probabilities = self.classifier.push(block)
        candidate = None if probabilities is None else self.detector.step(self._end, probabilities)
        if candidate is not None:
            self._detected(candidate)
        self.stats.hop_seconds.add(time.perf_counter() - started)
        self._output.flush()
        if self._output.stopped is not None:
            raise self._output.stopped

    def _detected(self, candidate: Candidate) -> None:
        label = self.model.labels[candidate.index]
        asked = self.confirmer is not None and self.params.asks_big(candidate.score)
        trace = Trace(candidate, label, asked)
        self.stats.traces.append(trace)
        answer = None
        if asked and self._pool is not None and self.confirmer is not None:
            answer = self._pool.submit(self.confirmer.confirm, label, self.ring.copy())
        self._output.add(trace, answer)
