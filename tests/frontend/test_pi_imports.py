"""The Pi's side of the front end runs on numpy alone: no onnxruntime, onnx or TensorFlow is imported."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import REPO_ROOT

#: What a Pi computes and sends, end to end, in a fresh interpreter.
PI_PATH = """
import json, sys
import numpy as np
from kws.frontend.spec import FrontEndSpec
from kws.frontend.mel import clip_log_mel
from kws.frontend.quantize import quantize_mel, dequantize_mel
clip = (np.sin(np.arange(16000) / 5.0) * 8000).astype(np.int16)
quantized = quantize_mel(clip_log_mel(clip, FrontEndSpec()))
dequantize_mel(quantized)
heavy = sorted(name for name in sys.modules if name.split(".")[0] in ("onnxruntime", "onnx", "tensorflow", "tf_keras"))
print(json.dumps({"shape": list(quantized.codes.shape), "heavy": heavy}))
"""


def test_the_pi_path_imports_no_onnxruntime_onnx_or_tensorflow() -> None:
    done = subprocess.run([sys.executable, "-c", PI_PATH], cwd=REPO_ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report == {"shape": [147, 32], "heavy": []}
