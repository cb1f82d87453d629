"""The parameters come from the model's listen section, fall back to documented defaults, and flags win."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kws.listen.params import DEFAULTS, ListenParams, params_from_metadata, with_overrides
from kws.model.metadata import write_section
from kws.model.runtime import load_model

SECTION = {
    "hop_s": 0.1, "smoothing_windows": 4, "threshold": 0.8, "suppression_s": 1.5, "confirm_below": 0.9,
    "big_min_score": 0.7, "little_only": {"smoothing_windows": 2, "threshold": 0.95, "suppression_s": 1.0},
    "calibration": {"split": "validation"},
}


def test_the_defaults_are_the_documented_obvious_window() -> None:
    assert DEFAULTS == ListenParams(0.1, 3, 0.9, 1.0, 0.95, 0.5)
    assert params_from_metadata({}) == (DEFAULTS, "defaults (the model has no listen section)")


def test_the_section_is_read_and_little_only_has_its_own_values() -> None:
    params, origin = params_from_metadata({"listen": SECTION})
    assert params == ListenParams(0.1, 4, 0.8, 1.5, 0.9, 0.7) and origin == "the model's listen section"
    alone, origin = params_from_metadata({"listen": SECTION}, little_only=True)
    assert (alone.smoothing_windows, alone.threshold, alone.suppression_s) == (2, 0.95, 1.0)
    assert origin == "the model's listen.little_only section"


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ([], "not an object"),
        ({"threshold": 1.5}, "threshold must be in"),
        ({"threshold": "high"}, "listen section"),
        ({"smoothing_windows": 2.5}, "whole number"),
        ({"hop_s": 0}, "hop_s must be positive"),
        ({"confirm_below": -1}, "confirm_below"),
        ({"little_only": 3}, "little_only is not an object"),
    ],
)
def test_a_malformed_section_is_an_error_never_the_defaults(section, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        params_from_metadata({"listen": section}, little_only=True)


def test_flags_override_one_value_at_a_time() -> None:
    assert with_overrides(DEFAULTS, threshold=0.7, smoothing_windows=None) == ListenParams(0.1, 3, 0.7, 1.0, 0.95, 0.5)
    assert with_overrides(DEFAULTS) is DEFAULTS
    with pytest.raises(ValueError):
        with_overrides(DEFAULTS, suppression_s=-1.0)


def test_asks_big_is_the_uncertain_band() -> None:
    band = ListenParams(threshold=0.8, confirm_below=0.9)
    assert band.asks_big(0.85) and not band.asks_big(0.9) and not band.asks_big(0.99)
    assert ListenParams(confirm_below=1.0).asks_big(1.0) and not ListenParams(confirm_below=0.0).asks_big(0.9)


def test_a_written_section_travels_with_the_model(shipped_model, tmp_path: Path) -> None:
    """write_section keeps the model loadable (sha256 covers the model files, not the JSON)."""
    stem = shipped_model("little")
    for path in stem.parent.glob("little.*"):
        shutil.copyfile(path, tmp_path / path.name)
    write_section(tmp_path / "little.json", "listen", SECTION)
    model = load_model(tmp_path / "little", prefer="zlib")
    assert params_from_metadata(model.metadata.raw)[0].threshold == 0.8
    assert json.loads((tmp_path / "little.json").read_text())["labels"] == list(model.labels)
