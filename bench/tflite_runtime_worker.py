"""Run model files on clips with one chosen TFLite interpreter; print the probabilities as JSON.

``check_tflite_runtime.py`` starts this inside the ``tflite-runtime`` 2.14
virtual environment, whose Python has neither this project's requirements nor
TensorFlow, so it imports only the runtime modules (``kws.model.runtime``,
``kws.features``, ``kws.audio``) and numpy 1.x. ``--interpreter`` hides the
interpreters preferred over the wanted one, so :func:`kws.model.runtime.load_model`
falls back to it exactly as it would on a Pi that has only that one.

    python -m bench.tflite_runtime_worker --interpreter tflite_runtime \\
        --model-file models/little.tflite.zlib --clip DIR/yes/x_nohash_0.wav
"""

# ruff: noqa: E402 - imports follow a sys.path line on purpose
from __future__ import annotations

import argparse
import importlib.metadata
import json
import platform
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kws.audio import read_clip
from kws.model.runtime import load_model

#: Interpreter package -> the modules ``kws.model.runtime`` would try before it.
PREFERRED_OVER = {
    "ai_edge_litert": (),
    "tflite_runtime": ("ai_edge_litert",),
    "tensorflow": ("ai_edge_litert", "tflite_runtime"),
}


def hide_modules(names: Sequence[str]) -> None:
    """Make ``import name`` fail here, as if the package were not installed."""
    for name in names:
        sys.modules[name] = None  # type: ignore[assignment]


def predict_files(model_files: Sequence[Path], clip_paths: Sequence[Path]) -> list[dict[str, Any]]:
    """Each model file's probabilities on every clip, or the error that stopped it.

    An error is data here, not a crash: an interpreter refusing an operator
    version is exactly the finding the check reports.
    """
    audio = [read_clip(path) for path in clip_paths]
    results: list[dict[str, Any]] = []
    for model_file in model_files:
        try:
            model = load_model(model_file)
            probabilities = [model.predict_audio(clip).tolist() for clip in audio]
        except Exception as error:  # noqa: BLE001 - any failure is the result to report
            results.append({"file": str(model_file), "error": f"{type(error).__name__}: {error}"})
            continue
        results.append({"file": str(model_file), "interpreter": model.interpreter_name, "probabilities": probabilities})
    return results


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--interpreter", choices=sorted(PREFERRED_OVER), required=True,
                        help="the interpreter package to run with; those kws.model.runtime prefers to it are hidden")
    parser.add_argument("--model-file", type=Path, action="append", required=True, help="model file (repeatable)")
    parser.add_argument("--clip", type=Path, action="append", required=True, help="WAV clip (repeatable)")
    args = parser.parse_args(argv)
    hide_modules(PREFERRED_OVER[args.interpreter])
    output = {
        "python": platform.python_version(),
        "numpy": installed_version("numpy"),
        "interpreter_package": args.interpreter,
        "interpreter_version": installed_version(args.interpreter.replace("_", "-")),
        "results": predict_files(args.model_file, args.clip),
    }
    json.dump(output, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
