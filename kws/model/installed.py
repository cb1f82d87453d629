"""Where ``--model models/NAME`` is found when the program runs outside a checkout.

From a checkout, ``models/little`` is the folder beside the code, found from the
current directory as always. ``pip install`` copies the shipped models (the
``models/`` folder: metadata, ``.tflite`` and ``.tflite.zlib``) to
``<prefix>/share/kws-edge-cloud/models`` (``data-files`` in pyproject.toml), and a
relative ``--model models/NAME`` or ``--model NAME`` that the current directory does
not have is looked for there, and then, for an editable install (``pip install -e .``,
as ``make`` does), in the ``models/`` folder of the checkout the package is loaded from.
So ``kws-little`` with no ``--model`` runs the shipped Little model wherever it is
started (a systemd unit's working directory is ``/``).
A path with any other folder, or an absolute one, is taken as given: a model
someone named is never swapped for another silently.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

from kws.model.metadata import metadata_path, model_stem

#: The Big model the service serves unless told otherwise, and the one the Little model's cascade
#: threshold and stream parameters are calibrated against (``little.json``).
SERVICE_MODEL = "big_embedding"
#: The distribution name in pyproject.toml, and where its data-files put the models.
DISTRIBUTION = "kws-edge-cloud"
MODELS_SHARE = ("share", "kws-edge-cloud", "models")
#: The folder names a relative --model may have to be looked up among the installed models.
_LOOKUP_PARENTS = ("", ".", "models")


def installed_models_dir() -> Path | None:
    """The installed models' folder, as the package's RECORD lists it; None when none is installed."""
    try:
        files = importlib.metadata.distribution(DISTRIBUTION).files or []
    except importlib.metadata.PackageNotFoundError:
        return None
    for file in files:
        if file.parts[-4:-1] == MODELS_SHARE and file.name.endswith(".json"):
            return Path(str(file.locate())).resolve().parent
    return None


def checkout_models_dir() -> Path | None:
    """``models/`` of the checkout this package is loaded from (an editable install); None outside one."""
    root = Path(__file__).resolve().parents[2]
    return root / "models" if (root / "pyproject.toml").is_file() and (root / "models").is_dir() else None


def find_model(path: Path | str) -> Path | str:
    """``path`` if its metadata is there (or it is not a ``models/NAME`` or ``NAME`` path); else the installed
    model ``NAME`` when there is one, else ``path`` (whose error then names what was asked for)."""
    given = Path(path)
    if metadata_path(path).exists() or given.is_absolute() or str(given.parent) not in _LOOKUP_PARENTS:
        return path
    for folder in (installed_models_dir(), checkout_models_dir()):
        if folder is not None and metadata_path(model_stem(folder / given.name)).exists():
            return folder / given.name
    return path
