"""The Little client against broken Big services: run time, peak memory and the fallbacks by reason.

``little_client.py`` runs as a user runs it, once with Big never asked
(``--threshold 0``: the Little-only time) and once against each broken Big of
:mod:`bench.broken_big` with ``--threshold 1`` (every clip is sent to Big, the
worst case). For each: the process's wall time and its ratio to Little-only,
its peak resident memory (``ru_maxrss`` of the finished child), whether every
answer is Little's, and the fallbacks by reason. The target: every run finishes
on Little's answers, under 100 MB, in at most twice the Little-only time plus a
few seconds.

    python -m bench.bench_broken_big --data-dir ../shared/data/speech_commands
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.broken_big import BrokenBig, all_broken
from bench.common import add_report_arguments, finish, parse_bench_args
from kws.reports import format_table

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPORT = Path("reports/bench_broken_big.json")

log = logging.getLogger("bench_broken_big")


def run_client(service: str, args: argparse.Namespace, threshold: float) -> dict[str, Any]:
    """One little_client.py process: its report, wall time and peak memory."""
    with tempfile.TemporaryDirectory() as folder:
        report_path = Path(folder) / "report.json"
        command = [sys.executable, str(REPO_ROOT / "little_client.py"), "--service", service,
                   "--data-dir", str(args.data_dir), "--split", args.split, "--threshold", str(threshold),
                   "--no-progress", "--report", str(report_path)]
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=REPO_ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        stderr = process.stderr.read()
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - started
        if process.returncode != 0:
            raise RuntimeError(f"little_client.py exited with {process.returncode}: {stderr.decode()[-1000:]}")
        report = json.loads(report_path.read_text())
    return {
        "seconds": round(seconds, 2),
        "max_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "samples": report["samples"],
        "big_requests": report["big_requests"],
        "fallbacks": report["fallbacks"],
        "fallback_reasons": report.get("fallback_reasons", {}),
        "answers_are_little": all(clip["big"] is None for clip in report["clips"]),
        "accuracy": report["accuracy"],
        "little_accuracy": report["little_accuracy"],
        "traceback": b"Traceback" in stderr,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    with BrokenBig("good") as good:
        little_only = run_client(good.url, args, threshold=0.0)
    rows = {}
    for behaviour in args.behaviours:
        with BrokenBig(behaviour) as broken:
            result = run_client(broken.url, args, threshold=1.0)
            result["big_asked"] = broken.predict_requests
        result["ratio_to_little_only"] = round(result["seconds"] / little_only["seconds"], 2)
        result["within_target"] = (result["answers_are_little"] and result["max_rss_mb"] < 100
                                   and result["seconds"] <= 2 * little_only["seconds"] + args.allowance_s)
        rows[behaviour] = result
        log.info("%s: %.2f s, %.1f MB, %s", behaviour, result["seconds"], result["max_rss_mb"],
                 result["fallback_reasons"])
    return {
        "benchmark": "bench_broken_big",
        "machine": {"python": platform.python_version(), "platform": platform.platform()},
        "split": args.split,
        "client_defaults": "--timeout 1 --retries 2 --breaker-failures 3 --breaker-cooldown 30",
        "allowance_s": args.allowance_s,
        "little_only": little_only,
        "broken": rows,
    }


def format_report(report: dict[str, Any]) -> str:
    base = report["little_only"]
    rows = [["Little only (--threshold 0)", base["seconds"], 1.0, base["max_rss_mb"], 0, "-", "-"]]
    for behaviour, result in report["broken"].items():
        reasons = ", ".join(f"{reason} {count}" for reason, count in result["fallback_reasons"].items())
        rows.append([behaviour, result["seconds"], result["ratio_to_little_only"], result["max_rss_mb"],
                     result["big_asked"], reasons, "yes" if result["within_target"] else "NO"])
    return "\n".join([
        f"{base['samples']} clips of the {report['split']} split; every clip sent to each broken Big "
        f"({report['client_defaults']})",
        format_table(["Big", "seconds", "x Little", "peak MB", "asked", "fallbacks by reason",
                      f"<= 2x + {report['allowance_s']:g} s, < 100 MB"], rows, float_digits=2),
    ])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--split", default="test", help="split to run (default: %(default)s)")
    parser.add_argument("--behaviours", nargs="+", default=all_broken(), choices=all_broken(), metavar="B",
                        help="broken Bigs to try (default: all)")
    parser.add_argument("--allowance-s", type=float, default=4.0, metavar="S",
                        help="the 'few seconds' of the target (default: %(default)s)")
    add_report_arguments(parser, DEFAULT_REPORT)
    args = parse_bench_args(parser, argv)
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    return finish(format_report(report), report, args.report)


if __name__ == "__main__":
    sys.exit(main())
