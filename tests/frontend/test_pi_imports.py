"""The Pi's side of the front end runs on numpy alone, numpy 1 included: no onnxruntime, onnx or TensorFlow."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT
from frontend_support import SPEC, real_clips

from bench.check_tflite_runtime import DEFAULT_VENV, venv_python
from kws.frontend.mel import PARITY_TOLERANCE_DB, clip_log_mel

#: What a Pi computes and sends, end to end, in a fresh interpreter: argv[1] is an int16 clip (.npy),
#: argv[2] where the float frames go (.npy); stdout says what was imported.
PI_PATH = """
import json, sys
import numpy as np
from kws.frontend.spec import FrontEndSpec
from kws.frontend.mel import clip_log_mel
from kws.frontend.quantize import quantize_mel, dequantize_mel
frames = clip_log_mel(np.load(sys.argv[1]), FrontEndSpec())
quantized = quantize_mel(frames)
dequantize_mel(quantized)
np.save(sys.argv[2], frames)
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("onnxruntime", "onnx", "tensorflow", "tf_keras"))
print(json.dumps({"shape": list(quantized.codes.shape), "heavy": heavy, "numpy": np.__version__}))
"""


def run_pi_path(python: Path | str, clip: np.ndarray, folder: Path) -> tuple[dict, np.ndarray]:
    """Run :data:`PI_PATH` with ``python`` on ``clip``; its report and the frames it computed."""
    np.save(folder / "clip.npy", clip)
    done = subprocess.run(
        [str(python), "-c", PI_PATH, str(folder / "clip.npy"), str(folder / "frames.npy")],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout), np.load(folder / "frames.npy")


def test_the_pi_path_imports_no_onnxruntime_onnx_or_tensorflow(tmp_path: Path) -> None:
    clip = (np.sin(np.arange(16000) / 5.0) * 8000).astype(np.int16)
    report, frames = run_pi_path(sys.executable, clip, tmp_path)
    assert report["shape"] == [147, 32] and report["heavy"] == []
    # Not to the bit: BLAS may sum the filterbank product in another order in another process (1 ulp).
    assert float(np.abs(frames - clip_log_mel(clip, SPEC)).max()) <= PARITY_TOLERANCE_DB


def test_a_pi_with_numpy_1_computes_the_same_frames(data_dir: Path, tmp_path: Path) -> None:
    """tflite-runtime 2.14 (32-bit Raspberry Pi OS) needs numpy < 2: the mel must agree under it too."""
    python = venv_python(DEFAULT_VENV)
    if not python.exists():
        pytest.skip(f"{DEFAULT_VENV.name} is missing: python -m bench.check_tflite_runtime creates it")
    clip = real_clips(data_dir)[3]
    report, frames = run_pi_path(python, clip, tmp_path)
    assert report["numpy"].startswith("1.") and report["heavy"] == []
    assert float(np.abs(frames - clip_log_mel(clip, SPEC)).max()) <= PARITY_TOLERANCE_DB
