"""Check that every shipped model runs on tflite-runtime 2.14, the Raspberry Pi's interpreter.

tflite-runtime 2.14.0 is the last release with 32-bit Raspberry Pi wheels, and
it rejects operator versions newer converters emit (FULLY_CONNECTED v12, ...).
This script makes a virtual environment with only that runtime and numpy<2, runs
each model file there through ``kws.model.runtime.load_model`` on a few real clips, and
compares the probabilities with ai-edge-litert's in this environment.

    python -m bench.check_tflite_runtime --data-dir ../shared/data/speech_commands
    python -m bench.check_tflite_runtime --no-create   # fail rather than make the venv

The table goes to stdout, the details to ``--report`` (JSON). Exit status 1 when
any model fails to load or disagrees.
"""

# ruff: noqa: E402 - imports follow a sys.path line on purpose
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import venv
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.tflite_runtime_worker import predict_files
from kws.data import clips as dataset
from kws.model.metadata import ModelMetadata
from kws.reports import format_table, write_json_report
from kws.util.logs import setup_logging

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("check_tflite_runtime")

DEFAULT_VENV = REPO_ROOT / ".venv-tflite214"
#: What the Pi installs; zlib-ng only speeds up inflating ``.tflite.zlib``.
RUNTIME_REQUIREMENTS = ("tflite-runtime==2.14.0", "numpy<2", "zlib-ng")
WORKER = REPO_ROOT / "bench" / "tflite_runtime_worker.py"
#: Largest allowed difference of any class probability. Both runtimes execute
#: the same flatbuffer but with different kernels: float models agree to 1e-6,
#: int8 ones differ by whole output quantisation steps of 1/256 (up to 5 steps
#: measured on 640 clips), so the bound is 8 steps.
TOLERANCE = 8 / 256


class CheckError(Exception):
    """The check could not run at all (no venv, failed install, worker crash)."""


@dataclass(frozen=True)
class FileResult:
    """How one model file fared on tflite-runtime, compared with ai-edge-litert."""

    file: str
    ok: bool
    interpreter: str | None
    max_abs_difference: float | None
    top1_agreement: float | None
    flips_outside_ties: int | None
    """Clips whose top-1 label changed although ai-edge-litert's top two were further apart
    than two tolerances, so no allowed difference explains the change."""
    error: str | None = None


def venv_python(venv_dir: Path) -> Path:
    return venv_dir / "bin" / "python"


def create_runtime_venv(venv_dir: Path) -> Path:
    """Make the tflite-runtime venv with this Python (tflite-runtime 2.14 has wheels for 3.8-3.11)."""
    if sys.version_info[:2] > (3, 11):
        version = f"{sys.version_info.major}.{sys.version_info.minor}"
        raise CheckError(f"tflite-runtime 2.14.0 has no wheel for Python {version}; run this with Python 3.11 or older")
    log.info("creating %s with %s", venv_dir, ", ".join(RUNTIME_REQUIREMENTS))
    venv.create(venv_dir, with_pip=True, clear=True)
    install = [str(venv_python(venv_dir)), "-m", "pip", "install", "--quiet", *RUNTIME_REQUIREMENTS]
    completed = subprocess.run(install, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise CheckError(f"pip install {' '.join(RUNTIME_REQUIREMENTS)} failed:\n{completed.stderr[-2000:]}")
    return venv_python(venv_dir)


def model_files(models_dir: Path) -> list[Path]:
    """Every file the metadata in ``models_dir`` lists (.tflite and .tflite.zlib), but those of heads on the
    pretrained front end: those serve from the Big service, with onnxruntime, never from a Pi's interpreter."""
    files = []
    for metadata_path in sorted(models_dir.glob("*.json")):
        metadata = ModelMetadata.read(metadata_path)
        if metadata.front_end is None:
            files.extend(models_dir / name for name in metadata.files.values())
    return files


def run_worker(python: Path, interpreter: str, files: Sequence[Path], clips: Sequence[Path]) -> dict[str, Any]:
    """Predictions of every file on every clip, made by ``python`` with ``interpreter``."""
    command = [str(python), str(WORKER), "--interpreter", interpreter]
    command += [arg for file in files for arg in ("--model-file", str(file))]
    command += [arg for clip in clips for arg in ("--clip", str(clip))]
    # That venv has no copy of this project installed: the package is found from the checkout.
    environment = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    completed = subprocess.run(
        command, capture_output=True, text=True, cwd=REPO_ROOT, env=environment, timeout=600, check=False
    )
    if completed.returncode != 0:
        raise CheckError(f"{python} could not run the worker:\n{completed.stderr[-2000:]}")
    return json.loads(completed.stdout)


def compare(candidate: dict[str, Any], reference: dict[str, Any]) -> FileResult:
    """One file's tflite-runtime result against ai-edge-litert's."""
    if "error" in candidate:
        return FileResult(candidate["file"], False, None, None, None, None, candidate["error"])
    if "error" in reference:
        return FileResult(candidate["file"], False, candidate["interpreter"], None, None, None,
                          f"reference failed: {reference['error']}")
    ours, theirs = np.asarray(candidate["probabilities"]), np.asarray(reference["probabilities"])
    difference = float(np.max(np.abs(ours - theirs)))
    agrees = ours.argmax(axis=1) == theirs.argmax(axis=1)
    top_two = np.sort(theirs, axis=1)[:, -2:]
    near_tie = top_two[:, 1] - top_two[:, 0] <= 2 * TOLERANCE
    flips = int(np.sum(~agrees & ~near_tie))
    ok = difference <= TOLERANCE and flips == 0 and candidate["interpreter"] == "tflite_runtime.interpreter"
    return FileResult(candidate["file"], ok, candidate["interpreter"], difference, float(agrees.mean()), flips)


def check_models(python: Path, files: Sequence[Path], clips: Sequence[Path]) -> tuple[list[FileResult], dict[str, Any]]:
    """Run ``files`` under tflite-runtime (in ``python``'s venv) and ai-edge-litert (here); compare."""
    runtime = run_worker(python, "tflite_runtime", files, clips)
    reference = predict_files(files, clips)
    results = [compare(c, r) for c, r in zip(runtime["results"], reference)]
    environment = {key: value for key, value in runtime.items() if key != "results"}
    environment["reference_interpreter"] = next((r["interpreter"] for r in reference if "interpreter" in r), None)
    return results, environment


def format_results(results: Sequence[FileResult]) -> str:
    return format_table(
        ["model file", "status", "max |dp|", "top-1 agree", "flips outside ties", "error"],
        [[Path(r.file).name, "ok" if r.ok else "FAIL", r.max_abs_difference, r.top1_agreement, r.flips_outside_ties,
          r.error or ""] for r in results],
        float_digits=4,
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--venv", type=Path, default=DEFAULT_VENV, metavar="DIR",
                        help="the tflite-runtime virtual environment (default: %(default)s)")
    parser.add_argument("--no-create", action="store_true", help="fail if the venv is missing instead of creating it")
    parser.add_argument("--models-dir", type=Path, default=REPO_ROOT / "models", metavar="DIR",
                        help="folder of <name>.json model metadata (default: %(default)s)")
    parser.add_argument("--data-dir", type=Path, default=None, metavar="DIR",
                        help="Speech Commands folder to take clips from (default: $KWS_DATA_DIR or ../shared)")
    parser.add_argument("--clips-per-label", type=int, default=2, metavar="N",
                        help="real clips of each label to compare on (default: %(default)s)")
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "tflite_runtime.json", metavar="FILE",
                        help="JSON report (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    files = model_files(args.models_dir)
    if not files:
        parser.error(f"--models-dir {args.models_dir} holds no <name>.json model metadata")
    try:
        every_clip = dataset.list_clips(dataset.resolve_data_dir(args.data_dir))
        clips = [clip.path for clip in dataset.sample_clips(every_clip, args.clips_per_label)]
    except dataset.DatasetError as error:
        parser.error(f"--data-dir: {error}")
    try:
        python = venv_python(args.venv)
        if not python.exists():
            if args.no_create:
                parser.error(f"--venv {args.venv} does not exist (run without --no-create to make it)")
            python = create_runtime_venv(args.venv)
        results, environment = check_models(python, files, clips)
    except CheckError as error:
        parser.exit(1, f"error: {error}\n")
    print(f"tflite-runtime {environment['interpreter_version']} (numpy {environment['numpy']}, "
          f"Python {environment['python']}) against {environment['reference_interpreter']} "
          f"on {len(clips)} clips, tolerance {TOLERANCE:.4f}")
    print(format_results(results))
    write_json_report(args.report, {
        "environment": environment, "clips": [str(c) for c in clips], "tolerance": TOLERANCE,
        "results": [asdict(result) for result in results],
    })
    log.info("report written to %s", args.report)
    return 0 if all(result.ok for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
