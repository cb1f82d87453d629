"""A listening run summed up: the JSON report (``--report``) and the summary line on stderr."""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.listen.confirm import OUTCOMES
from kws.listen.listener import BIG, LITTLE, ListenStats
from kws.listen.params import ListenParams
from kws.util.durations import DurationLog


def _ms(seconds: list[float] | DurationLog, quantile: float) -> float | None:
    if isinstance(seconds, DurationLog):
        value = seconds.quantile(quantile)
        return None if value is None else round(value * 1e3, 4)
    return round(float(np.quantile(np.asarray(seconds), quantile)) * 1e3, 4) if seconds else None


def listen_report(stats: ListenStats, params: ListenParams, origin: str, source: str, model: Any,
                  big_url: str | None, not_sent: int = 0) -> dict[str, Any]:
    """The run as JSON: detections, what Big was asked and what it cost, audio, real-time factor, per-hop latency."""
    detections = stats.detections
    asked = [trace for trace in stats.traces if trace.asked_big]
    outcomes = Counter(trace.verdict.outcome for trace in asked if trace.verdict is not None)
    big_seconds = [trace.verdict.seconds for trace in asked if trace.verdict is not None and trace.verdict.decided]
    processing_s = stats.hop_seconds.total_s
    return {
        "source": source,
        "model": {"name": model.name, "sha256": model.sha256, "labels": list(model.labels)},
        "params": params.to_dict(),
        "params_from": origin,
        "big_service": big_url,
        "audio_s": round(stats.audio_s, 3),
        "padded_s": round(stats.padded_samples / SAMPLE_RATE, 3),
        "interrupted": stats.interrupted,
        "hops": len(stats.hop_seconds),
        "processing_s": round(processing_s, 4),
        "real_time_factor": round(processing_s / stats.audio_s, 6) if stats.audio_s else None,
        "hop_latency_ms": {"median": _ms(stats.hop_seconds, 0.5), "p95": _ms(stats.hop_seconds, 0.95)},
        "little_detections": len(stats.traces),
        "detections": len(detections),
        "decided_by": {who: sum(d.decided_by == who for d in detections) for who in (LITTLE, BIG)},
        "big": {
            "requests": len(asked),
            "not_sent_while_down": not_sent,
            **{outcome: outcomes.get(outcome, 0) for outcome in OUTCOMES},
            "body_bytes": sum(trace.verdict.body_bytes for trace in asked if trace.verdict is not None),
            "wire_bytes": sum(trace.verdict.wire_bytes for trace in asked if trace.verdict is not None),
            "latency_ms": {"median": _ms(big_seconds, 0.5), "p95": _ms(big_seconds, 0.95)},
        },
        "notes": stats.notes,
        "events": [trace.to_dict() for trace in stats.traces],
    }


def format_summary(report: dict[str, Any]) -> str:
    """One paragraph for people (stderr): what was heard, what Big did, what it cost."""
    big = report["big"]
    by = report["decided_by"]
    stopped = " (stopped early)" if report["interrupted"] else ""
    lines = [
        f"listened to {report['audio_s']:.1f} s of {report['source']}{stopped}: "
        f"{report['detections']} detections ({by[LITTLE]} by Little, {by[BIG]} by Big)",
        "Little alone: Big not asked" if report["big_service"] is None else
        f"Big asked {big['requests']} times: {big['confirmed']} confirmed, {big['corrected']} corrected, "
        f"{big['rejected']} rejected; {big['unavailable']} unreachable and {big['error']} failed "
        f"(Little's word stood); {big['body_bytes'] / 1e3:.1f} kB sent ({big['wire_bytes'] / 1e3:.1f} kB on the wire)",
    ]
    latency = report["hop_latency_ms"]
    if latency["median"] is not None:
        lines.append(
            f"real-time factor {report['real_time_factor']:.4f}; per {1000 * report['params']['hop_s']:.0f} ms hop: "
            f"median {latency['median']:.3f} ms, p95 {latency['p95']:.3f} ms over {report['hops']} hops"
        )
    lines += [f"note: {note}" for note in report["notes"]]
    return "\n".join(lines)
