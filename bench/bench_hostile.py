"""The Big service under attack: what each hostile request gets, peak memory, latency beside slow clients.

``big_service.py`` runs as its own process (so its memory is its own). Then:

1. every request of :mod:`bench.hostile_requests` is sent once: its status, whether
   the body was a JSON error, the time to the answer;
2. the heavy ones again, ``--concurrent`` of each at once (100 MB bodies, 10 MB
   heads): the service's peak resident memory (``VmHWM``, reset before) against its
   resting size, and whether it still answers;
3. ``--slow-clients`` connections trickling their headers a byte at a time, and
   beside them ``GET /health`` and ``POST /predict`` with a real clip: latency
   median and maximum, against the same requests with no slow client.

    python -m bench.bench_hostile --data-dir ../shared/data/speech_commands
"""

from __future__ import annotations

import argparse
import logging
import platform
import socket
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import requests

from bench.common import add_report_arguments, finish, parse_bench_args
from bench.hostile_requests import CATALOGUE, send
from kws.audio import read_clip
from kws.data.clips import select_clips
from kws.reports import format_table
from kws.util.net import free_tcp_port
from kws.wire import audio_pack, senml

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPORT = Path("reports/bench_hostile.json")
HEAVY = ("chunked-100mb", "declared-100mb", "header-10mb", "deep-nesting")
MEGABYTE = 1024 * 1024

log = logging.getLogger("bench_hostile")


def memory_kib(pid: int) -> dict[str, int]:
    """VmRSS (resident now) and VmHWM (peak resident since start or the last reset) of ``pid``, in KiB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def reset_peak(pid: int) -> bool:
    """Start VmHWM afresh (Linux >= 4.0: ``echo 5 > /proc/PID/clear_refs``); False if not allowed."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakSampler:
    """Samples VmRSS every 10 ms, for kernels where the peak cannot be reset."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, memory_kib(self.pid)["VmRSS"])
            time.sleep(0.01)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak


def start_service(port: int) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "big_service.py"), "--port", str(port)],
        cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if requests.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return process
        except requests.ConnectionError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("big_service.py did not become ready in 60 s")


def timed_calls(url: str, body: bytes, count: int) -> dict[str, dict[str, float | int]]:
    """``count`` GET /health and POST /predict, each on a fresh connection (a new client each time)."""
    results: dict[str, list[float]] = {"health": [], "predict": []}
    failures = {"health": 0, "predict": 0}
    for _ in range(count):
        for name, call in (
            ("health", lambda: requests.get(f"{url}/health", timeout=10)),
            ("predict", lambda: requests.post(f"{url}/predict", data=body,
                                              headers={"Content-Type": senml.MEDIA_TYPE}, timeout=10)),
        ):
            started = time.perf_counter()
            try:
                ok = call().status_code == 200
            except requests.RequestException:
                ok = False
            results[name].append((time.perf_counter() - started) * 1000)
            failures[name] += not ok
    return {name: {"median_ms": round(statistics.median(values), 2), "max_ms": round(max(values), 2),
                   "failed": failures[name]} for name, values in results.items()}


def slow_clients(port: int, count: int, stop: threading.Event) -> threading.Thread:
    """``count`` connections sending the start of a request, then one header byte per second each."""
    connections = []
    for _ in range(count):
        connection = socket.create_connection(("127.0.0.1", port), timeout=10)
        connection.sendall(b"POST /predict HTTP/1.1\r\nHost: big\r\nX-Slow: ")
        connections.append(connection)

    def trickle() -> None:
        while not stop.wait(1.0):
            for connection in connections:
                try:
                    connection.send(b"a")
                except OSError:
                    pass
        for connection in connections:
            connection.close()

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    return thread


def run(args: argparse.Namespace) -> dict[str, Any]:
    clip = select_clips(args.data_dir, "test")[0]
    body = audio_pack.encode_audio_pack(read_clip(clip.path), device="bench").encode()
    port = free_tcp_port()
    service = start_service(port)
    url = f"http://127.0.0.1:{port}"
    try:
        timed_calls(url, body, 5)  # warm: every worker's interpreter, the allocator
        resting = memory_kib(service.pid)["VmRSS"]
        baseline = timed_calls(url, body, args.calls)

        resettable = reset_peak(service.pid)
        sampler = None if resettable else PeakSampler(service.pid)
        single = []
        for request in CATALOGUE:
            outcome = send("127.0.0.1", port, request)
            single.append({"name": request.name, "what": request.what, "expected": request.expected_status,
                           "status": outcome.status, "json_error": outcome.json_error,
                           "ms": round(outcome.seconds * 1000, 1), "error": outcome.error[:120]})
        heavy = [r for r in CATALOGUE if r.name in HEAVY]
        with ThreadPoolExecutor(max_workers=args.concurrent * len(heavy)) as pool:
            concurrent = list(pool.map(lambda r: send("127.0.0.1", port, r).status,
                                       [r for r in heavy for _ in range(args.concurrent)]))
        peak = sampler.stop() if sampler else memory_kib(service.pid)["VmHWM"]
        alive_after_attacks = requests.get(f"{url}/health", timeout=10).status_code == 200

        stop = threading.Event()
        trickler = slow_clients(port, args.slow_clients, stop)
        time.sleep(2)  # let them settle in: each has sent two header bytes
        beside_slow = timed_calls(url, body, args.calls)
        stop.set()
        trickler.join()
        alive_at_end = service.poll() is None and requests.get(f"{url}/health", timeout=10).status_code == 200
    finally:
        service.terminate()
        service.wait(30)
    return {
        "benchmark": "bench_hostile",
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "requests": single,
        "all_4xx_json": all(row["status"] == row["expected"] and row["json_error"] for row in single),
        "concurrent": {"per_kind": args.concurrent, "kinds": list(HEAVY), "statuses": sorted(set(concurrent))},
        "memory_mb": {"resting": round(resting / 1024, 1), "peak": round(peak / 1024, 1),
                      "peak_over_resting": round((peak - resting) / 1024, 1),
                      "measured_by": "VmHWM" if resettable else "VmRSS sampled every 10 ms"},
        "alive_after_attacks": alive_after_attacks,
        "latency": {"alone": baseline, f"beside_{args.slow_clients}_slow_clients": beside_slow},
        "slow_clients": args.slow_clients,
        "alive_at_end": alive_at_end,
    }


def format_report(report: dict[str, Any]) -> str:
    rows = [[row["name"], row["expected"], row["status"] or "closed", "yes" if row["json_error"] else "no",
             row["ms"]] for row in report["requests"]]
    memory = report["memory_mb"]
    latency_rows = [[where, name, values["median_ms"], values["max_ms"], values["failed"]]
                    for where, calls in report["latency"].items() for name, values in calls.items()]
    return "\n".join([
        format_table(["request", "expected", "status", "JSON", "ms"], rows, float_digits=1),
        "",
        f"{report['concurrent']['per_kind']} at once of each of {', '.join(report['concurrent']['kinds'])}: "
        f"statuses {report['concurrent']['statuses']}",
        f"memory: resting {memory['resting']} MB, peak {memory['peak']} MB "
        f"(+{memory['peak_over_resting']} MB, {memory['measured_by']}); alive after: {report['alive_after_attacks']}",
        "",
        format_table(["", "call", "median ms", "max ms", "failed"], latency_rows, float_digits=2),
        f"alive at the end: {report['alive_at_end']}",
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--concurrent", type=int, default=20, metavar="N", help="heavy requests of each kind at once")
    parser.add_argument("--slow-clients", type=int, default=200, metavar="N", help="slow-loris connections")
    parser.add_argument("--calls", type=int, default=20, metavar="N", help="timed /health and /predict calls")
    add_report_arguments(parser, DEFAULT_REPORT)
    args = parse_bench_args(parser, argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    return finish(format_report(report), report, args.report)


if __name__ == "__main__":
    sys.exit(main())
