"""Rewrite the measured tables of README.md and docs/*.md from the benchmarks' committed JSON.

Every measured table in the documentation stands between two markers, ``<!-- table: NAME -->`` and
``<!-- /table -->``; what is between them is made here, never typed: a markdown table from the JSON a
benchmark wrote (``docs/results/<bench>.json``, or a model's metadata), then the command that produced
that JSON and a link to it. ``python bench/tables.py`` rewrites every marked table in place;
``python bench/tables.py --check`` changes nothing and exits 1 naming each table that differs from
what its JSON says (or whose JSON is missing), so a figure edited by hand, or a result committed
without its tables, shows.

After running a benchmark with the command under its table, regenerate::

    python bench/tables.py            # rewrite the tables
    python bench/tables.py --check    # exit 1, naming every table that differs

Only the standard library: it runs in any Python, from the checkout's root or elsewhere (``--root``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS = "docs/results"
DATA = "../shared/data"

#: ``<!-- table: NAME -->`` ... ``<!-- /table -->``, each marker on a line of its own; the name is letters, digits,
#: ``_`` and ``-``.
BLOCK = re.compile(r"^(<!-- table: (?P<name>[\w-]+) -->\n)(?P<body>.*?)^(<!-- /table -->)$", re.DOTALL | re.MULTILINE)
OPENING = re.compile(r"^<!-- table: ([\w-]+) -->$", re.MULTILINE)

Row = Sequence[Any]


@dataclass(frozen=True)
class Rendered:
    """A table: its header, the columns' alignment (``l`` or ``r``), the rows, and lines said under it."""

    headers: Sequence[str]
    align: str
    rows: Sequence[Row]
    notes: Sequence[str] = ()


@dataclass(frozen=True)
class Table:
    """One generated table: where its figures come from, how they become rows, and the command behind them."""

    source: str | dict[str, str]
    """The JSON under the repository root (a benchmark's result, or a model's metadata), or several by name: the
    renderer then gets a dict of them, in this order."""
    render: Callable[[Any], Rendered]
    command: str
    """The command that wrote ``source`` (the benchmarks record no command line of their own)."""
    remark: str = ""
    """Said after the command, before the links to the JSON."""


def markdown_table(table: Rendered) -> list[str]:
    def line(cells: Iterable[Any]) -> str:
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    rule = ["---:" if kind == "r" else "---" for kind in table.align]
    return [line(table.headers), "|" + "|".join(rule) + "|", *(line(row) for row in table.rows)]


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{100 * value:.{digits}f} %"


def num(value: float | None, digits: int = 2) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def yes(value: bool) -> str:
    return "yes" if value else "no"


def grouped(value: int) -> str:
    """An integer with a thin space every three digits (``19 032``)."""
    return f"{value:,}".replace(",", " ")


# --- the REST service: throughput (bench_rest) ---------------------------------------------------------------------

REST_PAYLOADS = {"pcm": "PCM", "features": "features", "mel": "mel", "pcm_deflate": "PCM, deflated",
                 "features_deflate": "features, deflated", "mel_deflate": "mel, deflated"}


def cores(setting: str | dict[str, list[int]]) -> str:
    if isinstance(setting, str):
        return f"cores {setting}"
    service, others = (", ".join(map(str, setting[key])) for key in ("service", "clients_and_in_process"))
    return f"the service on core {service}, the clients and the in-process path on core {others}"


def rest(report: dict[str, Any]) -> Rendered:
    rows = []
    for result in report["results"]:
        for payload in report.get("payloads", ["pcm", "features", "pcm_deflate", "features_deflate"]):
            name, http = REST_PAYLOADS[payload], result[payload]
            cpu = http["cpu_ms_per_clip"]
            rows.append([result["clients"], name, num(result["in_process_clips_per_s"], 0),
                         num(http["http_clips_per_s"], 0), num(http["http_to_in_process"]),
                         num(result["cpu_ms_per_clip"]["in_process"]), f"{cpu['client']:.2f} + {cpu['server']:.2f}"])
    floor = report["http_floor_cpu_ms_per_request"]
    setup = report["setup"]
    return Rendered(
        ["clients", "payload", "in-process clips/s", "HTTP clips/s", "HTTP / in-process", "CPU ms per clip in-process",
         "CPU ms per clip over HTTP (client + server)"],
        "rlrrrrr", rows,
        [f"{setup['clips']} clips per measurement, medians of {setup['repeats']}; {cores(setup['cores'])}; "
         f"a bare `GET /health` costs {floor['client']:.2f} + {floor['server']:.2f} ms of CPU (client + server)."],
    )


# --- the ensemble over MQTT (bench_mqtt, bench_forger) --------------------------------------------------------------

def mqtt(report: dict[str, Any]) -> Rendered:
    setup = report["setup"]
    count = len(setup["models"])
    rows = [[f"in-process ({count} models, 1 thread)", num(report["in_process_clips_per_s"], 0),
             num(report["accuracy"]["in_process"], 4)],
            [f"MQTT ({count} clients, QoS {setup['qos']}, Mosquitto)", num(report["mqtt_clips_per_s"], 0),
             num(report["accuracy"]["mqtt"], 4)]]
    return Rendered(["path", "clips/s (median)", "accuracy"], "lrr", rows, [
        f"{setup['clips']} clips per measurement, {setup['repeats']} measurements; MQTT keeps "
        f"{report['mqtt_to_in_process']:.2f} of the in-process rate; median latency per clip "
        f"{report['mqtt_latency_ms_median']:.0f} ms (every clip is published at once, so it is queueing)."])


FORGER_SCENARIOS = {
    "alone": ("alone", "open"),
    "forgers": ("forgers: one under its own name, never announced, with scores of 1000, and claiming the members' "
                "names from its own topic; a newcomer announcing a fifth model", "open"),
    "impersonator": ("an impersonator: the members' names and topics, one-hot answers", "open"),
    "recipe": ("the recipe, no forger", "TLS + passwords + ACL"),
    "recipe + forgers": ("the recipe, an anonymous forger and one with an account of its own doing all of the above",
                         "TLS + passwords + ACL"),
}


def reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {why}" for why, count in counts.items()) or "none"


def forger(report: dict[str, Any]) -> Rendered:
    rows = []
    for name, result in report["scenarios"].items():
        what, broker = FORGER_SCENARIOS.get(name, (name, ""))
        rows.append([what, broker, num(result["accuracy"], 4), grouped(result["forged_sent"]),
                     grouped(result["forged_combined"]), grouped(result["refused_by_broker"]),
                     len(result["refused_at_connect"]), reasons(result["rejected_answers"])])
    setup = report["setup"]
    return Rendered(
        ["scenario", "broker", "accuracy", "forged answers sent", "combined", "refused by the broker",
         "forgers refused at connect", "rejected_answers"],
        "llrrrrrl", rows,
        [f"{setup['clips']} clips of the {setup['split']} split, {len(setup['models'])} inference clients, "
         f"{setup['policy']} policy, QoS {setup['qos']}."])


# --- the service and the Pi under hostile or broken peers (bench_hostile, bench_broken_big) ------------------------

def hostile(report: dict[str, Any]) -> Rendered:
    rows = [[f"`{r['name']}`", re.sub(r" \(was [^)]*\)", "", r["what"]), r["expected"], r["status"] or "closed",
             yes(r["json_error"]), num(r["ms"], 1)] for r in report["requests"]]
    memory = report["memory_mb"]
    concurrent = report["concurrent"]
    return Rendered(["request", "what", "expected", "status", "JSON error", "ms"], "llrrlr", rows, [
        f"{concurrent['per_kind']} at once of each of {', '.join(concurrent['kinds'])}: statuses "
        f"{', '.join(map(str, concurrent['statuses']))}; memory {memory['resting']} MB resting, peak "
        f"{memory['peak']} MB (+{memory['peak_over_resting']} MB, {memory['measured_by']}); alive after: "
        f"{yes(report['alive_after_attacks'])}, at the end: {yes(report['alive_at_end'])}."])


def hostile_latency(report: dict[str, Any]) -> Rendered:
    calls = report["latency"]
    rows = []
    for where, by_call in calls.items():
        cells = [f"{by_call[call]['median_ms']:.1f} ms ({by_call[call]['max_ms']:.1f})"
                 for call in ("health", "predict")]
        rows.append([where.replace("_", " "), *cells])
    return Rendered(["", "`/health` median (max)", "`/predict` median (max)"], "lrr", rows)


BROKEN_BIGS = {
    "not-json": "200, not JSON", "wrong-length": "scores of the wrong length", "unknown-label": "an unknown label",
    "nan-scores": "NaN scores", "not-probabilities": "scores that are no probabilities", "other-labels": "other labels",
    "huge": "a 200 MB answer", "slow": "answers after 30 s", "server-error": "500", "unauthorized": "401",
}


def broken_big(report: dict[str, Any]) -> Rendered:
    base = report["little_only"]
    rows = [["never asked (`--threshold 0`)", num(base["seconds"]), "1.00", num(base["max_rss_mb"], 1), 0, "–"]]
    for behaviour, result in report["broken"].items():
        rows.append([BROKEN_BIGS.get(behaviour, behaviour), num(result["seconds"]), num(result["ratio_to_little_only"]),
                     num(result["max_rss_mb"], 1), result["big_asked"], reasons(result["fallback_reasons"])])
    within = all(result["within_target"] for result in report["broken"].values())
    return Rendered(["Big", "seconds", "× Little only", "peak MB", "asked", "fallbacks by reason"], "lrrrrl", rows, [
        f"{base['samples']} clips of the {report['split']} split, every one sent to Big (`--threshold 1`), "
        f"client defaults `{report['client_defaults']}`; every run ended on Little's answers within twice the "
        f"Little-only time plus {report['allowance_s']:g} s and under 100 MB: {yes(within)}."])


# --- Big/Little: the cascade, its sweep and its budgets (little_client.py, bench_cascade_budget) -------------------

def cascade(reports: dict[str, Any]) -> Rendered:
    rows = []
    for name, report in reports.items():
        payload, big, flags = CASCADE_RUNS[name]
        rows.append([payload, f"`{big}`", f"`{flags}`", num(report["accuracy"], 4), num(report["little_accuracy"], 4),
                     f"{pct(report['big_fraction'])} ({report['big_requests']})", report["fallbacks"],
                     num(report["mb_per_800_clips"], 3)])
    return Rendered(["payload", "Big", "flags", "accuracy", "Little alone", "clips sent to Big", "fallbacks",
                     "MB sent per 800 clips"], "lllrrrrr", rows,
                    [f"{next(iter(reports.values()))['samples']} test clips, the shipped threshold, against "
                     "`python big_service.py --model models/BIG`; MB are request bodies as sent (the reports' "
                     "`pack_bytes` give them before compression)."])


def sweep(report: dict[str, Any]) -> Rendered:
    kinds = list(report["rows"][0]["mb_per_800_clips"])
    rows = [[num(r["threshold"], 4), num(r["accuracy"], 4), num(100 * r["big_fraction"], 1), r["big_requests"],
             *(num(r["mb_per_800_clips"][kind], 3) for kind in kinds)] for r in report["rows"]]
    return Rendered(["threshold", "accuracy", "Big %", "requests",
                     *(f"MB/800 {kind.replace('_deflate', ', deflated')}" for kind in kinds)],
                    "rrrr" + "r" * len(kinds), rows,
                    [f"{report['samples']} clips; Little alone {report['little_accuracy']:.4f}, Big alone "
                     f"{report['big_accuracy']:.4f}; the shipped threshold is {num(report['threshold'], 4)}."])


def cascade_budget(report: dict[str, Any]) -> Rendered:
    rows = []
    for stem, r in report["results"].items():
        within = r["best_accuracy_within_big_fraction"]
        rows.append([f"`{stem}`", r["clips"], num(r["little_accuracy"], 4), num(r["big_accuracy"], 4),
                     *(num(within[budget], 4) for budget in sorted(within)), pct(r["big_fraction_to_reach_big"]),
                     f"{r['rule']['accuracy']:.4f} at {pct(r['rule']['big_fraction'])}"])
    budgets = sorted(next(iter(report["results"].values()))["best_accuracy_within_big_fraction"])
    return Rendered(["Little", "clips", "Little alone", "Big alone",
                     *(f"best, Big ≤ {100 * float(b):.0f} %" for b in budgets), "Big share to reach Big",
                     "the shipped rule"],
                    "lrrr" + "r" * len(budgets) + "rr", rows, [f"The {report['split']} split; Big: `{report['big']}`."])


# --- always listening and robustness (bench_stream, bench_robustness) ----------------------------------------------

STREAM_MODES = {"Little alone": "Little alone (calibrated)", "Little + Big": "**Little + Big (calibrated)**",
                "Little, the obvious window": "Little, the obvious window",
                "Big alone, the obvious window": "Big alone, the obvious window",
                # the labels of reports written before the bench renamed them
                "Little, issue's window": "Little, the obvious window", "Big alone, issue's window":
                "Big alone, the obvious window"}


def stream(report: dict[str, Any]) -> Rendered:
    rows = []
    for r in report["rows"]:
        asked = r["big_requests"]
        rows.append([r["room"], STREAM_MODES.get(r["mode"], r["mode"]), num(100 * r["hit_rate"], 1), r["wrong"],
                     r["misses"], num(r["false_alarms_per_hour"], 1), num(100 * r["other_fire_rate"], 1),
                     r["pause_alarms"] + r["extras"],
                     f"{asked} ({100 * r['big_fraction']:.0f} %)" if asked else "–",
                     num(r["big_requests_per_hour"], 0) if asked else "–",
                     num(r["big_bytes"] / 1e3, 0) if asked else "–",
                     num(r["real_time_factor"], 4)])
    minutes = max(stream["seconds"] for stream in report["streams"].values()) / 60
    return Rendered(["room", "mode", "hit %", "wrong", "missed", "FA/h noise", "other words fire %",
                     "pause alarms + repeats", "Big asked", "Big/h", "kB sent", "RTF"], "llrrrrrrrrrr", rows,
                    [f"{report['split'].capitalize()} speakers, {minutes:.0f}-minute streams; Big/h is per hour "
                     "of stream, kB sent is Big's requests as sent, RTF the Little path's processing time over the "
                     "audio's (live runs only)."])


ROBUSTNESS_FIRST = ("little", "big")


def robustness(report: dict[str, Any]) -> Rendered:
    names = list(report["models"])
    models = [*(n for n in ROBUSTNESS_FIRST if n in names), *(n for n in names if n not in ROBUSTNESS_FIRST)]
    cascades = [key for key in ("cascade_shipped", "cascade_calibrated") if key in report["rows"][0]]
    rows = []
    for r in report["rows"]:
        cells = [f"{r[key]:.3f} ({100 * r[key + '_big_fraction']:.0f} %)" for key in cascades]
        rows.append([r["change"], *(num(r[m], 3) for m in models[:2]), *cells, *(num(r[m], 3) for m in models[2:])])
    heads = {"cascade_shipped": "cascade, shipped threshold (Big asked)",
             "cascade_calibrated": "cascade, threshold for the changes (Big asked)"}
    cascade = report["cascade"]
    return Rendered(["change", *(f"`{m}`" for m in models[:2]), *(heads[key] for key in cascades),
                     *(f"`{m}`" for m in models[2:])],
                    "l" + "r" * (len(models) + len(cascades)), rows,
                    [f"Accuracy on {report['test_clips']} test clips; the second cascade's threshold, "
                     f"{cascade['calibrated']['threshold']:.4f}, was chosen by the shipped rule on "
                     f"the {report['validation_clips']} validation clips under every change, pooled."])


# --- features and the pretrained front end (bench_preprocessing, bench_front_end) ----------------------------------

def preprocessing(report: dict[str, Any]) -> Rendered:
    rows = []
    for result in report["results"]:
        for mode, name in (("single", "one clip at a time"), ("batched_per_clip", "batched, per clip")):
            times = result[mode]
            rows.append([", ".join(result["used_by"]), name, num(times["numpy"], 3), num(times["tf_eager"], 3),
                         num(times["tf_function"], 3)])
    return Rendered(["FeatureConfig of", "mode", "numpy ms", "`tf.signal` eager ms", "`tf.function` ms"], "llrrr",
                    rows, [f"Medians over {report['clips']} clips (batched: {report['repeats']} runs of one batch); "
                           f"TensorFlow on {report['environment']['tf_threads']} thread."])


def front_end(report: dict[str, Any]) -> Rendered:
    machines = {"pi": "the Pi", "server": "the server", "server (batched)": "the server, batched",
                "server (embedding in the model)": f"the server, `{report.get('model', {}).get('name', 'Big')}`"}
    rows = [[step, machines.get(values["machine"], values["machine"]), num(values["median_ms"]),
             num(values["p90_ms"]), f"{100 * values['share']:.0f} %"] for step, values in report["steps"].items()]
    return Rendered(["step", "where", "median ms", "p90 ms", "share of its machine's work"], "llrrr", rows, [
        f"Per clip over {report['clips']} clips, one clip at a time (batched row: {report['batch']} clips' windows "
        f"in one call), onnxruntime on {report['environment']['onnxruntime_threads']} thread."])


# --- training (learning_curve, the models' metadata) ---------------------------------------------------------------

def learning_curve(report: dict[str, Any]) -> Rendered:
    runs = report["runs"]
    rejecting = any(r["test_non_keywords_rejected"] is not None for r in runs)  # recipes with _silence_, _unknown_
    rows = [[grouped(r["train_clips"]), pct(r["validation_accuracy"]), pct(r["test_accuracy"]),
             *([pct(r["test_keywords"]), pct(r["test_non_keywords_rejected"])] if rejecting else []), r["epochs_run"]]
            for r in runs]
    return Rendered(["training clips", "validation", "test (both folders)",
                     *(["test keyword clips", "test non-keywords rejected"] if rejecting else []), "epochs"],
                    "rrr" + ("rr" if rejecting else "") + "r", rows,
                    [f"Recipe `{report['recipe']}`, seed {report['seed']}."])


MODELS = ("little", "big", "big_embedding", "ensemble_1", "ensemble_2", "ensemble_3", "ensemble_4")


def model_input(metadata: dict[str, Any]) -> str:
    rows, columns = metadata["input_shape"][:2]
    if metadata.get("front_end", {}).get("embedding_in_model"):
        return f"{rows}×{columns}×{metadata['input_shape'][2]} mel windows"
    if metadata.get("front_end"):
        return f"{rows}×{columns} embeddings"
    config = metadata["feature_config"]
    return f"{rows}×{columns} {'MFCC' if config['num_coefficients'] else 'log-mel'}"


def models(metadatas: dict[str, Any]) -> Rendered:
    rows = []
    for name, m in metadatas.items():
        accuracy = m["accuracy"]
        sizes = m["sizes"]
        size = (f"{grouped(sizes['tflite_zlib'])} B zlib ({grouped(sizes['tflite'])} B)" if "tflite_zlib" in sizes
                else f"{grouped(sizes['tflite'])} B")
        rows.append([f"`{name}`", m["description"], grouped(m["architecture"]["parameters"]), model_input(m),
                     len(m["labels"]), num(accuracy["validation"], 4),
                     num(accuracy["test_by_data_dir"]["speech_commands"]["accuracy"], 4), size])
    return Rendered(["model", "what", "parameters", "input", "labels", "validation", "**test**", "file"],
                    "llrlrrrr", rows,
                    ["From each model's metadata, which `train.py` writes when it exports the model, measured with the "
                     "exported file. Test: the 264 clips of `speech_commands`' test speakers, never trained on; "
                     "validation: both folders' validation speakers (for `big_embedding` with other words and noise "
                     "too)."])


def front_end_big(metadatas: dict[str, Any]) -> Rendered:
    """``big`` against ``big_embedding`` on keywords and non-keywords, from their metadata."""
    def samples(accuracy: dict[str, Any], folders: Iterable[str]) -> int:
        return sum(accuracy["test_by_data_dir"][folder]["samples"] for folder in folders
                   if folder in accuracy["test_by_data_dir"])

    def keywords(accuracy: dict[str, Any], split: str) -> str:
        if f"{split}_keywords" not in accuracy:  # eight labels: every clip is a keyword clip
            return num(accuracy[split], 4)
        refused = accuracy[f"{split}_keywords_rejected"]
        return f"{accuracy[f'{split}_keywords']:.4f} ({pct(refused)} refused as non-keywords)"

    def refused(accuracy: dict[str, Any]) -> str:
        return num(accuracy["test_non_keywords_rejected"], 4) if "test_non_keywords_rejected" in accuracy else "—"

    first = next(iter(metadatas.values()))["accuracy"]
    keyword_folders = [f for f in first["test_by_data_dir"] if not f.startswith("_") and f != "speech_commands_other"]
    other = next(m["accuracy"] for m in metadatas.values() if "test_non_keywords_rejected" in m["accuracy"])
    rows = [
        [f"keyword clips of the project's test split ({first['test_by_data_dir']['speech_commands']['samples']})",
         *(num(m["accuracy"]["test_by_data_dir"]["speech_commands"]["accuracy"], 4) for m in metadatas.values())],
        [f"keyword clips, both folders' test speakers ({samples(first, keyword_folders)})",
         *(keywords(m["accuracy"], "test") for m in metadatas.values())],
        [f"other words and noise refused ({samples(other, ['speech_commands_other', '_background_noise_'])} "
         "test clips)", *(refused(m["accuracy"]) for m in metadatas.values())],
        ["validation keyword clips", *(keywords(m["accuracy"], "validation") for m in metadatas.values())],
    ]
    return Rendered(["", *(f"`{name}`" for name in metadatas)], "l" + "r" * len(metadatas), rows)


# --- the tables, by name ----------------------------------------------------------------------------------------------

#: The Big/Little runs: the report's stem, what is sent, to which Big, with which flags of little_client.py.
CASCADE_RUNS = {
    "cascade_mel_deflate": ("mel, deflated", "big_embedding", "--payload mel"),
    "cascade_mel": ("mel", "big_embedding", "--payload mel --compress none"),
    "cascade_pcm_deflate": ("PCM, deflated", "big_embedding", "--payload pcm"),
    "cascade_pcm": ("PCM", "big_embedding", "--payload pcm --compress none"),
    "cascade_features_deflate": ("features, deflated", "big", "--payload features"),
}


TRAIN = f"python train.py --recipe NAME --data-dir {DATA}/speech_commands --data-dir {DATA}/speech_commands_extra"
TRAIN_REMARK = (f"`big_embedding` with `--data-dir {DATA}/speech_commands_more` too; each model's metadata records "
                "its folders")


def benched(render: Callable[[Any], Rendered], module: str, args: str, report: str | None = None) -> Table:
    """A table of ``docs/results/REPORT.json`` (REPORT: the module's name by default), written by
    ``python -m bench.MODULE ARGS --report docs/results/REPORT.json``."""
    source = f"{RESULTS}/{report or module}.json"
    return Table(source, render, f"python -m bench.{module} {args} --report {source}")


CLIPS = f"--data-dir {DATA}/speech_commands"
BOTH = f"{CLIPS} --data-dir {DATA}/speech_commands_extra"

TABLES: dict[str, Table] = {
    "models": Table({name: f"models/{name}.json" for name in MODELS}, models, TRAIN, TRAIN_REMARK),
    "front_end_big": Table({name: f"models/{name}.json" for name in ("big", "big_embedding")}, front_end_big, TRAIN,
                           TRAIN_REMARK),
    "cascade": Table({stem: f"{RESULTS}/{stem}.json" for stem in CASCADE_RUNS}, cascade,
                     f"python little_client.py --service http://127.0.0.1:8080 {CLIPS} FLAGS "
                     f"--report {RESULTS}/cascade_NAME.json"),
    "sweep": Table(f"{RESULTS}/little_sweep.json", sweep,
                   f"python calibrate.py sweep --service http://127.0.0.1:8080 {CLIPS} "
                   f"--report {RESULTS}/little_sweep.json --plot docs/little_sweep.png"),
    "cascade_budget": benched(cascade_budget, "bench_cascade_budget", f"--little models/little {BOTH}"),
    "rest_split_cores": benched(rest, "bench_rest", f"{CLIPS} --repeats 9 --split-cores", "bench_rest_split_cores"),
    "rest": benched(rest, "bench_rest", f"{CLIPS} --repeats 9"),
    "mqtt": benched(mqtt, "bench_mqtt", CLIPS),
    "forger": benched(forger, "bench_forger", CLIPS),
    "hostile": benched(hostile, "bench_hostile", CLIPS),
    "hostile_latency": benched(hostile_latency, "bench_hostile", CLIPS),
    "broken_big": benched(broken_big, "bench_broken_big", CLIPS),
    "stream": benched(stream, "bench_stream", f"{CLIPS} --plot docs/bench_stream_det.png"),
    "robustness": benched(robustness, "bench_robustness",
                          f"{CLIPS} --other-dir {DATA}/speech_commands_other --plot docs/robustness.png"),
    "preprocessing": benched(preprocessing, "bench_preprocessing", CLIPS),
    "front_end": benched(front_end, "bench_front_end", f"{CLIPS} --clips 200"),
    "learning_curve": benched(learning_curve, "learning_curve", f"--recipe ensemble_3 --fractions 0.25 0.5 1.0 {BOTH}"),
}


class TableError(Exception):
    """A marker names no known table, is not closed, or its JSON is missing or not what its renderer reads."""


def load(root: Path, table: Table) -> Any:
    def read(path: str) -> Any:
        try:
            return json.loads((root / path).read_text())
        except OSError as error:
            raise TableError(f"cannot read {path}: {error.strerror}") from error
        except ValueError as error:
            raise TableError(f"cannot read {path}: {error}") from error

    if isinstance(table.source, dict):
        return {name: read(path) for name, path in table.source.items()}
    return read(table.source)


def block(root: Path, page: Path, name: str) -> str:
    """What stands between a table's markers on ``page``: the table, its notes, the command and the JSON."""
    if name not in TABLES:
        raise TableError(f"no table is named {name!r} (known: {', '.join(TABLES)})")
    table = TABLES[name]
    try:
        rendered = table.render(load(root, table))
    except (KeyError, TypeError, IndexError, ValueError) as error:
        raise TableError(f"{name}: its JSON lacks what the table reads ({type(error).__name__}: {error})") from error
    lines = markdown_table(rendered)
    lines += ["", *rendered.notes] if rendered.notes else []
    sources = table.source if isinstance(table.source, dict) else {"JSON": table.source}
    links = ", ".join(f"[{label}]({Path(os.path.relpath(root / path, page.parent)).as_posix()})"
                      for label, path in sources.items())
    remark = f"{table.remark}; " if table.remark else ""
    return "\n".join([*lines, "", f"Produced by `{table.command}` ({remark}{links})."]) + "\n"


def pages(root: Path) -> list[Path]:
    """README.md and docs/*.md, the pages whose tables are generated."""
    return [path for path in [root / "README.md", *sorted((root / "docs").glob("*.md"))] if path.is_file()]


def rewrite(root: Path, page: Path) -> tuple[str, list[str], list[str]]:
    """The page with every marked table made afresh, the names of those that differed, and the errors (a table
    that cannot be made is left as it stands)."""
    text = page.read_text()
    opened = OPENING.findall(text)
    closed = [match.group("name") for match in BLOCK.finditer(text)]
    if opened != closed:
        unclosed = next((name for name in opened if opened.count(name) != closed.count(name)), opened[-1])
        return text, [], [f"table {unclosed!r} has no <!-- /table --> line before the next marker"]
    differing: list[str] = []
    errors: list[str] = []

    def fresh(match: re.Match[str]) -> str:
        name = match.group("name")
        try:
            body = block(root, page, name)
        except TableError as error:
            errors.append(str(error))
            return match.group(0)
        if body != match.group("body"):
            differing.append(name)
        return match.group(1) + body + match.group(4)

    return BLOCK.sub(fresh, text), differing, errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     epilog="Tables: " + ", ".join(TABLES) + ".")
    parser.add_argument("--check", action="store_true",
                        help="change nothing; exit 1 naming every table that differs from its JSON")
    parser.add_argument("--root", type=Path, default=REPO_ROOT,
                        help="the checkout whose README.md and docs/*.md to rewrite (default: this one)")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    errors: list[str] = []
    differing: list[str] = []
    for page in pages(root):
        where = page.relative_to(root).as_posix()
        text, changed, failed = rewrite(root, page)
        errors += [f"{where}: {error}" for error in failed]
        differing += [f"{where}: table {name!r} differs from its JSON" for name in changed]
        if changed and not args.check:
            page.write_text(text)
            print(f"{where}: rewrote {', '.join(changed)}")
    for error in errors:
        print(f"error: {error}", file=sys.stderr)
    if args.check:
        for line in differing:
            print(line, file=sys.stderr)
        if differing:
            print("to rewrite them: python bench/tables.py", file=sys.stderr)
        return 1 if errors or differing else 0
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
