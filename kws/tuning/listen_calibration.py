"""Choose the stream parameters on validation speakers and write them into the Little model's metadata.

    python calibrate.py listen --model models/little --big models/big_embedding \\
        --data-dir ../shared/data/speech_commands --data-dir ../shared/data/speech_commands_extra \\
        --data-dir ../shared/data/speech_commands_more

Two streams are built from the **validation** split, never test (keywords, other words
of validation speakers, pauses, then noise alone from the validation half of each noise
recording; one quiet room, one noisy room: :mod:`kws.tuning.stream_synthesis`). Little hears
every window once, and Big every window too, or, for a Big on the pretrained front end (a
thousand times the cost of a hop), each window a detection asks about, once; every parameter
set is then replayed offline with the
listener's own code (:mod:`kws.tuning.stream_replay`) and scored (:mod:`kws.tuning.stream_scoring`).

The rule: the lowest :func:`~kws.tuning.stream_scoring.cost` (each kind of error in units of its
target: misses and wrong labels per 5 % of keywords, other words firing per 2 %, false
alarms per 0.5 an hour of noise), over both rooms together; for the cascade, among the
sets that ask Big about at most a fifth of Little's detections. Ties go to fewer Big
requests, then the higher threshold. Little alone (``little_only``) is chosen the same
way without Big. The section records the figures on validation and whether the targets
were met; run it again after retraining either model.
"""

from __future__ import annotations

import dataclasses
import datetime
import logging
import shlex
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kws.listen.params import DEFAULTS, LITTLE_ONLY, SECTION, ListenParams
from kws.model.metadata import metadata_path, write_section
from kws.model.runtime import KeywordModel, load_model
from kws.reports import format_table
from kws.tuning import stream_synthesis
from kws.tuning.stream_replay import Outcome, Track, judge_tracks, make_track
from kws.tuning.stream_scoring import TARGETS, cost, meets_targets

log = logging.getLogger(__name__)

CALIBRATION_SPLIT = "validation"
SMOOTHING = (1, 2, 3, 4, 5)
SUPPRESSION_S = (0.5, 1.0, 1.5)
LITTLE_THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.50, 0.995, 0.01))
#: The cascade may detect lower, Big rejecting what is not a keyword.
CASCADE_THRESHOLDS = tuple(round(float(t), 2) for t in np.arange(0.30, 0.96, 0.05))
BIG_MIN_SCORES = (0.5, 0.7, 0.9)
DEFAULT_NOISE_MINUTES = 10.0


def confirm_edges(threshold: float, step: float = 0.05) -> list[float]:
    """Upper edges of the uncertain band to try: never (0), every ``step`` above the threshold, always (1)."""
    count = int(round((1.0 - threshold) / step))
    return [0.0, *(round(threshold + step * k, 2) for k in range(1, count) if threshold + step * k < 1.0), 1.0]


def little_only_grid() -> Iterator[ListenParams]:
    for windows in SMOOTHING:
        for suppression in SUPPRESSION_S:
            for threshold in LITTLE_THRESHOLDS:
                yield dataclasses.replace(DEFAULTS, smoothing_windows=windows, suppression_s=suppression,
                                          threshold=threshold, confirm_below=0.0)


def cascade_grid(around: ListenParams | None = None) -> Iterator[ListenParams]:
    """Every 0.05 of threshold and band; ``around`` a first choice, its neighbourhood every 0.01."""
    fine = around is not None
    for windows in (around.smoothing_windows,) if fine else SMOOTHING:
        for suppression in (around.suppression_s,) if fine else SUPPRESSION_S:
            thresholds = (
                [t for t in np.round(around.threshold + np.arange(-0.04, 0.045, 0.01), 2) if 0.0 < t < 1.0]
                if fine else CASCADE_THRESHOLDS
            )
            for threshold in thresholds:
                for edge in confirm_edges(float(threshold), 0.01 if fine else 0.05):
                    for min_score in BIG_MIN_SCORES if edge > 0 else (DEFAULTS.big_min_score,):
                        yield ListenParams(DEFAULTS.hop_s, windows, float(threshold), suppression, edge, min_score)


def best(tracks: Sequence[Track], grid: Iterator[ListenParams], with_big: bool) -> tuple[ListenParams, Outcome]:
    """The lowest cost; ties to fewer Big requests, then the higher threshold; Big at most a fifth of detections."""
    chosen: tuple[tuple[float, int, float], ListenParams, Outcome] | None = None
    for params in grid:
        outcome = judge_tracks(tracks, params, with_big)
        if outcome.big_fraction > TARGETS["big_fraction"]:
            continue
        key = (round(cost(outcome.score), 9), outcome.big_requests, -params.threshold)
        if chosen is None or key < chosen[0]:
            chosen = (key, params, outcome)
    assert chosen is not None  # confirm_below = 0 never asks Big, so the grid always has a member
    return chosen[1], chosen[2]


def figures(outcome: Outcome, per_level: dict[str, Outcome]) -> dict[str, Any]:
    return {
        "both": {**outcome.score.to_dict(), "big_requests": outcome.big_requests,
                 "big_fraction": round(outcome.big_fraction, 4)},
        **{name: {**level.score.to_dict(), "big_requests": level.big_requests} for name, level in per_level.items()},
        "meets_targets": meets_targets(outcome.score, outcome.big_fraction),
    }


def per_room(tracks: dict[str, Track], params: ListenParams, with_big: bool) -> dict[str, Outcome]:
    return {room: judge_tracks([track], params, with_big) for room, track in tracks.items()}


def build_tracks(little: KeywordModel, big: KeywordModel, data_dirs: Sequence[Path], other_dir: Path | None,
                 noise_s: float, seed: int) -> dict[str, Track]:
    """One validation stream per room, heard by Little and Big."""
    material = stream_synthesis.load_material(data_dirs, other_dir, CALIBRATION_SPLIT)
    tracks: dict[str, Track] = {}
    for offset, (room, level) in enumerate(stream_synthesis.NOISE_LEVELS_DBFS.items()):
        stream = stream_synthesis.build_stream(material, level, noise_s, seed=seed + offset)
        log.info("%s room (%.0f dBFS): %.0f s stream, %d keywords, %d other words, %.0f s of noise alone",
                 room, level, stream.seconds, len(material.keywords), len(material.others), stream.noise_s)
        tracks[room] = make_track(stream, little, big, DEFAULTS.hop_samples)
    return tracks


def choose(tracks: dict[str, Track], little: KeywordModel, big: KeywordModel,
           sources: dict[str, Any]) -> dict[str, Any]:
    """The ``listen`` section: the parameters the rule picks on these tracks, and how they fare."""
    everything = list(tracks.values())
    alone, alone_outcome = best(everything, little_only_grid(), with_big=False)
    log.info("Little alone: %s, cost %.2f", alone, cost(alone_outcome.score))
    coarse, _ = best(everything, cascade_grid(), with_big=True)
    cascade, cascade_outcome = best(everything, cascade_grid(around=coarse), with_big=True)
    log.info("with Big: %s, cost %.2f", cascade, cost(cascade_outcome.score))
    return {
        **cascade.to_dict(),
        LITTLE_ONLY: {name: getattr(alone, name) for name in ("smoothing_windows", "threshold", "suppression_s")},
        "calibration": {
            "split": CALIBRATION_SPLIT,
            **sources,
            "streams": {room: track.stream.description for room, track in tracks.items()},
            "rule": "lowest cost = miss rate/0.05 + other-word fire rate/0.02 + false alarms per hour of noise/0.5 "
                    "+ (pause alarms + extra detections)/keywords/0.05, both rooms together; with Big, Big asked "
                    "about at most 20 % of Little's detections; ties to fewer Big requests, then higher threshold",
            "targets": TARGETS,
            "little": {"name": little.name, "sha256": little.sha256, "labels": list(little.labels)},
            "big": {"name": big.name, "sha256": big.sha256, "labels": list(big.labels)},
            "validation": {
                "little_only": figures(alone_outcome, per_room(tracks, alone, with_big=False)),
                "cascade": figures(cascade_outcome, per_room(tracks, cascade, with_big=True)),
            },
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        },
    }


def format_section(section: dict[str, Any]) -> str:
    """The chosen parameters and their validation figures, one row per mode and room."""
    alone = section[LITTLE_ONLY]
    validation = section["calibration"]["validation"]
    rows = []
    for mode, params, results in (("Little alone", alone, validation["little_only"]),
                                  ("Little + Big", section, validation["cascade"])):
        for room in (*stream_synthesis.NOISE_LEVELS_DBFS, "both"):
            figures_ = results[room]
            rows.append([
                f"{mode} ({room})", params["smoothing_windows"], params["threshold"], params["suppression_s"],
                section["confirm_below"] if mode == "Little + Big" else "-",
                f"{100 * figures_['hit_rate']:.1f}", figures_["wrong"], figures_["misses"],
                f"{figures_['false_alarms_per_hour']:.1f}", f"{100 * figures_['other_fire_rate']:.1f}",
                figures_["pause_alarms"] + figures_["extras"], figures_.get("big_requests", 0),
            ])
    return format_table(
        ["validation", "windows", "threshold", "quiet s", "Big below", "hit %", "wrong", "missed", "FA/h noise",
         "others fire %", "pause+extra", "Big asked"], rows)


#: The command that makes the section, as the section records it (with the arguments that made it).
COMMAND = ("python", "calibrate.py", "listen")


def calibrate_listening(little: KeywordModel, big: KeywordModel, data_dirs: Sequence[Path], other_dir: Path,
                        noise_s: float, seed: int, command: Sequence[str]) -> dict[str, Any]:
    """The ``listen`` section for this pair: validation streams built, heard and judged under every parameter
    set; ``command`` (the words that ran this) is recorded in it, so the section says how to make it again."""
    tracks = build_tracks(little, big, data_dirs, other_dir, noise_s, seed)
    sources = {"command": shlex.join(command), "data_dirs": [str(path) for path in data_dirs],
               "other_dir": str(other_dir), "seed": seed}
    return choose(tracks, little, big, sources)


def calibrate_export(little_stem: Path, big_stem: Path, data_dirs: Sequence[Path], other_dir: Path | None = None,
                     noise_minutes: float = DEFAULT_NOISE_MINUTES, seed: int = 0) -> dict[str, Any]:
    """The export step: choose the stream parameters on validation streams and write the ``listen``
    section into the Little model's metadata; returns the section."""
    little, big = load_model(little_stem, prefer="zlib"), load_model(big_stem, prefer="tflite")
    other_dir = other_dir or stream_synthesis.other_words_dir(data_dirs[0])
    command = [*COMMAND, "--model", str(little_stem), "--big", str(big_stem),
               *(arg for path in data_dirs for arg in ("--data-dir", str(path)))]
    section = calibrate_listening(little, big, data_dirs, other_dir, 60 * noise_minutes, seed, command)
    write_section(metadata_path(little_stem), SECTION, section)
    return section
