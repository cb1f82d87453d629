"""What the MQTT tests share: running the cooperative client as a process, and the answer it must give.

A module rather than fixtures because the tests call these with their own options.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np

from kws.audio import read_clip
from kws.data.clips import select_clips
from kws.features import compute_features
from kws.model.runtime import load_model
from kws.mqtt.policies import combine
from kws.mqtt.protocol import BrokerAddress, Topics

REPO_ROOT = Path(__file__).resolve().parents[2]
COOPERATIVE_CLIENT = REPO_ROOT / "cooperative_client.py"
TOPICS = Topics("kws")
RUN_TIMEOUT_S = 90


def start_cooperative(broker: BrokerAddress, data_dir: Path, config_from: Path, report: Path, *options: str):
    command = [
        sys.executable, str(COOPERATIVE_CLIENT), "--broker", broker.url, "--data-dir", str(data_dir),
        "--split", "all", "--config-from", str(config_from), "--report", str(report), "--ready-timeout", "60",
        *options,
    ]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(process: subprocess.Popen, report: Path) -> dict:
    return finish_with_output(process, report)[0]


def finish_with_output(process: subprocess.Popen, report: Path) -> tuple[dict, str]:
    """The run's JSON report and everything it wrote (stdout and stderr together), once it exited with 0."""
    output, _ = process.communicate(timeout=RUN_TIMEOUT_S)
    assert process.returncode == 0, output
    return json.loads(report.read_text()), output


def in_process_accuracy(models: list[Path], data_dir: Path, policy: str) -> tuple[int, dict[str, float]]:
    """Correct clips of the ensemble and each model's accuracy, all in this process: what MQTT must reproduce."""
    loaded = [load_model(stem) for stem in models]
    labels = loaded[0].labels
    correct, model_correct = 0, Counter()
    clips = select_clips(data_dir, "all", labels)
    for clip in clips:
        features = compute_features(read_clip(clip.path), loaded[0].feature_config)
        scores = np.stack([model.predict_features(features) for model in loaded])
        correct += labels[combine(scores, policy)] == clip.label
        for model, row in zip(loaded, scores):
            model_correct[model.name] += labels[int(row.argmax())] == clip.label
    return correct, {name: round(count / len(clips), 4) for name, count in model_correct.items()}
