"""The stream parameters: defaults, the model's calibrated ``listen`` section, and flags over both.

One source of truth: :mod:`kws.tuning.listen_calibration` writes the parameters into the Little
model's metadata beside its features (``models/little.json``, section ``listen``), and
every listener reads them from there. A model without the section gets
:data:`DEFAULTS`, the obvious sliding window (1 s window every 100 ms, three windows
averaged, detection at 0.9, then 1 s quiet; Big asked about scores below 0.95, and rejecting
when its best keyword has less than 0.5); flags override either, one value at a time.

The section::

    "listen": {
      "hop_s": 0.1, "smoothing_windows": 3, "threshold": 0.9, "suppression_s": 1.0,
      "confirm_below": 0.95, "big_min_score": 0.5,
      "little_only": {"smoothing_windows": 3, "threshold": 0.9, "suppression_s": 1.0},
      "calibration": {...how and on what they were chosen...}
    }

The top level is for Little with Big confirming; ``little_only`` holds the values
chosen for Little alone (``--little-only``), where no Big can reject a doubtful detection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kws.audio import SAMPLE_RATE
from kws.errors import KwsError

SECTION = "listen"
LITTLE_ONLY = "little_only"


class ParamsError(KwsError, ValueError):
    """Stream parameters that cannot be used (a value out of range, a malformed ``listen`` section)."""


@dataclass(frozen=True)
class ListenParams:
    """How a stream is turned into detections, and when Big is asked."""

    hop_s: float = 0.1
    """Seconds between two windows (the window itself is the model's clip, 1 s)."""
    smoothing_windows: int = 3
    """Posteriors of this many consecutive windows are averaged before the threshold."""
    threshold: float = 0.9
    """A keyword is detected when its smoothed probability reaches this."""
    suppression_s: float = 1.0
    """Seconds after a detection during which no other detection is made."""
    confirm_below: float = 0.95
    """Big is asked about detections scoring below this (0: never; 1: every detection)."""
    big_min_score: float = 0.5
    """Big's probability for its best keyword must reach this, or Big rejects the detection."""

    def __post_init__(self) -> None:
        checks = [
            (self.hop_s > 0, f"hop_s must be positive, got {self.hop_s}"),
            (
                isinstance(self.smoothing_windows, int) and not isinstance(self.smoothing_windows, bool)
                and self.smoothing_windows >= 1,
                f"smoothing_windows must be a whole number of at least 1, got {self.smoothing_windows!r}",
            ),
            (0.0 < self.threshold <= 1.0, f"threshold must be in (0, 1], got {self.threshold}"),
            (self.suppression_s >= 0.0, f"suppression_s must be at least 0, got {self.suppression_s}"),
            (0.0 <= self.confirm_below <= 1.0, f"confirm_below must be between 0 and 1, got {self.confirm_below}"),
            (0.0 <= self.big_min_score <= 1.0, f"big_min_score must be between 0 and 1, got {self.big_min_score}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ParamsError(message)

    @property
    def hop_samples(self) -> int:
        return round(self.hop_s * SAMPLE_RATE)

    @property
    def suppression_samples(self) -> int:
        return round(self.suppression_s * SAMPLE_RATE)

    def asks_big(self, score: float) -> bool:
        """The uncertain band: Big is asked when the detection's score is below ``confirm_below``
        (every detection when it is 1, none when it is 0)."""
        return self.confirm_below >= 1.0 or score < self.confirm_below

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: The parameters of a model without a ``listen`` section.
DEFAULTS = ListenParams()
FIELDS = tuple(field.name for field in dataclasses.fields(ListenParams))
#: What ``little_only`` may set: the detection itself, not Big's part.
LITTLE_ONLY_FIELDS = ("smoothing_windows", "threshold", "suppression_s")


def params_from_metadata(raw: Mapping[str, Any], little_only: bool = False) -> tuple[ListenParams, str]:
    """The parameters a model's metadata holds, and where they came from (for logs and reports).

    Raises ParamsError naming the bad entry when the section is malformed: a model that
    says something wrong about itself is an error, never silently replaced by defaults.
    """
    section = raw.get(SECTION)
    if section is None:
        return DEFAULTS, "defaults (the model has no listen section)"
    if not isinstance(section, Mapping):
        raise ParamsError("the listen section is not an object")
    values = {name: section[name] for name in FIELDS if name in section}
    origin = "the model's listen section"
    if little_only and LITTLE_ONLY in section:
        alone = section[LITTLE_ONLY]
        if not isinstance(alone, Mapping):
            raise ParamsError("listen.little_only is not an object")
        values.update({name: alone[name] for name in LITTLE_ONLY_FIELDS if name in alone})
        origin = "the model's listen.little_only section"
    try:
        return ListenParams(**values), origin
    except TypeError as error:
        raise ParamsError(f"listen section: {error}") from error


def with_overrides(params: ListenParams, **overrides: Any) -> ListenParams:
    """``params`` with every override that is not None (flags the user did not give are None)."""
    given = {name: value for name, value in overrides.items() if value is not None}
    return dataclasses.replace(params, **given) if given else params
