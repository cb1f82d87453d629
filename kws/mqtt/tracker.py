"""Collect several models' answers for each clip and combine them into one prediction.

The cooperative client publishes clips without waiting; answers come back in any
order, maybe twice (QoS 1 is at-least-once), maybe never (a client died, a QoS 0
message was lost). A clip is *complete* when ``expect`` different clients answered
it, or *expired* when its deadline passed first; either way it is then combined
from whatever answers it has, and a clip with none counts as wrong.

The combine policies (sum of scores, majority vote) are in :mod:`kws.mqtt.policies`.
Answers are mapped onto the tracker's label order by name, so models that list
their labels in another order still combine correctly.

An answer is combined only for a clip this run published and has not finished,
once per answer source (a client, or a share group of replicas), over exactly the
tracker's labels, and as a probability vector; who may answer at all is the
roster's question (:mod:`kws.mqtt.roster`), asked before. Every answer not used is
counted by reason (and by sender) for the report's ``rejected_answers``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np

from kws.mqtt.policies import POLICIES, combine
from kws.mqtt.protocol import Prediction

# Why an answer was not used (counted, and logged by the caller).
ACCEPTED = "accepted"
DUPLICATE = "duplicate"
UNKNOWN_CLIP = "unknown clip"
FINISHED_CLIP = "clip already finished"
OTHER_LABELS = "other label set"
NOT_PROBABILITIES = "not a probability vector"


@dataclass(frozen=True)
class Answer:
    client: str
    model: str
    scores: np.ndarray
    """Probabilities in the tracker's label order."""
    inference_ms: float
    received_at: float


@dataclass
class ClipState:
    """One published clip and what came back for it."""

    clip_id: str
    true_label: str
    sent_at: float
    deadline: float
    answers: dict[str, Answer] = field(default_factory=dict)
    """By answer source (client, or share group), so a redelivered answer is counted once."""
    finished_at: float | None = None
    predicted_label: str | None = None
    """None when no answer arrived: the clip counts as wrong."""
    complete: bool = False
    """True when ``expect`` answers arrived before the deadline."""

    @property
    def finished(self) -> bool:
        return self.finished_at is not None


class EnsembleTracker:
    """The clips in flight and finished, with the answers they got."""

    def __init__(self, labels: Sequence[str], expect: int, timeout_s: float, policy: str) -> None:
        if expect < 1:
            raise ValueError("expect at least one answer per clip")
        if policy not in POLICIES:
            raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
        self.labels = tuple(labels)
        self.expect = expect
        self.timeout_s = timeout_s
        self.policy = policy
        self.rejected: Counter[str] = Counter()
        """Answers not used, by reason."""
        self.rejected_senders: Counter[str] = Counter()
        """Answers not used, by the client level of their topic."""
        self._clips: dict[str, ClipState] = {}
        self._pending: dict[str, ClipState] = {}

    # Bookkeeping -------------------------------------------------------------------
    def sent(self, clip_id: str, true_label: str, now: float) -> None:
        clip = ClipState(clip_id, true_label, sent_at=now, deadline=now + self.timeout_s)
        self._clips[clip_id] = clip
        self._pending[clip_id] = clip

    def lost(self, clip_id: str, now: float) -> None:
        """The clip never reached the broker (QoS 0 while disconnected): finish it unanswered."""
        self._finish(self._pending[clip_id], now)

    def add(self, clip_id: str, prediction: Prediction, received_at: float, source: str | None = None) -> str:
        """Record an answer from ``source`` (default: its client); returns :data:`ACCEPTED` or why it was rejected."""
        source = source or prediction.client
        clip = self._clips.get(clip_id)
        if clip is None:
            outcome = UNKNOWN_CLIP
        elif clip.finished:
            outcome = FINISHED_CLIP
        elif source in clip.answers:
            outcome = DUPLICATE
        elif set(prediction.labels) != set(self.labels):
            outcome = OTHER_LABELS
        elif prediction.probability_problem() is not None:
            outcome = NOT_PROBABILITIES
        else:
            position = {label: index for index, label in enumerate(prediction.labels)}
            scores = np.array([prediction.scores[position[label]] for label in self.labels], dtype=np.float64)
            clip.answers[source] = Answer(
                prediction.client, prediction.model, scores, prediction.inference_ms, received_at
            )
            if len(clip.answers) >= self.expect:
                clip.complete = True
                self._finish(clip, received_at)
            return ACCEPTED
        self.reject(outcome, prediction.client)
        return outcome

    def reject(self, reason: str, sender: str) -> None:
        """Count an answer that is not used: one that could not even be read, or whose sender may not answer."""
        self.rejected[reason] += 1
        self.rejected_senders[sender] += 1

    def expire(self, now: float) -> int:
        """Finish every clip whose deadline has passed; returns how many."""
        overdue = [clip for clip in self._pending.values() if clip.deadline <= now]
        for clip in overdue:
            self._finish(clip, now)
        return len(overdue)

    def give_up(self, now: float) -> int:
        """Finish every clip still waiting, as if its deadline were ``now`` (the run was interrupted)."""
        waiting = list(self._pending.values())
        for clip in waiting:
            self._finish(clip, now)
        return len(waiting)

    def _finish(self, clip: ClipState, now: float) -> None:
        clip.finished_at = now
        if clip.answers:
            scores = np.stack([answer.scores for answer in clip.answers.values()])
            clip.predicted_label = self.labels[combine(scores, self.policy)]
        del self._pending[clip.clip_id]

    # Views ---------------------------------------------------------------------------
    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def finished(self) -> int:
        return len(self._clips) - len(self._pending)

    def next_deadline(self) -> float | None:
        return min((clip.deadline for clip in self._pending.values()), default=None)

    def __iter__(self) -> Iterator[ClipState]:
        """Every clip, in the order it was sent."""
        return iter(self._clips.values())

    def __len__(self) -> int:
        return len(self._clips)
