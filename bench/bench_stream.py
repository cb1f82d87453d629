"""Always listening on long streams of the test speakers: hits, wrong labels, misses, false alarms, cost.

For each room (quiet, about -42 dBFS of noise; noisy, about -27 dBFS) a stream is built
from the **test** split (every keyword clip, the other words of test speakers from
speech_commands_other, pauses of 1-2.5 s, then noise alone from the test half of each
_background_noise_ recording; kws/tuning/stream_synthesis.py). It is heard by the live listener
(kws/listen/listener.py), Little alone and Little with the real Big service over HTTP
confirming its uncertain band, with the parameters in the Little model's metadata. The
obvious window (3 windows, 0.9, 1 s quiet) is shown beside them for Little and
for Big as the spotter, replayed from the same posteriors, and the DET curves (miss rate
against false alarms per hour of noise and against the share of other words that fire,
over thresholds) are drawn from there.

    python -m bench.bench_stream --data-dir ../shared/data/speech_commands
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

import os

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one window at a time, as the Pi works

import argparse
import dataclasses
import logging
import platform
import sys
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.audio import SAMPLE_RATE
from kws.data import DatasetError
from kws.data.clips import resolve_data_dir
from kws.listen.confirm import BigConfirmer
from kws.listen.params import DEFAULTS, ListenParams, params_from_metadata
from kws.listen.report import listen_report
from kws.model.installed import SERVICE_MODEL
from kws.model.metadata import ModelError
from kws.model.runtime import KeywordModel, load_model
from kws.reports import format_table, write_json_report
from kws.rest.client import BigClient
from kws.rest.service import BigService, start_server
from kws.tuning import stream_synthesis
from kws.tuning.stream_replay import Track, judge_tracks, make_track
from kws.tuning.stream_scoring import TARGETS, StreamScore, meets_targets
from kws.tuning.stream_trial import listen_to
from kws.util.logs import setup_logging

REPO_ROOT = Path(__file__).resolve().parents[1]
log = logging.getLogger("bench_stream")

DET_THRESHOLDS = tuple(round(float(t), 3) for t in np.concatenate([np.arange(0.2, 0.9, 0.05),
                                                                    np.arange(0.9, 0.996, 0.005)]))


def row(room: str, mode: str, result: StreamScore, audio_s: float, params: ListenParams, big_requests: int = 0,
        little_detections: int = 0, body_bytes: int = 0, rtf: float | None = None,
        hop_ms: dict[str, Any] | None = None) -> dict[str, Any]:
    hours = audio_s / 3600
    return {
        "room": room, "mode": mode, "params": params.to_dict(), **result.to_dict(),
        "audio_s": round(audio_s, 1), "little_detections": little_detections, "big_requests": big_requests,
        "big_fraction": round(big_requests / little_detections, 4) if little_detections else 0.0,
        "big_requests_per_hour": round(big_requests / hours, 1), "big_bytes": body_bytes,
        "big_bytes_per_hour": round(body_bytes / hours), "real_time_factor": rtf, "hop_latency_ms": hop_ms,
        "meets_targets": meets_targets(result, big_requests / little_detections if little_detections else 0.0),
    }


def det_curve(track: Track, params: ListenParams) -> list[dict[str, float]]:
    """Miss rate, false alarms per hour of noise and other-word fire rate at every threshold."""
    points = []
    for threshold in DET_THRESHOLDS:
        result = judge_tracks([track], dataclasses.replace(params, threshold=threshold), with_big=False).score
        points.append({"threshold": threshold, "miss_rate": round(result.miss_rate, 6),
                       "false_alarms_per_hour": round(result.false_alarms_per_hour, 3),
                       "other_fire_rate": round(result.other_fire_rate, 6)})
    return points


def bench_room(room: str, stream: stream_synthesis.SyntheticStream, little: KeywordModel, big: KeywordModel,
               big_url: str, params: ListenParams, alone: ListenParams) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The live runs and the replayed baselines of one room, and its DET curves."""
    rows = []
    stats, result = listen_to(stream, little, alone, name=room)
    report = listen_report(stats, alone, "", room, little, None)
    rows.append(row(room, "Little alone", result, stats.audio_s, alone, little_detections=len(stats.traces),
                    rtf=report["real_time_factor"], hop_ms=report["hop_latency_ms"]))
    with BigClient(big_url) as client:
        stats, result = listen_to(stream, little, params, BigConfirmer(client, params.big_min_score), name=room)
    report = listen_report(stats, params, "", room, little, big_url)
    rows.append(row(room, "Little + Big", result, stats.audio_s, params, report["big"]["requests"],
                    len(stats.traces), report["big"]["body_bytes"], report["real_time_factor"],
                    report["hop_latency_ms"]))
    little_track = make_track(stream, little, None, params.hop_samples)
    naive = dataclasses.replace(DEFAULTS, confirm_below=0.0)
    baselines = [("Little, the obvious window", little_track)]
    big_track = None
    if big.metadata.front_end is None:
        big_track = make_track(stream, big, None, params.hop_samples)
        baselines.append(("Big alone, the obvious window", big_track))
    else:  # every 100 ms hop through the pretrained front end: about 8 minutes a room on one core
        log.info("%s: no 'Big alone' baseline: %s reads the pretrained front end, too slow for every hop",
                 room, big.name)
    for mode, track in baselines:
        outcome = judge_tracks([track], naive, with_big=False)
        rows.append(row(room, mode, outcome.score, stream.seconds, naive, little_detections=outcome.little_detections))
    replayed = judge_tracks([little_track], alone, with_big=False).score
    rows[0]["replay_matches_live"] = replayed == StreamScore(**{k: rows[0][k] for k in dataclasses.asdict(replayed)})
    curves = {"little": det_curve(little_track, alone)}
    if big_track is not None:
        curves["big"] = det_curve(big_track, naive)
    return rows, curves


def format_rows(rows: Sequence[dict[str, Any]]) -> str:
    return format_table(
        ["room", "mode", "hit %", "wrong", "missed", "FA/h noise", "others fire %", "pause+extra",
         "Big asked", "Big/h", "kB sent", "RTF"],
        [[r["room"], r["mode"], f"{100 * r['hit_rate']:.1f}", r["wrong"], r["misses"],
          f"{r['false_alarms_per_hour']:.1f}", f"{100 * r['other_fire_rate']:.1f}", r["pause_alarms"] + r["extras"],
          f"{r['big_requests']} ({100 * r['big_fraction']:.0f} %)" if r["big_requests"] else "-",
          f"{r['big_requests_per_hour']:.0f}" if r["big_requests"] else "-",
          f"{r['big_bytes'] / 1e3:.0f}" if r["big_requests"] else "-",
          "-" if r["real_time_factor"] is None else f"{r['real_time_factor']:.4f}"] for r in rows],
    )


def plot_det(curves: dict[str, dict[str, list[dict[str, float]]]], rows: Sequence[dict[str, Any]], path: Path) -> None:
    """Miss rate against false alarms per hour of noise (left) and against other words firing (right)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4.5), sharey=True)
    colours = {"quiet": "tab:blue", "noisy": "tab:red"}
    for room, by_model in curves.items():
        for model, style in (("little", "-"), ("big", ":")):
            if model not in by_model:
                continue
            points = by_model[model]
            miss = [100 * p["miss_rate"] for p in points]
            label = f"{'Little' if model == 'little' else 'Big alone'}, {room}"
            left.plot([p["false_alarms_per_hour"] for p in points], miss, style, color=colours[room], label=label)
            right.plot([100 * p["other_fire_rate"] for p in points], miss, style, color=colours[room], label=label)
    for r in rows:
        if r["mode"] in ("Little alone", "Little + Big"):
            marker = "o" if r["mode"] == "Little alone" else "*"
            for axes, x in ((left, r["false_alarms_per_hour"]), (right, 100 * r["other_fire_rate"])):
                axes.scatter([x], [100 * (1 - r["hit_rate"])], marker=marker, s=90, color=colours[r["room"]],
                             edgecolors="black", zorder=3, label=f"{r['mode']} (calibrated), {r['room']}")
    left.axvline(TARGETS["false_alarms_per_hour"], color="grey", linestyle="--", linewidth=0.8)
    right.axvline(100 * TARGETS["other_fire_rate"], color="grey", linestyle="--", linewidth=0.8)
    for axes in (left, right):
        axes.axhline(100 * (1 - TARGETS["hit_rate"]), color="grey", linestyle="--", linewidth=0.8)
        axes.set_xscale("symlog", linthresh=1.0)
        axes.set_xlim(left=0)
        axes.grid(alpha=0.3)
    left.set_xlabel("false alarms per hour of noise alone")
    right.set_xlabel("other words that fire (%)")
    left.set_ylabel("keywords missed or mislabelled (%)")
    left.set_title("DET over thresholds: noise")
    right.set_title("DET over thresholds: other words")
    handles, labels = left.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    right.legend(unique.values(), unique.keys(), fontsize=7, loc="upper right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def save_stream(stream: stream_synthesis.SyntheticStream, stem: Path) -> None:
    """``<stem>.wav`` (16 kHz mono 16-bit) and ``<stem>.json``: the words, with where each is voiced, in seconds."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(stem.with_suffix(".wav")), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(SAMPLE_RATE)
        wav.writeframes(stream.samples.astype("<i2").tobytes())
    events = [{"kind": e.kind, "label": e.label, "start_s": round(e.start / SAMPLE_RATE, 3),
               "end_s": round(e.end / SAMPLE_RATE, 3), "clip": e.clip} for e in stream.events]
    write_json_report(stem.with_suffix(".json"), {**stream.description, "noise_alone_from_s":
                                                  round(stream.noise_start / SAMPLE_RATE, 3), "words": events})
    log.info("stream written to %s.wav", stem)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-dir", type=Path, action="append", metavar="DIR",
                        help="keyword clips; repeat for several folders (default: $KWS_DATA_DIR or ../shared)")
    parser.add_argument("--other-dir", type=Path, metavar="DIR",
                        help="other words and _background_noise_ (default: speech_commands_other beside --data-dir)")
    parser.add_argument("--little", type=Path, default=REPO_ROOT / "models" / "little", metavar="STEM")
    parser.add_argument("--big", type=Path, default=REPO_ROOT / "models" / SERVICE_MODEL, metavar="STEM")
    parser.add_argument("--split", default="test", choices=("test", "validation"),
                        help="whose speakers and which half of the noise (default: %(default)s)")
    parser.add_argument("--noise-minutes", type=float, default=30.0, metavar="M",
                        help="minutes of noise alone per room (default: %(default)s)")
    parser.add_argument("--limit", type=int, metavar="N", help="only N keywords and N/2 other words (a quick look)")
    parser.add_argument("--seed", type=int, default=100, help="seed of the streams (default: %(default)s)")
    parser.add_argument("--report", type=Path, default=REPO_ROOT / "reports" / "bench_stream.json", metavar="JSON")
    parser.add_argument("--plot", type=Path, default=REPO_ROOT / "reports" / "bench_stream_det.png", metavar="PNG")
    parser.add_argument("--save-streams", type=Path, metavar="DIR",
                        help="also write each room's stream as DIR/<room>.wav with its words in DIR/<room>.json, "
                        "to try little_client.py --listen on")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    logging.getLogger("kws.listen.listener").setLevel(logging.WARNING)
    if args.noise_minutes <= 0 or (args.limit is not None and args.limit < 2):
        parser.error("--noise-minutes must be positive and --limit at least 2")
    try:
        data_dirs = args.data_dir or [resolve_data_dir(None)]
        other_dir = args.other_dir or stream_synthesis.other_words_dir(data_dirs[0])
        material = stream_synthesis.load_material(data_dirs, other_dir, args.split)
        little = load_model(args.little, prefer="zlib")
        big = load_model(args.big, prefer="tflite")
        params, origin = params_from_metadata(little.metadata.raw)
        alone, _ = params_from_metadata(little.metadata.raw, little_only=True)
    except (DatasetError, ModelError, ValueError) as error:
        parser.exit(2, f"error: {error}\n")
    if args.limit:
        material.keywords = material.keywords[:: max(1, len(material.keywords) // args.limit)][: args.limit]
        material.others = material.others[:: max(1, 2 * len(material.others) // args.limit)][: args.limit // 2]
    log.info("parameters from %s: with Big %s; alone %s", origin, params, alone)
    service = BigService(args.big)
    service.load()
    rows: list[dict[str, Any]] = []
    curves: dict[str, Any] = {}
    streams: dict[str, Any] = {}
    with start_server(service, port=0, threads=2) as server:
        for offset, (room, level) in enumerate(stream_synthesis.NOISE_LEVELS_DBFS.items()):
            stream = stream_synthesis.build_stream(material, level, 60 * args.noise_minutes, seed=args.seed + offset)
            streams[room] = stream.description
            if args.save_streams:
                save_stream(stream, args.save_streams / room)
            log.info("%s room: %.0f s (%d keywords, %d other words, %.0f s of noise alone at %.0f dBFS)", room,
                     stream.seconds, len(material.keywords), len(material.others), stream.noise_s, level)
            room_rows, curves[room] = bench_room(room, stream, little, big, server.url, params, alone)
            rows.extend(room_rows)
    print(format_rows(rows))
    plot_det(curves, rows, args.plot)
    write_json_report(args.report, {
        "environment": {"python": platform.python_version(), "numpy": np.__version__, "cpus": os.cpu_count(),
                        "machine": platform.machine(), "openblas_threads": os.environ.get("OPENBLAS_NUM_THREADS")},
        "split": args.split, "sample_rate": SAMPLE_RATE, "params_from": origin, "params": params.to_dict(),
        "little_only_params": alone.to_dict(), "targets": TARGETS, "streams": streams,
        "models": {"little": {"name": little.name, "sha256": little.sha256, "labels": list(little.labels)},
                   "big": {"name": big.name, "sha256": big.sha256, "labels": list(big.labels)}},
        "rows": rows, "det": curves,
    })
    print(f"report written to {args.report}; DET plot written to {args.plot}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
