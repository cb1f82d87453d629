"""Run the Raspberry Pi's path on the Pi's processors, arm64 and 32-bit Arm (armhf), under emulation.

In a Debian bookworm root of each architecture (``bench.arm_root``: debootstrap,
qemu-user-static, the Pi's requirements from PyPI), with the shipped Little model:

1. ``little_client.py`` on N test clips of every label with Big unreachable
   (Little alone: each unsure clip falls back to Little's answer);
2. the same clips against ``big_service.py`` running here on x86, on 127.0.0.1;
3. ``little_client.py --listen`` on a 45 s stream of test clips, the same Big confirming every
   detection.

The same three runs on x86 (ai-edge-litert) are the reference. Every class probability
may differ by the tolerance (8/256 by default: the int8 kernels round differently on
Arm, by whole output steps of 1/256), so a margin (top-1 minus top-2) by twice that.
The check fails when a margin differs by more; when Little's label of a clip differs,
unless the clip is a near tie on both sides (both margins within twice the tolerance,
where rounding decides); when the cascade's final answer of any clip differs; when one
of Little's detections on the stream differs in time, label, score or outcome, unless a
score within the tolerance of the detection threshold explains it (it then fires a hop
later, or not at all); when Big did not answer from the Arm root; when a run fails; or
when the root did not run the expected processor and interpreter. The near ties are
listed, with both sides' numbers, but do not fail.

    python -m bench.check_arm                      # arm64 and armhf; the first run builds the roots
    python -m bench.check_arm --arch arm64 --clips-per-label 8

The table goes to stdout, the details to ``--report`` (JSON). Exit status 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.arm_root import (
    DEFAULT_CACHE,
    PROJECT,
    VENV,
    ArmTarget,
    RootError,
    ensure_tarball,
    in_root,
    remove_root,
    targets,
    unpack,
)
from bench.bench_rest import ServiceProcess
from bench.bench_stream import save_stream
from bench.check_tflite_runtime import TOLERANCE
from kws.data.clips import DatasetError, resolve_data_dir, sample_clips, select_clips
from kws.reports import format_table, write_json_report
from kws.tuning import stream_synthesis
from kws.util.logs import setup_logging
from kws.util.net import free_tcp_port

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_REPORT = REPO_ROOT / "reports" / "check_arm.json"
#: What is staged into the root (and run from the same copy on x86): the Pi's script, the package, the
#: Little model, and the tflite-runtime check's worker, which reports the interpreter and versions.
STAGED = ("little_client.py", "kws", "models/little.json", "models/little.tflite", "models/little.tflite.zlib",
          "bench/__init__.py", "bench/tflite_runtime_worker.py")
STREAM = "stream.wav"
#: Generous: a run took 10-25 s under emulation on the build machine.
RUN_TIMEOUT_S = 1200

log = logging.getLogger("check_arm")


@dataclass
class RunResult:
    """One little_client.py run, on one side."""

    status: int
    seconds: float
    report: dict[str, Any] | None
    stdout: str
    stderr_tail: str


@dataclass
class Comparison:
    """An Arm run against its x86 twin."""

    run: str
    ok: bool
    items: int
    label_mismatches: list[str] = field(default_factory=list)
    """Differences that fail the check."""
    near_ties: list[str] = field(default_factory=list)
    """Differences a near tie explains (a margin or score within the tolerance of a decision): listed, not failing."""
    max_difference: float | None = None
    """The largest margin (clips) or score (detections) difference."""
    problems: list[str] = field(default_factory=list)
    big_asked: tuple[int, int] | None = None
    """(Arm, x86): how many clips or detections went to Big."""
    arm_seconds: float = 0.0


def compare_clip_reports(arm: dict[str, Any], x86: dict[str, Any], tolerance: float,
                         cascade: bool) -> tuple[list[str], list[str], float]:
    """Differences that fail the check, near-tie flips, and the largest margin difference.

    Every class probability may move by ``tolerance`` (int8 kernels round differently on Arm), so a
    margin by twice that. A clip's Little label may differ only where both sides' margins are within
    that, a near tie which rounding decides: such flips are listed, not failures. Any other differing
    label, a clip only one side has, and (``cascade``) any differing final answer of the cascade fail.
    """
    ours = {clip["clip"]: clip for clip in arm["clips"]}
    theirs = {clip["clip"]: clip for clip in x86["clips"]}
    mismatches = [f"{key}: run on one side only" for key in sorted(set(ours) ^ set(theirs))]
    tie_flips: list[str] = []
    difference = 0.0
    for key in sorted(set(ours) & set(theirs)):
        a, b = ours[key], theirs[key]
        if a["little"] != b["little"]:
            near_tie = max(a["margin"], b["margin"]) <= 2 * tolerance
            (tie_flips if near_tie else mismatches).append(
                f"{key}: Little says {a['little']} (margin {a['margin']:.4f}) on Arm, "
                f"{b['little']} (margin {b['margin']:.4f}) on x86")
        if cascade and (a["big"] or a["little"]) != (b["big"] or b["little"]):
            mismatches.append(f"{key}: the cascade answers {a['big'] or a['little']} on Arm, "
                              f"{b['big'] or b['little']} on x86")
        difference = max(difference, abs(a["margin"] - b["margin"]))
    return mismatches, tie_flips, difference


def outcome(event: dict[str, Any]) -> str:
    """What became of one of Little's detections: the label reported and who decided, or Big's rejection."""
    reported = event["reported"]
    return f"{reported['label']} by {reported['decided_by']}" if reported else f"not reported ({event['big_outcome']})"


def compare_events(arm: list[dict[str, Any]], x86: list[dict[str, Any]], params: dict[str, Any],
                   tolerance: float) -> tuple[list[str], list[str], float]:
    """Little's detections on a stream (the report's ``events``) compared in order, as for clips.

    Scores may differ by ``tolerance``. So where one side's score is within it of the detection
    threshold, the smoothed score may cross it a hop later on the other side, or not at all, and
    where it is within it of ``confirm_below`` Big may be asked on one side only: such differences
    are listed, not failures. Any other difference in time, label, score or outcome fails.
    """
    hop, threshold, confirm = params["hop_s"], params["threshold"], params["confirm_below"]

    def near_threshold(score: float) -> bool:
        return score <= threshold + tolerance

    def describe(event: dict[str, Any]) -> str:
        return f"{event['little_label']} at {event['time_s']} s (score {event['little_score']:.4f}, {outcome(event)})"

    failures: list[str] = []
    explained: list[str] = []
    difference = 0.0
    i = j = 0
    while i < len(arm) or j < len(x86):
        a = arm[i] if i < len(arm) else None
        b = x86[j] if j < len(x86) else None
        if a is not None and b is not None and a["little_label"] == b["little_label"] \
                and abs(a["time_s"] - b["time_s"]) <= hop + 1e-6:
            i, j = i + 1, j + 1
            pair = f"{describe(a)} on Arm, {describe(b)} on x86"
            near = near_threshold(min(a["little_score"], b["little_score"]))
            if a["time_s"] != b["time_s"]:
                (explained if near else failures).append(pair)
                continue
            difference = max(difference, abs(a["little_score"] - b["little_score"]))
            near_confirm = any(abs(e["little_score"] - confirm) <= tolerance for e in (a, b))
            if outcome(a) != outcome(b) or a["asked_big"] != b["asked_big"]:
                (explained if near_confirm else failures).append(pair)
            continue
        # A detection on one side only: the earlier of the two, or whichever is left.
        if b is None or (a is not None and a["time_s"] <= b["time_s"]):
            i, lone, side = i + 1, a, "Arm"
        else:
            j, lone, side = j + 1, b, "x86"
        assert lone is not None
        line = f"{describe(lone)} on {side} only"
        (explained if near_threshold(lone["little_score"]) else failures).append(line)
    return failures, explained, difference


def failed_runs(arm: RunResult, x86: RunResult) -> list[str]:
    """A problem for each side whose run failed (its status and the end of its log); then nothing is compared."""
    return [f"{side} run exited {run.status}: {run.stderr_tail}"
            for side, run in (("Arm", arm), ("x86", x86)) if run.status != 0 or run.report is None]


def judge_clips(name: str, arm: RunResult, x86: RunResult, tolerance: float, with_big: bool) -> Comparison:
    """A clip-mode run: both ran, Little's labels agree but on near ties, margins within twice ``tolerance``;
    with Big, Big answered every request and the cascade's answers agree (:func:`compare_clip_reports`)."""
    result = Comparison(name, False, 0, problems=failed_runs(arm, x86), arm_seconds=arm.seconds)
    if result.problems:
        return result
    assert arm.report is not None and x86.report is not None
    result.items = len(arm.report["clips"])
    result.label_mismatches, result.near_ties, result.max_difference = compare_clip_reports(
        arm.report, x86.report, tolerance, cascade=with_big)
    result.big_asked = (arm.report["big_requests"], x86.report["big_requests"])
    if result.max_difference > 2 * tolerance:
        result.problems.append(f"a margin differs by {result.max_difference:.4f} > {2 * tolerance:.4f}")
    if with_big:
        if arm.report["big_model"] is None or arm.report["big_requests"] == 0:
            result.problems.append("Big was never asked from the Arm root")
        if arm.report["fallbacks"]:
            result.problems.append(f"{arm.report['fallbacks']} Big requests from the Arm root fell back")
    result.ok = not result.problems and not result.label_mismatches
    return result


def judge_listen(arm: RunResult, x86: RunResult, tolerance: float) -> Comparison:
    """The stream: both ran, and Little's detections and what became of them agree (:func:`compare_events`)."""
    result = Comparison("listen, Big confirms", False, 0, problems=failed_runs(arm, x86), arm_seconds=arm.seconds)
    if result.problems:
        return result
    assert arm.report is not None and x86.report is not None
    result.items = len(arm.report["events"])
    result.label_mismatches, result.near_ties, result.max_difference = compare_events(
        arm.report["events"], x86.report["events"], arm.report["params"], tolerance)
    result.big_asked = (arm.report["big"]["requests"], x86.report["big"]["requests"])
    if not detections(arm.stdout):
        result.problems.append("no detection on the Arm root")
    if arm.report["big"]["requests"] == 0:
        result.problems.append("Big was never asked from the Arm root")
    if result.max_difference > tolerance:
        result.problems.append(f"a detection's score differs by {result.max_difference:.4f} > {tolerance:.4f}")
    result.ok = not result.problems and not result.label_mismatches
    return result


def detections(stdout: str) -> list[dict[str, Any]]:
    """The JSON lines ``--listen`` prints, one per detection."""
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


def stage(target_dir: Path, data_dir: Path, clips_per_label: int) -> list[str]:
    """Copy the Pi's files, the clips (``clips/<label>/``) and a short stream into ``target_dir``."""
    for name in STAGED:
        source, destination = REPO_ROOT / name, target_dir / name
        destination.parent.mkdir(parents=True, exist_ok=True)
        if source.is_dir():
            shutil.copytree(source, destination, ignore=shutil.ignore_patterns("__pycache__", "training"))
        else:
            shutil.copyfile(source, destination)
    clips = sample_clips(select_clips(data_dir, "test"), clips_per_label)
    for clip in clips:
        destination = target_dir / "clips" / clip.key
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip.path, destination)
    # Two clips of each keyword, with pauses over faint noise, then 3 s of noise alone: about 45 s.
    material = stream_synthesis.Material(keywords=sample_clips(clips, 2), others=[], noises=[])
    save_stream(stream_synthesis.build_stream(material, level_dbfs=-60.0, noise_s=3.0, seed=5),
                (target_dir / STREAM).with_suffix(""))
    return [clip.key for clip in clips]


@dataclass(frozen=True)
class ClientRun:
    """One little_client.py run, made on both sides with the same arguments."""

    name: str
    arguments: tuple[str, ...]
    kind: str
    """``alone``, ``big`` or ``listen``: how the two sides are compared."""


def client_runs(big_url: str) -> list[ClientRun]:
    """The three runs; Little alone points at a free port nobody listens on, so Big is unreachable."""
    closed_url = f"http://127.0.0.1:{free_tcp_port()}"
    return [
        ClientRun("clips, Little alone (Big unreachable)", ("clips", "--no-progress", "--service", closed_url),
                  "alone"),
        ClientRun("clips, against Big on x86", ("clips", "--no-progress", "--service", big_url), "big"),
        # Big confirms every detection (not only those under the shipped 0.92), so each one crosses the wire.
        ClientRun("listen, Big confirms", ("--listen", STREAM, "--service", big_url, "--confirm-below", "1"),
                  "listen"),
    ]


def run_arm(root: Path, arguments: Sequence[str], report: str) -> RunResult:
    """little_client.py inside the Arm root, from the staged copy."""
    command = ["env", "-C", PROJECT, f"{VENV}/bin/python", "little_client.py", *arguments, "--report", report]
    started = time.perf_counter()
    done = in_root(root, command, timeout=RUN_TIMEOUT_S, capture_output=True, text=True)
    seconds = time.perf_counter() - started
    report_path = root / PROJECT.lstrip("/") / report
    loaded = json.loads(report_path.read_text()) if done.returncode == 0 and report_path.is_file() else None
    return RunResult(done.returncode, seconds, loaded, done.stdout, done.stderr[-2000:])


def run_x86(staged: Path, arguments: Sequence[str], report: str) -> RunResult:
    """The same run here, with this environment's Python (ai-edge-litert), from an identical copy."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "little_client.py", *arguments, "--report", report], cwd=staged,
                          capture_output=True, text=True, timeout=RUN_TIMEOUT_S, check=False)
    seconds = time.perf_counter() - started
    report_path = staged / report
    loaded = json.loads(report_path.read_text()) if done.returncode == 0 and report_path.is_file() else None
    return RunResult(done.returncode, seconds, loaded, done.stdout, done.stderr[-2000:])


def probe(root: Path, target: ArmTarget, clip: str) -> dict[str, Any]:
    """What the root runs: its machine, Python, numpy, and the interpreter that loaded the Little model."""
    command = ["env", "-C", PROJECT, f"{VENV}/bin/python", "-c",
               "import platform; print(platform.machine())"]
    machine = in_root(root, command, timeout=300, capture_output=True, text=True).stdout.strip()
    worker = ["env", "-C", PROJECT, f"{VENV}/bin/python", "-m", "bench.tflite_runtime_worker",
              "--interpreter", target.interpreter, "--model-file", "models/little.tflite.zlib", "--clip", clip]
    done = in_root(root, worker, timeout=600, capture_output=True, text=True)
    if done.returncode != 0:
        return {"machine": machine, "error": done.stderr[-2000:]}
    output = json.loads(done.stdout)
    result = output.pop("results")[0]
    return {"machine": machine, **output, "interpreter": result.get("interpreter"), "error": result.get("error")}


def judge(run: ClientRun, arm: RunResult, x86: RunResult, tolerance: float) -> Comparison:
    if run.kind == "listen":
        return judge_listen(arm, x86, tolerance)
    return judge_clips(run.name, arm, x86, tolerance, with_big=run.kind == "big")


def check_target(target: ArmTarget, tarball: Path, staged: Path, clip_keys: list[str], runs: Sequence[ClientRun],
                 references: Sequence[RunResult], tolerance: float, work_dir: Path | None) -> dict[str, Any]:
    """Unpack a fresh root, stage the files, make the runs there and compare them with x86's ``references``."""
    with tempfile.TemporaryDirectory(prefix=f"kws-{target.arch}-run-", dir=work_dir) as scratch:
        root = Path(scratch) / "root"
        try:
            started = time.perf_counter()
            unpack(tarball, root)
            shutil.copytree(staged, root / PROJECT.lstrip("/"), ignore=shutil.ignore_patterns("reports"))
            log.info("%s root unpacked and staged in %.1f s", target.arch, time.perf_counter() - started)
            environment = probe(root, target, f"clips/{clip_keys[0]}")
            log.info("%s root: %s", target.arch, environment)
            comparisons = []
            for index, (run, reference) in enumerate(zip(runs, references)):
                log.info("%s: %s", target.arch, run.name)
                arm = run_arm(root, run.arguments, f"reports/run{index}.json")
                comparisons.append(judge(run, arm, reference, tolerance))
        finally:
            remove_root(root)
    problems = []
    if environment.get("machine") != target.machine:
        problems.append(f"the root runs {environment.get('machine')!r}, not {target.machine}")
    if environment.get("interpreter") != f"{target.interpreter}.interpreter":
        problems.append(f"the Little model loaded with {environment.get('interpreter')!r}, "
                        f"not {target.interpreter}: {environment.get('error')}")
    ok = not problems and all(comparison.ok for comparison in comparisons)
    return {"arch": target.arch, "ok": ok, "problems": problems, "environment": environment,
            "runs": [asdict(comparison) for comparison in comparisons]}


def format_results(results: Sequence[dict[str, Any]]) -> str:
    rows = []
    for result in results:
        for run in result["runs"]:
            asked = "" if run["big_asked"] is None else f"{run['big_asked'][0]} / {run['big_asked'][1]}"
            rows.append([result["arch"], run["run"], "ok" if run["ok"] else "FAIL", run["items"],
                         len(run["label_mismatches"]), len(run["near_ties"]), run["max_difference"], asked,
                         f"{run['arm_seconds']:.1f}"])
        if result["problems"]:
            rows.append([result["arch"], "environment", "FAIL", "", "", "", "", "", ""])
    return format_table(["arch", "run", "status", "clips/detections", "differing", "near ties",
                         "max |d margin/score|", "Big asked Arm / x86", "Arm s"], rows)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--arch", action="append", choices=sorted(targets()), metavar="ARCH",
                        help="arm64 or armhf (repeatable; default: both)")
    parser.add_argument("--data-dir", type=Path, help="Speech Commands folder (default: $KWS_DATA_DIR or ../shared)")
    parser.add_argument("--clips-per-label", type=int, default=24, metavar="N",
                        help="test clips of each label (default: %(default)s)")
    parser.add_argument("--tolerance", type=float, default=TOLERANCE, metavar="T",
                        help="largest allowed difference of a class probability or detection score; margins may "
                        "differ by twice it (default: 8/256, %(default).4f)")
    parser.add_argument("--mirror", metavar="URL", help="Debian mirror (default: the one in /etc/apt's sources)")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE, metavar="DIR",
                        help="where the built roots are kept as tarballs (default: %(default)s)")
    parser.add_argument("--work-dir", type=Path, metavar="DIR", help="where roots are unpacked (default: $TMPDIR)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild the roots even when cached")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, metavar="FILE",
                        help="JSON report (default: %(default)s)")
    args = parser.parse_args(argv)
    setup_logging(logging.INFO)
    if platform.machine() != "x86_64":
        parser.exit(1, "error: the reference side of this check is x86-64; run it on an x86-64 machine\n")
    try:
        data_dir = resolve_data_dir(args.data_dir)
    except DatasetError as error:
        parser.error(f"--data-dir: {error}")
    chosen = [targets()[arch] for arch in (args.arch or ("arm64", "armhf"))]
    started = time.perf_counter()
    results = []
    try:
        with tempfile.TemporaryDirectory(prefix="kws-arm-stage-", dir=args.work_dir) as scratch:
            staged = Path(scratch)
            clip_keys = stage(staged, data_dir, args.clips_per_label)
            with ServiceProcess(REPO_ROOT / "models" / "big", threads=2) as big:
                runs = client_runs(big.url)
                references = [run_x86(staged, run.arguments, f"reports/run{index}.json")
                              for index, run in enumerate(runs)]
                # Roots that must be built are built side by side: each is one emulated process most of the time.
                with ThreadPoolExecutor(max_workers=len(chosen)) as pool:
                    tarballs = list(pool.map(
                        lambda target: ensure_tarball(target, args.cache_dir, args.mirror, args.work_dir,
                                                      args.rebuild), chosen))
                for target, tarball in zip(chosen, tarballs):
                    results.append(check_target(target, tarball, staged, clip_keys, runs, references,
                                                args.tolerance, args.work_dir))
    except (RootError, subprocess.TimeoutExpired) as error:
        parser.exit(1, f"error: {error}\n")
    print(f"the Pi's path on Arm under qemu-user-static against x86-64 (ai-edge-litert "
          f"{metadata.version('ai-edge-litert')}), {len(clip_keys)} test clips, tolerance {args.tolerance:.4f}; "
          f"{time.perf_counter() - started:.0f} s in all")
    print(format_results(results))
    for result in results:
        for run in result["runs"]:
            for line in run["problems"] + run["label_mismatches"][:10]:
                print(f"{result['arch']}: FAIL: {line}")
            for line in run["near_ties"]:
                print(f"{result['arch']}: near tie: {line}")
        for line in result["problems"]:
            print(f"{result['arch']}: FAIL: {line}")
    write_json_report(args.report, {
        "tolerance": args.tolerance, "clips": clip_keys, "seconds": round(time.perf_counter() - started, 1),
        "x86": {"python": platform.python_version(), "numpy": metadata.version("numpy"),
                "ai_edge_litert": metadata.version("ai-edge-litert")},
        "results": results,
    })
    log.info("report written to %s", args.report)
    return 0 if results and all(result["ok"] for result in results) else 1


if __name__ == "__main__":
    sys.exit(main())
