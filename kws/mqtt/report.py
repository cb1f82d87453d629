"""The report of a cooperative run: accuracy of the ensemble and of each model, delivery, timing.

Delivery figures come first-class because they are what MQTT can get wrong:
``incomplete`` counts clips with fewer than ``expect`` answers (``missing`` ones
included), ``missing`` those with none, which count as wrong, never dropped, so a
lossy run cannot look more accurate than it was. ``rejected_answers`` counts, by
reason, every message on the prediction topics that was not combined (a sender
outside the roster, a duplicate, a clip this run never published, scores that are
not probabilities...), and ``rejected_senders`` says who sent them, so a forger
shows up in the report instead of in the accuracy.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import numpy as np

from kws.mqtt.tracker import EnsembleTracker
from kws.reports import format_table


def build_report(tracker: EnsembleTracker, started_at: float, **context: Any) -> dict[str, Any]:
    """Figures of a finished run; ``context`` (qos, data_dir, ...) is stored as given."""
    clips = list(tracker)
    samples = len(clips)
    answers = np.array([len(clip.answers) for clip in clips], dtype=np.int64)
    correct = sum(clip.predicted_label == clip.true_label for clip in clips)
    latencies_ms = np.array(
        [(clip.finished_at - clip.sent_at) * 1e3 for clip in clips if clip.complete], dtype=np.float64
    )
    last_finished = max((clip.finished_at for clip in clips), default=started_at)
    wall_s = max(last_finished - started_at, 1e-9)

    clients: set[str] = set()
    per_model_answers: dict[str, int] = defaultdict(int)
    per_model_correct: dict[str, int] = defaultdict(int)
    inference_ms: dict[str, list[float]] = defaultdict(list)
    for clip in clips:
        for answer in clip.answers.values():
            clients.add(answer.client)
            per_model_answers[answer.model] += 1
            per_model_correct[answer.model] += tracker.labels[int(answer.scores.argmax())] == clip.true_label
            inference_ms[answer.model].append(answer.inference_ms)

    return {
        "policy": tracker.policy,
        "expect": tracker.expect,
        **context,
        "samples": samples,
        "accuracy": round(correct / samples, 4) if samples else None,
        "correct": int(correct),
        "clients": sorted(clients),
        "per_model_accuracy": {
            model: round(per_model_correct[model] / count, 4) for model, count in sorted(per_model_answers.items())
        },
        "answers_per_model": dict(sorted(per_model_answers.items())),
        "inference_ms_median_per_model": {
            model: round(float(np.median(values)), 3) for model, values in sorted(inference_ms.items())
        },
        "answers_per_clip": {
            "min": int(answers.min()) if samples else 0,
            "mean": round(float(answers.mean()), 3) if samples else 0.0,
            "max": int(answers.max()) if samples else 0,
        },
        "incomplete": int((answers < tracker.expect).sum()),
        "missing": int((answers == 0).sum()),
        "rejected_answers": dict(sorted(tracker.rejected.items())),
        "rejected_senders": dict(sorted(tracker.rejected_senders.items())),
        "wall_s": round(wall_s, 3),
        "throughput_clips_per_s": round(samples / wall_s, 2),
        "latency_ms": {
            "median": round(float(np.median(latencies_ms)), 2) if latencies_ms.size else None,
            "p95": round(float(np.percentile(latencies_ms, 95)), 2) if latencies_ms.size else None,
            "of": "publish to the last expected answer, complete clips only",
        },
    }


def format_summary(report: dict[str, Any]) -> str:
    """The report as a table for people: one row per model, then the ensemble."""
    rows = [
        [model, report["answers_per_model"][model], accuracy]
        for model, accuracy in report["per_model_accuracy"].items()
    ]
    rows.append([f"ensemble ({report['policy']})", report["samples"], report["accuracy"]])
    latency = report["latency_ms"]
    per_clip = report["answers_per_clip"]
    lines = [
        format_table(["model", "clips answered", "accuracy"], rows),
        "",
        (
            f"clips {report['samples']}, expecting {report['expect']} answers each: "
            f"{report['incomplete']} incomplete, {report['missing']} missing (counted wrong); "
            f"answers per clip min {per_clip['min']}, mean {per_clip['mean']:.2f}"
        ),
        (
            f"throughput {report['throughput_clips_per_s']:.1f} clips/s over {report['wall_s']:.2f} s; "
            f"latency median {_ms(latency['median'])}, p95 {_ms(latency['p95'])}"
        ),
    ]
    if report["rejected_answers"]:
        reasons = ", ".join(f"{count} {why}" for why, count in report["rejected_answers"].items())
        senders = ", ".join(f"{sender} {count}" for sender, count in report["rejected_senders"].items())
        lines.append(f"rejected answers (never combined): {reasons}; from {senders}")
    else:
        lines.append("rejected answers: none")
    return "\n".join(lines)


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} ms"
