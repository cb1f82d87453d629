"""The search rule for a relative --model: the current folder first, then the models installed with the package
(or, loaded from a checkout, the checkout's), never a different model for a path someone spelled out."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO_ROOT

from kws.model.installed import find_model
from kws.model.metadata import ModelError
from kws.model.runtime import load_model


def test_models_name_found_from_another_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no models/ here: the package's own (this checkout's, in the tests) are used
    assert Path(find_model("models/little")).resolve() == (REPO_ROOT / "models" / "little").resolve()
    assert Path(load_model("little", prefer="zlib").source).name == "little.tflite.zlib"


def test_the_current_folder_wins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "little.json").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert find_model("models/little") == "models/little"


def test_a_path_with_another_folder_is_never_swapped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ModelError, match="no model metadata at mine/little.json"):
        load_model("mine/little")
