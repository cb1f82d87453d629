"""Clips per second through HTTP + SenML against the same Big model called in-process.

Two ways to classify the same real clips with the Big model, at 1 and at 8
concurrent clients (threads):

* ``in_process``: ``model.predict_audio`` directly, each thread with its own clone
  (TFLite interpreters are not thread-safe);
* ``http_pcm`` and ``http_features`` (``http_mel`` for a Big on the pretrained front end, which
  reads the front end's mel frames instead of features): the production path with each payload. Each
  client thread has its own :class:`kws.rest.client.BigClient` (SenML encoding, one
  keep-alive connection of its ``requests`` session) and posts to ``big_service.py`` running in a separate
  process, as it would in the cloud, so client and server do not share one
  interpreter lock. With ``features`` the client computes Big's features (as the
  Pi would) and sends them as int8; the server only decodes and runs the model.
  Each payload is measured twice, as a plain SenML pack and deflated (``pcm_deflate``,
  ``features_deflate``: what the Pi sends a service that takes it), so the CPU deflating
  costs on each side shows in the same run.

All include feature extraction (on one side or the other); HTTP adds encoding,
the round trip and decoding. Each (path, clients) pair runs ``--repeats`` times, interleaved so a
change in machine load hits every pair alike, and the medians are quoted.

To show where the difference goes, the report also gives the CPU time per clip
on each side (this process's threads; the service's from /proc) and the CPU of
a bare ``GET /health``, the floor under any exchange through requests, urllib3,
waitress and CherryPy: its client side is the Big client's own CPU per request.
Once the cores are saturated (8 clients) throughput is inversely proportional to
CPU per clip, so HTTP / in-process is close to in-process CPU / (client + server CPU).

With ``--split-cores`` the service gets a core of its own and this process (the
load generator, and the in-process path) the others, as when the Pis are other
machines: HTTP / in-process is then the service's throughput on one core against
the bare model's on one core, what the service's HTTP, SenML and checks cost.

    python -m bench.bench_rest --data-dir ../shared/data/speech_commands [--split-cores]
"""

# ruff: noqa: E402 - imports follow an environment or sys.path line on purpose
from __future__ import annotations

import os

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: as in big_service.py, which the in-process path is compared to

import argparse
import logging
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import requests
from tqdm import tqdm

from kws.audio import read_clip
from kws.data.clips import DatasetError, resolve_data_dir, select_clips, spread_evenly
from kws.model.runtime import KeywordModel, load_model
from kws.reports import format_table, write_json_report
from kws.rest import service as big_service
from kws.rest.client import BigClient
from kws.util.logs import setup_logging
from kws.util.net import free_tcp_port

REPO_ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("bench_rest")

DEFAULT_REPORT = Path("reports/bench_rest.json")
#: A clip classifier for one worker thread; called once per clip.
Classify = Callable[[np.ndarray], Any]


def bodies_for(model: KeywordModel) -> dict[str, tuple[str, str]]:
    """What the HTTP clients send, by name: the clip and what the Pi computes for this Big (its features, or the
    pretrained front end's mel frames), each as a plain SenML pack and deflated (as the Pi sends it to a service
    that takes it), so the CPU that deflating costs is measured in the same run as the bytes it saves."""
    computed = "mel" if model.metadata.front_end is not None else "features"
    return {"pcm": ("pcm", "none"), computed: (computed, "none"),
            "pcm_deflate": ("pcm", "deflate"), f"{computed}_deflate": (computed, "deflate")}


def pick_clips(data_dir: Path, count: int) -> list[np.ndarray]:
    """``count`` test-split clips spread evenly over the split (so over every label)."""
    return [read_clip(clip.path) for clip in spread_evenly(select_clips(data_dir, "test"), count)]


@dataclass(frozen=True)
class Measurement:
    """One timed pass over the clips: throughput, and CPU time per clip on each side."""

    clips_per_s: float
    client_cpu_ms: float
    """CPU of this process (every thread) per clip: the in-process path, or the HTTP clients."""
    server_cpu_ms: float | None
    """CPU of the service process per clip; None for the in-process path."""


def server_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc), all its threads included."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(classifiers: Sequence[Classify], audio: Sequence[np.ndarray], server_pid: int | None) -> Measurement:
    """Throughput with one thread per classifier, each taking every n-th clip."""
    workers = len(classifiers)

    def work(index: int) -> None:
        for samples in audio[index::workers]:
            classifiers[index](samples)

    server_before = server_cpu_seconds(server_pid) if server_pid else 0.0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        cpu_before, started = time.process_time(), time.perf_counter()
        list(pool.map(work, range(workers)))
        elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_before
    server_cpu = server_cpu_seconds(server_pid) - server_before if server_pid else None
    per_clip_ms = 1000.0 / len(audio)
    return Measurement(
        clips_per_s=len(audio) / elapsed,
        client_cpu_ms=cpu * per_clip_ms,
        server_cpu_ms=None if server_cpu is None else server_cpu * per_clip_ms,
    )


class ServiceProcess:
    """``big_service.py`` in a child process, ready (its /health says 200) on entering."""

    def __init__(self, model: Path, threads: int, cpus: set[int] | None = None) -> None:
        self.url = f"http://127.0.0.1:{free_tcp_port()}"
        port = self.url.rsplit(":", 1)[1]
        command = [sys.executable, str(REPO_ROOT / "big_service.py"), "--port", port, "--model", str(model)]
        # Pinned before exec, so every thread the service starts inherits the cores.
        pin = (lambda: os.sched_setaffinity(0, cpus)) if cpus else None
        self.process = subprocess.Popen([*command, "--threads", str(threads)], cwd=REPO_ROOT, preexec_fn=pin)

    def __enter__(self) -> ServiceProcess:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"big_service.py exited with {self.process.returncode}; see its log above")
            try:
                if requests.get(f"{self.url}/health", timeout=1).status_code == 200:
                    return self
            except requests.ConnectionError:
                pass
            time.sleep(0.2)
        self.__exit__()
        raise RuntimeError(f"big_service.py was not ready at {self.url} within 60 s")

    def __exit__(self, *exc_info: object) -> None:
        self.process.terminate()
        self.process.wait(timeout=15)


def http_floor_cpu_ms(client: BigClient, server_pid: int, calls: int = 300) -> dict[str, float]:
    """CPU per bare ``GET /health`` on each side: what any request costs before SenML or the model."""
    server_before, client_before = server_cpu_seconds(server_pid), time.process_time()
    for _ in range(calls):
        client.health()
    return {
        "client": round((time.process_time() - client_before) * 1000 / calls, 3),
        "server": round((server_cpu_seconds(server_pid) - server_before) * 1000 / calls, 3),
    }


def median_of(runs: list[Measurement], field: str) -> float | None:
    values = [getattr(run, field) for run in runs]
    return None if values[0] is None else round(statistics.median(values), 3)


def summarize(runs: dict[tuple[str, int], list[Measurement]], clients: int, payloads: Sequence[str]) -> dict[str, Any]:
    """Medians for one client count and each payload, with the CPU cost per clip that explains the ratio."""
    in_process = runs[("in_process", clients)]
    in_process_rate = median_of(in_process, "clips_per_s")
    result: dict[str, Any] = {
        "clients": clients,
        "in_process_clips_per_s": round(in_process_rate, 2),
        "cpu_ms_per_clip": {"in_process": median_of(in_process, "client_cpu_ms")},
    }
    for payload in payloads:
        http = runs[(f"http_{payload}", clients)]
        http_rate = median_of(http, "clips_per_s")
        result[payload] = {
            "http_clips_per_s": round(http_rate, 2),
            "http_to_in_process": round(http_rate / in_process_rate, 3),
            "cpu_ms_per_clip": {"client": median_of(http, "client_cpu_ms"), "server": median_of(http, "server_cpu_ms")},
        }
    paths = ("in_process", *(f"http_{payload}" for payload in payloads))
    result["runs_clips_per_s"] = {path: [round(run.clips_per_s, 2) for run in runs[(path, clients)]] for path in paths}
    return result


def split_cores() -> tuple[set[int], set[int]]:
    """One core for the service, the others for this process (which must pin itself before any thread starts)."""
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        raise SystemExit("--split-cores needs at least two CPUs")
    return {cpus[0]}, set(cpus[1:])


def run(args: argparse.Namespace) -> dict[str, Any]:
    service_cpus, bench_cpus = split_cores() if args.split_cores else (None, None)
    if bench_cpus:
        os.sched_setaffinity(0, bench_cpus)
    audio = pick_clips(args.data_dir, args.clips)
    model = load_model(args.model)
    log.info("%d clips, Big model %s, clients %s, %d repeats", len(audio), model.name, args.clients, args.repeats)
    runs: dict[tuple[str, int], list[Measurement]] = {}
    most = max(args.clients)
    bodies = bodies_for(model)
    with ServiceProcess(args.model, args.server_threads, service_cpus) as service:
        http_clients = {
            name: [BigClient(service.url, timeout=30, payload=payload, compress=compress) for _ in range(most)]
            for name, (payload, compress) in bodies.items()
        }
        paths: dict[str, tuple[list[Classify], int | None]] = {
            "in_process": ([model.clone().predict_audio for _ in range(most)], None),  # one interpreter per thread
            **{f"http_{payload}": ([client.predict for client in clients], service.process.pid)
               for payload, clients in http_clients.items()},
        }
        for classifiers, _ in paths.values():
            for classify in classifiers:  # warm up: first inference, keep-alive connections, server-side clones
                classify(audio[0])
        for _ in tqdm(range(args.repeats), desc="repeats", unit="repeat"):
            for clients in args.clients:
                for path, (classifiers, server_pid) in paths.items():
                    runs.setdefault((path, clients), []).append(measure(classifiers[:clients], audio, server_pid))
        floor = http_floor_cpu_ms(http_clients["pcm"][0], service.process.pid)
        for client in (client for clients in http_clients.values() for client in clients):
            client.close()
    return {
        "setup": {
            "clips": len(audio),
            "repeats": args.repeats,
            "server_threads": args.server_threads,
            "model": model.name,
            "model_sha256": model.sha256,
            "cpu_count": os.cpu_count(),
            "machine": platform.machine(),
            "python": platform.python_version(),
            "server": "big_service.py in a child process (waitress + CherryPy)",
            "cores": {"service": sorted(service_cpus), "clients_and_in_process": sorted(bench_cpus)}
            if args.split_cores else "shared",
        },
        "payloads": list(bodies),
        "results": [summarize(runs, clients, list(bodies)) for clients in args.clients],
        "http_floor_cpu_ms_per_request": floor,
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir", type=Path, help="Speech Commands folder, test split (default: $KWS_DATA_DIR or ../shared)"
    )
    parser.add_argument(
        "--model", type=Path, default=big_service.DEFAULT_MODEL, help="Big model (default: %(default)s)"
    )
    parser.add_argument("--clips", type=int, default=256, help="clips per measurement (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=5, help="measurements per path and client count (default: 5)")
    parser.add_argument("--split-cores", action="store_true",
                        help="the service on a core of its own, the clients and the in-process path on the others")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8], help="concurrent clients (default: 1 8)")
    parser.add_argument("--server-threads", type=int, default=8, help="big_service.py --threads (default: 8)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="JSON report (default: %(default)s)")
    args = parser.parse_args(argv)
    if args.clips < max(args.clients) or args.repeats < 1:
        parser.error("--clips must be at least the largest --clients, and --repeats at least 1")
    try:
        args.data_dir = resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(logging.INFO)
    report = run(args)
    rows = [
        [
            row["clients"],
            payload.replace("_deflate", ", deflated"),
            row["in_process_clips_per_s"],
            row[payload]["http_clips_per_s"],
            row[payload]["http_to_in_process"],
            row["cpu_ms_per_clip"]["in_process"],
            f"{row[payload]['cpu_ms_per_clip']['client']:.2f} + {row[payload]['cpu_ms_per_clip']['server']:.2f}",
        ]
        for row in report["results"]
        for payload in report["payloads"]
    ]
    headers = ["clients", "payload", "in-process clips/s", "HTTP clips/s", "HTTP / in-process", "CPU ms/clip alone"]
    print(format_table([*headers, "CPU ms/clip HTTP (client + server)"], rows, float_digits=2))
    floor = report["http_floor_cpu_ms_per_request"]
    print(f"a bare GET /health costs {floor['client']:.2f} + {floor['server']:.2f} ms CPU (client + server)")
    print(f"cores: {report['setup']['cores']}")
    write_json_report(args.report, report)
    log.info("report written to %s", args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
