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
    """The parts of a little_client.py report the comparison reads; Big answers "go" for margins under 0.4."""
    clips = [{"clip": key, "little": label, "margin": margin, "big": "go" if margin < 0.4 else None}
             for key, (label, margin) in labels.items()]
    return {"clips": clips, "big_requests": big_requests, "fallbacks": fallbacks, "big_model": {"name": "big"}}


def finished(report: dict[str, Any], stdout: str = "") -> RunResult:
    return RunResult(0, 1.0, report, stdout, "")


X86 = clip_report({"yes/a.wav": ("yes", 0.91), "no/b.wav": ("no", 0.40), "up/c.wav": ("up", 0.02)})


def test_equal_labels_and_close_margins_pass() -> None:
    arm = copy.deepcopy(X86)
    arm["clips"][1]["margin"] = 0.40 + 12 / 256  # measured: up to 12/256 on arm64
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=True)
    assert result.ok and result.label_mismatches == [] and result.max_difference == pytest.approx(12 / 256)


def test_a_differing_label_fails() -> None:
    arm = copy.deepcopy(X86)
    arm["clips"][1]["little"] = "down"  # a margin of 0.40 on both sides: no rounding explains a flip
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=False)
    assert not result.ok
    assert result.label_mismatches == ["no/b.wav: Little says down (margin 0.4000) on Arm, no (margin 0.4000) on x86"]


def test_a_flip_on_a_near_tie_is_listed_not_failed_unless_the_cascade_answers_differ() -> None:
    arm = copy.deepcopy(X86)
    arm["clips"][2].update(little="down", margin=0.05)  # both margins within 2 x 8/256: rounding decides
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=True)
    assert result.ok and result.label_mismatches == [] and len(result.near_ties) == 1
    arm["clips"][2]["big"] = "left"
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=True)
    assert not result.ok and result.label_mismatches == ["up/c.wav: the cascade answers left on Arm, go on x86"]


def test_a_margin_beyond_the_tolerance_fails() -> None:
    arm = copy.deepcopy(X86)
    arm["clips"][0]["margin"] = 0.91 - 17 / 256  # a probability moved by more than 8/256
    result = judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=False)
    assert not result.ok and result.label_mismatches == [] and "margin differs" in result.problems[0]


def test_a_clip_one_side_lacks_fails() -> None:
    arm = copy.deepcopy(X86)
    del arm["clips"][1]
    assert judge_clips("clips", finished(arm), finished(X86), TOLERANCE, with_big=False).label_mismatches == [
        "no/b.wav: run on one side only"]


def test_big_falling_back_or_never_asked_fails_the_run_against_big() -> None:
    fell_back = clip_report({"yes/a.wav": ("yes", 0.91)}, fallbacks=1)
    never_asked = clip_report({"yes/a.wav": ("yes", 0.91)}, big_requests=0)
    for arm in (fell_back, never_asked):
        assert not judge_clips("clips", finished(arm), finished(arm), TOLERANCE, with_big=True).ok


def test_a_failed_run_fails() -> None:
    crashed = RunResult(139, 1.0, None, "", "Segmentation fault")
    result = judge_clips("clips", crashed, finished(X86), TOLERANCE, with_big=False)
    assert not result.ok and "exited 139" in result.problems[0]


PARAMS = {"hop_s": 0.1, "threshold": 0.91, "confirm_below": 0.92}


def event(time_s: float, label: str, score: float, by: str | None = "big") -> dict[str, Any]:
    """One of Little's detections in a --listen report; ``by`` None: Big rejected it."""
    reported = None if by is None else {"time_s": time_s, "label": label, "score": score, "decided_by": by}
    return {"time_s": time_s, "little_label": label, "little_score": score, "asked_big": score < 0.92,
            "big_outcome": "rejected" if by is None else "confirmed", "reported": reported}


def listen_run(events: list[dict[str, Any]]) -> RunResult:
    report = {"events": events, "params": PARAMS, "big": {"requests": len(events)}}
    stdout = "\n".join(json.dumps(e["reported"]) for e in events if e["reported"])
    return finished(report, stdout)


X86_EVENTS = [event(2.9, "up", 0.95, "little"), event(8.3, "stop", 0.94, "big"), event(12.0, "go", 0.97)]


def judged(arm_events: list[dict[str, Any]]):
    return judge_listen(listen_run(arm_events), listen_run(X86_EVENTS), TOLERANCE)


def test_the_same_detections_with_close_scores_pass() -> None:
    arm = copy.deepcopy(X86_EVENTS)
    arm[0]["little_score"] = 0.95 + 3 / 256
    result = judged(arm)
    assert result.ok and result.max_difference == pytest.approx(3 / 256) and result.near_ties == []


@pytest.mark.parametrize("change", [
    {"little_label": "left"},          # another word
    {"time_s": 12.1},                  # a hop later, though far above the detection threshold
    {"reported": None, "big_outcome": "rejected"},  # Big rejected it on one side only
    {"little_score": 0.97 - 9 / 256},  # a score beyond the tolerance
])
def test_a_differing_detection_fails(change: dict[str, Any]) -> None:
    arm = copy.deepcopy(X86_EVENTS)
    arm[2].update(change)
    assert not judged(arm).ok, change


def test_a_detection_on_one_side_only_fails_unless_it_barely_crossed_the_threshold() -> None:
    assert not judged(X86_EVENTS[:2]).ok
    barely = [*copy.deepcopy(X86_EVENTS), event(20.0, "left", 0.91 + 2 / 256, None)]
    result = judged(barely)
    assert result.ok and len(result.near_ties) == 1 and "on Arm only" in result.near_ties[0]


def test_a_detection_a_hop_later_is_a_near_tie_when_the_score_is_at_the_threshold() -> None:
    arm = copy.deepcopy(X86_EVENTS)
    arm[1].update(time_s=8.4, little_score=0.96)  # x86 fired just over the threshold, Arm a hop later
    x86 = copy.deepcopy(X86_EVENTS)
    x86[1]["little_score"] = 0.915
    result = judge_listen(listen_run(arm), listen_run(x86), TOLERANCE)
    assert result.ok and len(result.near_ties) == 1


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
        assert all(run["max_difference"] <= 2 * TOLERANCE for run in result["runs"])
