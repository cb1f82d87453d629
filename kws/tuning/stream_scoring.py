"""Judging detections against a labelled stream: hits, wrong labels, misses, false alarms.

A word's scoring window runs from its first voiced sample to 1 s after its last one
(a detection must come no later than 1 s after the word ends). Within a keyword's window
the first detection counts: a **hit** with the right label, a **wrong label** otherwise;
none is a **miss**; any further one is an **extra** (the user would hear the command
twice). An other word **fires** when any detection falls in its window. A detection in
no window is a **false alarm**: in the stretch of noise alone it counts towards the
false alarms per hour of noise, elsewhere (in a pause between words) as a pause alarm.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.tuning.stream_synthesis import KEYWORD, SyntheticStream

#: How long after a word's end a detection still belongs to it.
LATE_S = 1.0


@dataclass(frozen=True)
class StreamScore:
    """Counts over one stream (or several, added with :meth:`plus`)."""

    keywords: int = 0
    hits: int = 0
    wrong: int = 0
    misses: int = 0
    extras: int = 0
    others: int = 0
    others_fired: int = 0
    noise_alarms: int = 0
    pause_alarms: int = 0
    noise_s: float = 0.0
    detections: int = 0

    def plus(self, other: StreamScore) -> StreamScore:
        return StreamScore(**{name: value + getattr(other, name) for name, value in asdict(self).items()})

    @property
    def hit_rate(self) -> float:
        return self.hits / self.keywords if self.keywords else 0.0

    @property
    def miss_rate(self) -> float:
        """Keywords not heard with their label: missed or wrongly labelled (the DET curve's miss rate)."""
        return 1.0 - self.hit_rate if self.keywords else 0.0

    @property
    def other_fire_rate(self) -> float:
        return self.others_fired / self.others if self.others else 0.0

    @property
    def false_alarms_per_hour(self) -> float:
        """False alarms per hour of noise alone."""
        return self.noise_alarms / (self.noise_s / 3600) if self.noise_s else 0.0

    def to_dict(self) -> dict[str, float | int]:
        figures = {"hit_rate": self.hit_rate, "other_fire_rate": self.other_fire_rate,
                   "false_alarms_per_hour": self.false_alarms_per_hour}
        return {**asdict(self), **{name: round(value, 6) for name, value in figures.items()}}


def score(stream: SyntheticStream, detections: Sequence[tuple[int, str]]) -> StreamScore:
    """Score (end sample, label) detections against the stream's events."""
    events = sorted(stream.events, key=lambda event: event.start)
    starts = np.array([event.start for event in events], dtype=np.int64)
    late = int(LATE_S * SAMPLE_RATE)
    heard: dict[int, list[str]] = {}
    noise_alarms = pause_alarms = 0
    for end, label in sorted(detections, key=lambda detection: detection[0]):
        position = int(np.searchsorted(starts, end, side="right")) - 1
        if position >= 0 and end <= events[position].end + late:
            heard.setdefault(position, []).append(label)
        elif end >= stream.noise_start:
            noise_alarms += 1
        else:
            pause_alarms += 1
    keywords = hits = wrong = extras = others = fired = 0
    for position, event in enumerate(events):
        labels = heard.get(position, [])
        if event.kind == KEYWORD:
            keywords += 1
            hits += bool(labels) and labels[0] == event.label
            wrong += bool(labels) and labels[0] != event.label
            extras += max(0, len(labels) - 1)
        else:
            others += 1
            fired += bool(labels)
    return StreamScore(
        keywords=keywords, hits=hits, wrong=wrong, misses=keywords - hits - wrong, extras=extras, others=others,
        others_fired=fired, noise_alarms=noise_alarms, pause_alarms=pause_alarms, noise_s=stream.noise_s,
        detections=len(detections),
    )


#: The listener's targets: hit rate, false alarms per hour of noise, share of other words that fire, Big share.
TARGETS = {"hit_rate": 0.95, "false_alarms_per_hour": 0.5, "other_fire_rate": 0.02, "big_fraction": 0.2}


def cost(result: StreamScore) -> float:
    """One figure to minimise: each kind of error in units of its target, so that none is free.

    Misses and wrong labels per 5 % of the keywords, other words firing per 2 %, false
    alarms per 0.5 an hour of noise, pause alarms and extras per 5 % of the keywords.
    """
    keywords = max(result.keywords, 1)
    return (
        result.miss_rate / (1 - TARGETS["hit_rate"])
        + result.other_fire_rate / TARGETS["other_fire_rate"]
        + result.false_alarms_per_hour / TARGETS["false_alarms_per_hour"]
        + (result.pause_alarms + result.extras) / keywords / (1 - TARGETS["hit_rate"])
    )


def meets_targets(result: StreamScore, big_fraction: float = 0.0) -> bool:
    return (result.hit_rate >= TARGETS["hit_rate"] and result.false_alarms_per_hour <= TARGETS["false_alarms_per_hour"]
            and result.other_fire_rate <= TARGETS["other_fire_rate"] and big_fraction <= TARGETS["big_fraction"])
