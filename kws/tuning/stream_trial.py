"""A labelled stream through the live listener, scored: what the benchmark and the demo run.

The listener hears the stream exactly as it hears a file or a microphone (hop by hop,
Big over HTTP when a confirmer is given); its detections are then scored against the
stream's events (:mod:`kws.tuning.stream_scoring`).
"""

from __future__ import annotations

from collections.abc import Callable

from kws.listen.confirm import BigConfirmer
from kws.listen.listener import Detection, Listener, ListenStats
from kws.listen.params import ListenParams
from kws.listen.source import ArraySource
from kws.model.runtime import KeywordModel
from kws.tuning.stream_scoring import StreamScore, score
from kws.tuning.stream_synthesis import SyntheticStream


def live_detections(stats: ListenStats) -> list[tuple[int, str]]:
    """(end sample, label) of every reported detection, for :func:`kws.tuning.stream_scoring.score`."""
    return [(trace.candidate.end, trace.detection.label) for trace in stats.traces if trace.detection is not None]


def listen_to(
    stream: SyntheticStream,
    little: KeywordModel,
    params: ListenParams,
    confirmer: BigConfirmer | None = None,
    emit: Callable[[Detection], None] | None = None,
    name: str = "synthetic stream",
) -> tuple[ListenStats, StreamScore]:
    """Run the listener over the stream; its statistics and its score."""
    stats = Listener(little, params, confirmer, emit).run(ArraySource(stream.samples, name))
    return stats, score(stream, live_detections(stats))
