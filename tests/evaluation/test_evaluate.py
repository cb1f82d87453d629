"""evaluate.py: clear usage errors, a consistent report, and no TensorFlow on its path."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import MODELS_DIR, REPO_ROOT, run_script

STEMS = [path.with_suffix("") for path in sorted(MODELS_DIR.glob("*.json"))]

#: Runs evaluate.py as a fresh clone with only the runtime requirements would:
#: ``import tensorflow`` fails, and the run must not even try it.
WITHOUT_TENSORFLOW = (
    "import runpy, sys\n"
    "sys.modules['tensorflow'] = None\n"
    "sys.argv[0] = 'evaluate.py'\n"
    "try:\n"
    "    runpy.run_path('evaluate.py', run_name='__main__')\n"
    "finally:\n"
    "    assert not any(name.startswith('tensorflow') for name in sys.modules if sys.modules[name])\n"
)


def usage_error(*argv: str) -> str:
    """evaluate.py's stderr for arguments it must refuse with exit status 2."""
    done = run_script("evaluate.py", *argv)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    return done.stderr


def test_missing_model_names_the_flag(tmp_path: Path) -> None:
    stderr = usage_error("--model", str(tmp_path / "nope"), "--data-dir", str(tmp_path))
    assert "--model" in stderr and "no model metadata" in stderr


def test_missing_data_dir_names_the_flag(tmp_path: Path) -> None:
    stderr = usage_error("--model", "models/little", "--data-dir", str(tmp_path / "absent"))
    assert "--data-dir" in stderr and "is not a folder" in stderr


def test_unknown_split_names_the_flag(tmp_path: Path) -> None:
    stderr = usage_error("--model", "models/little", "--data-dir", str(tmp_path), "--split", "tset")
    assert "--split 'tset' is neither one of train, validation, test, all nor a split file" in stderr


def test_clips_per_label_must_be_positive(tmp_path: Path) -> None:
    stderr = usage_error("--model", "m", "--data-dir", str(tmp_path), "--clips-per-label", "0")
    assert "--clips-per-label must be at least 1" in stderr


@pytest.fixture
def first_stem() -> Path:
    if not STEMS:
        pytest.skip("no models in models/")
    return STEMS[0]


def test_malformed_split_file_names_the_flag(tmp_path: Path, data_dir: Path, first_stem: Path) -> None:
    split_file = tmp_path / "split.txt"
    split_file.write_text("left/ok_nohash_0.wav\nnot a clip\n")
    stderr = usage_error("--model", str(first_stem), "--data-dir", str(data_dir), "--split", str(split_file))
    assert "--split: " in stderr and "split.txt:2:" in stderr


def test_data_dir_without_clips_names_the_flag(tmp_path: Path, first_stem: Path) -> None:
    stderr = usage_error("--model", str(first_stem), "--data-dir", str(tmp_path))
    assert "--data-dir: no <label>/<clip> files" in stderr


@pytest.mark.parametrize("stem", STEMS, ids=[stem.name for stem in STEMS])
def test_report_reproduces_training_and_needs_no_tensorflow(stem: Path, data_dir: Path, tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-c", WITHOUT_TENSORFLOW, "--model", str(stem), "--data-dir", str(data_dir),
         "--report", str(report_path), "--quiet"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, check=False,
    )
    assert completed.returncode == 0, completed.stderr
    report = json.loads(report_path.read_text())
    matrix = report["confusion_matrix"]
    assert report["samples"] == sum(map(sum, matrix))
    assert report["accuracy"] == pytest.approx(sum(matrix[i][i] for i in range(len(matrix))) / report["samples"])
    assert list(report["per_class"]) == report["labels"]
    assert Path(report["model"]["file"]).stat().st_size == report["model_bytes"]
    metadata = json.loads(stem.with_suffix(".json").read_text())
    expected_kind = "tflite_zlib" if "tflite_zlib" in metadata["files"] else "tflite"
    assert Path(report["model"]["file"]).name == metadata["files"][expected_kind], "a stem loads what the Pi ships"
    assert report["model"]["sha256"] == metadata["sha256"][expected_kind]
    assert report["latency_ms"]["preprocess"] > 0 and report["latency_ms"]["inference"] > 0
    assert report["split"] == "test" and report["interpreter"].endswith("interpreter")
    assert f"accuracy     {report['accuracy']:.4f}" in completed.stdout
    assert "confusion matrix" in completed.stdout

    # Training measured the same test speakers of this folder with TensorFlow's
    # batch pipeline; the shipped per-clip path must reproduce it. One clip may
    # flip on a near-tie, as batch and single-clip round-off differ.
    measured = metadata.get("accuracy", {}).get("test_by_data_dir", {}).get(data_dir.name)
    if measured is None:
        pytest.skip(f"{stem.name}.json has no test accuracy measured on {data_dir.name} to compare with")
    assert report["samples"] == measured["samples"]
    assert report["accuracy"] == pytest.approx(measured["accuracy"], abs=1 / measured["samples"] + 1e-4)


def test_course_split_file_and_all_split(data_dir: Path, first_stem: Path) -> None:
    course_split = REPO_ROOT.parent / "shared/data/kws_test_split.txt"
    if not course_split.is_file():
        pytest.skip("the course split files are not beside this checkout")
    done = run_script("evaluate.py", "--model", str(first_stem) + ".tflite", "--data-dir", str(data_dir),
                      "--split", str(course_split), "--quiet")
    assert done.returncode == 0, done.stderr
    assert "split        " + str(course_split) in done.stdout
    done = run_script("evaluate.py", "--model", str(first_stem), "--data-dir", str(data_dir), "--split", "all",
                      "--clips-per-label", "1", "--quiet")
    assert done.returncode == 0, done.stderr
    assert ": 8 clips" in done.stdout


def test_default_data_dir_follows_kws_data_dir(first_stem: Path, tmp_path: Path) -> None:
    """One rule for every tool: a $KWS_DATA_DIR without clips is an error naming it, never a silent fallback."""
    done = run_script("evaluate.py", "--model", str(first_stem), env={"KWS_DATA_DIR": str(tmp_path)})
    assert done.returncode == 2
    assert f"$KWS_DATA_DIR={tmp_path} holds no <label>/<clip> files" in done.stderr


def test_unusable_files_are_skipped_and_reported(tmp_path: Path, data_dir: Path, first_stem: Path) -> None:
    """A 44.1 kHz file, an empty one and a 3 s recording in a folder cost their own clips, not the run."""
    import shutil

    from conftest import add_unusable_recordings

    folder = tmp_path / "clips"
    good = [clip for clip in data_dir.glob("yes/*.wav")][:3]
    (folder / "yes").mkdir(parents=True)
    for path in good:
        shutil.copyfile(path, folder / "yes" / path.name)
    unusable = add_unusable_recordings(folder / "yes")
    report_path = tmp_path / "report.json"
    done = run_script("evaluate.py", "--model", str(first_stem), "--data-dir", str(folder), "--split", "all",
                      "--quiet", "--report", str(report_path))
    assert done.returncode == 0, done.stderr
    report = json.loads(report_path.read_text())
    assert report["samples"] == 3 and not report["interrupted"]
    reasons = {entry["clip"]: entry["reason"] for entry in report["skipped"]}
    assert set(reasons) == unusable
    assert "44100 Hz" in reasons["yes/cd_nohash_0.wav"] and "--listen" in reasons["yes/long_nohash_0.wav"]
    assert "3 files skipped" in done.stdout

    strict = run_script("evaluate.py", "--model", str(first_stem), "--data-dir", str(folder), "--split", "all",
                        "--quiet", "--strict")
    assert strict.returncode == 1 and "Traceback" not in strict.stderr and "cd_nohash_0.wav" in strict.stderr


def test_ctrl_c_reports_the_clips_classified_so_far(tmp_path: Path, data_dir: Path, first_stem: Path) -> None:
    from conftest import interrupt_script

    report_path = tmp_path / "report.json"
    done = interrupt_script("evaluate.py", "--model", str(first_stem), "--data-dir", str(data_dir), "--split", "all",
                            "--report", str(report_path), once="evaluating")  # the model is loaded, clips listed
    out, err = done.stdout, done.stderr
    assert done.returncode == 130, err
    assert "Traceback" not in err and "interrupted after" in err
    report = json.loads(report_path.read_text())
    assert report["interrupted"] and 0 < report["samples"] < 2755
    assert "(interrupted" in out and len(report["predictions"]) == report["samples"]
