"""The Pi's path on its processors (bench/check_arm.py): the comparison fails on what it must fail on,
and the whole check runs in Debian arm64 and armhf roots under qemu-user-static and passes.

The whole check needs root, debootstrap, qemu-user-static and binfmt_misc; without them it is
skipped, saying why, except in CI (``CI=true``), where a missing tool is a failure: CI must run it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import REPO_ROOT

from bench.arm_root import RootError, ensure_emulation, require_tools, targets
from bench.check_arm import RunResult, judge_clips, judge_listen

TOLERANCE = 8 / 256


def clip_report(labels: dict[str, tuple[str, float]], big_requests: int = 1, fallbacks: int = 0) -> dict[str, Any]:
    """The parts of a little_client.py report the comparison reads."""
    return {"clips": [{"clip": key, "little": label, "margin": margin} for key, (label, margin) in labels.items()],
            "big_requests": big_requests, "fallbacks": fallbacks, "big_model": {"name": "big"}}


def finished(report: dict[str, Any], stdout: str = "") -> RunResult:
    return RunResult(0, 1.0, report, stdout, "")


X86 = clip_report({"yes/a.wav": ("yes", 0.91), "no/b.wav": ("no", 0.40), "up/c.wav": ("up", 0.02)})


def test_equal_labels_and_close_margins_pass() -> None:
    arm = copy.deepcopy(X86)
    arm["clips"][1]["margin"] = 0.40 + 5 / 256
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=True)
    assert result.ok and result.label_mismatches == [] and result.max_difference == pytest.approx(5 / 256)


def test_a_differing_label_fails_even_on_a_near_tie() -> None:
    arm = copy.deepcopy(X86)
    arm["clips"][2]["little"] = "down"  # a margin of 0.02: a flip kernel rounding could explain, still a failure
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=False)
    assert not result.ok
    assert result.label_mismatches == ["up/c.wav: down on Arm, up on x86"]


def test_a_margin_beyond_the_tolerance_fails() -> None:
    arm = copy.deepcopy(X86)
    arm["clips"][0]["margin"] = 0.91 - 9 / 256
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=False)
    assert not result.ok and result.label_mismatches == [] and "margin differs" in result.problems[0]


def test_a_clip_one_side_lacks_fails() -> None:
    arm = copy.deepcopy(X86)
    del arm["clips"][1]
    assert judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=False).label_mismatches == [
        "no/b.wav"]


def test_big_falling_back_or_never_asked_fails_the_run_against_big() -> None:
    fell_back = clip_report({"yes/a.wav": ("yes", 0.91)}, fallbacks=1)
    never_asked = clip_report({"yes/a.wav": ("yes", 0.91)}, big_requests=0)
    for arm in (fell_back, never_asked):
        assert not judge_clips("clips", finished(arm), finished(arm), TOLERANCE, with_big=True).ok


def test_a_failed_run_fails() -> None:
    crashed = RunResult(139, 1.0, None, "", "Segmentation fault")
    result = judge_clips("clips", crashed, finished(X86), TOLERANCE, with_big=False)
    assert not result.ok and "exited 139" in result.problems[0]


def listen_run(lines: list[dict[str, Any]]) -> RunResult:
    return finished({"big": {"requests": 1}}, "\n".join(json.dumps(line) for line in lines))


def test_detections_must_match_in_time_label_and_who_decided() -> None:
    x86 = [{"time_s": 2.9, "label": "up", "score": 0.95, "decided_by": "little"},
           {"time_s": 8.3, "label": "stop", "score": 0.90, "decided_by": "big"}]
    close = copy.deepcopy(x86)
    close[0]["score"] = 0.95 + 3 / 256
    assert judge_listen(listen_run(close), listen_run(x86), TOLERANCE).ok
    for field, value in (("time_s", 3.0), ("label", "go"), ("decided_by", "little")):
        changed = copy.deepcopy(x86)
        changed[1][field] = value
        assert not judge_listen(listen_run(changed), listen_run(x86), TOLERANCE).ok, field
    assert not judge_listen(listen_run(x86[:1]), listen_run(x86), TOLERANCE).ok


def arm_tools_missing() -> str | None:
    """Why the whole check cannot run here, or None."""
    if os.geteuid() != 0:
        return "the Arm check needs root (debootstrap, chroot, binfmt_misc)"
    try:
        require_tools()
        for target in targets().values():
            ensure_emulation(target)
    except RootError as error:
        return str(error)
    return None


@pytest.mark.arm
def test_the_pis_path_runs_the_same_on_arm64_and_armhf(data_dir: Path, tmp_path: Path) -> None:
    """bench/check_arm.py end to end: both roots (built on first use, then cached in .arm/), three runs
    each, compared with x86; its exit status is the verdict, its report says why."""
    missing = arm_tools_missing()
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI must run the Arm check: {missing}")
        pytest.skip(missing)
    report = tmp_path / "check_arm.json"
    done = subprocess.run([sys.executable, "-m", "bench.check_arm", "--data-dir", str(data_dir),
                           "--report", str(report)], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=1800, check=False)
    assert done.returncode == 0, done.stdout + done.stderr[-4000:]
    results = json.loads(report.read_text())["results"]
    assert [result["arch"] for result in results] == ["arm64", "armhf"]
    for result in results:
        assert result["environment"]["machine"] == targets()[result["arch"]].machine
        assert [run["ok"] for run in result["runs"]] == [True, True, True]
        assert all(run["label_mismatches"] == [] for run in result["runs"])
