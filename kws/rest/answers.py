"""What the Pi accepts from a Big service: every answer is checked before the cascade uses it.

A Big service is a remote party: it may be misconfigured, out of date, broken or
hostile. :func:`parse_prediction` turns the body of a /predict answer into a
:class:`CheckedPrediction` only if it is JSON of the documented shape, speaks of
the labels the Pi expects, and carries a probability vector of the right length
whose top score is the label it names; :func:`parse_model_info` does the same
for /model. Anything else is an :class:`AnswerError` whose ``reason`` (one of
:data:`ANSWER_REASONS`) the cascade report counts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kws.data.clips import keywords_of
from kws.errors import KwsError

#: Why an answer was not used: not JSON at all; JSON of another shape; labels other than the
#: Pi's (or a label outside them); scores that are no probability vector over those labels.
ANSWER_REASONS = ("not_json", "bad_answer", "bad_labels", "bad_scores")
#: How far scores may stray from a probability vector (the service rounds them to 6 decimals).
PROBABILITY_TOLERANCE = 1e-3


class AnswerError(KwsError, ValueError):
    """An answer the Pi cannot use; ``reason`` says which kind of wrong (see :data:`ANSWER_REASONS`)."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass(frozen=True)
class CheckedPrediction:
    """A /predict answer that passed every check."""

    label: str
    index: int
    scores: np.ndarray
    labels: tuple[str, ...]
    model_name: str


def _json(body: bytes) -> Any:
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as error:  # ValueError: JSONDecodeError, huge ints
        raise AnswerError(f"answer is not JSON ({type(error).__name__}: {str(error)[:80]})", "not_json") from error


def _field(document: dict[str, Any], name: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = document.get(name)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise AnswerError(f"answer's {name!r} must be {what}, got {type(value).__name__}", "bad_answer")
    return value


def _labels(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(label, str) for label in value):
        raise AnswerError(f"{where} 'labels' must be a non-empty list of strings", "bad_answer")
    if len(set(value)) != len(value):
        raise AnswerError(f"{where} 'labels' repeat a label: {value}", "bad_labels")
    return tuple(value)


def _scores(value: Any, count: int) -> np.ndarray:
    if not isinstance(value, list):
        raise AnswerError(f"answer's 'scores' must be a list, got {type(value).__name__}", "bad_answer")
    if len(value) != count:
        raise AnswerError(f"answer has {len(value)} scores for {count} labels", "bad_scores")
    if not all(isinstance(score, (int, float)) and not isinstance(score, bool) for score in value):
        raise AnswerError("answer's scores must all be numbers", "bad_scores")
    try:
        scores = [float(score) for score in value]
    except OverflowError as error:  # an integer too large for a double
        raise AnswerError("answer's scores hold a number out of range", "bad_scores") from error
    if not all(math.isfinite(score) for score in scores):
        raise AnswerError("answer's scores hold NaN or infinity", "bad_scores")
    if min(scores) < -PROBABILITY_TOLERANCE or max(scores) > 1 + PROBABILITY_TOLERANCE:
        raise AnswerError("answer's scores are not probabilities (outside 0..1)", "bad_scores")
    if abs(sum(scores) - 1.0) > PROBABILITY_TOLERANCE:
        raise AnswerError(f"answer's scores sum to {sum(scores):.4f}, not 1", "bad_scores")
    return np.asarray(scores, dtype=np.float32)


def parse_prediction(body: bytes, expected_labels: Sequence[str] | None = None) -> CheckedPrediction:
    """A /predict answer, checked; ``expected_labels`` (the Pi's, any order) when known.

    Big must know exactly the Pi's keywords; either may also know non-keyword labels
    (``_silence_``, ``_unknown_``) the other does not, since those only ever refuse.
    """
    answer = _json(body)
    if not isinstance(answer, dict):
        raise AnswerError(f"answer must be a JSON object, got {type(answer).__name__}", "bad_answer")
    labels = _labels(answer.get("labels"), "answer's")
    if expected_labels is not None and keywords_of(labels) != keywords_of(expected_labels):
        theirs, ours = sorted(keywords_of(labels)), sorted(keywords_of(expected_labels))
        raise AnswerError(f"answer is for keywords {theirs}, not {ours}", "bad_labels")
    label = _field(answer, "label", str, "a string")
    if label not in labels:
        raise AnswerError(f"answer's label {label[:40]!r} is not one of its labels", "bad_labels")
    index = _field(answer, "index", int, "an integer")
    if not 0 <= index < len(labels) or labels[index] != label:
        raise AnswerError(f"answer's index {index} does not name its label {label!r}", "bad_answer")
    scores = _scores(answer.get("scores"), len(labels))
    if scores[index] < scores.max():
        raise AnswerError(f"answer's label {label!r} does not have the top score", "bad_scores")
    model = _field(answer, "model", dict, "an object")
    name = _field(model, "name", str, "a string")
    return CheckedPrediction(label=label, index=index, scores=scores, labels=labels, model_name=name)


def parse_model_info(body: bytes) -> dict[str, Any]:
    """A /model answer (the model's metadata), checked for what the Pi reads from it."""
    info = _json(body)
    if not isinstance(info, dict):
        raise AnswerError(f"model metadata must be a JSON object, got {type(info).__name__}", "bad_answer")
    _labels(info.get("labels"), "model metadata's")
    if not isinstance(info.get("name"), str):
        raise AnswerError("model metadata's 'name' must be a string", "bad_answer")
    digests = info.get("sha256")
    if not isinstance(digests, str) and not (
        isinstance(digests, dict) and all(isinstance(value, str) for value in digests.values())
    ):
        raise AnswerError("model metadata's 'sha256' must be a hex digest or map file kinds to them", "bad_answer")
    return info
