"""How the ensemble's answers for one clip become one label.

* ``sum``: the label with the largest summed probability;
* ``vote``: each answer votes for its top label; a tie between labels is broken by
  their summed probability, so the vote never depends on arrival order.
"""

from __future__ import annotations

import numpy as np

POLICIES = ("sum", "vote")


def combine(scores: np.ndarray, policy: str) -> int:
    """The winning label index for answers ``scores`` of shape (answers, labels)."""
    if scores.ndim != 2 or not len(scores):
        raise ValueError("combine needs at least one answer")
    summed = scores.sum(axis=0)
    if policy == "sum":
        return int(summed.argmax())
    if policy == "vote":
        votes = np.bincount(scores.argmax(axis=1), minlength=scores.shape[1])
        tied = np.flatnonzero(votes == votes.max())
        return int(tied[summed[tied].argmax()])
    raise ValueError(f"unknown policy {policy!r}; choose one of {POLICIES}")
