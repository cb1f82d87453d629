"""The listener under a service manager: a live source that dies ends the run with one line and status 1 (so
systemd restarts it), SIGTERM still ends it cleanly with its summary, and logs fit the journal."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import REPO_ROOT

from kws.audio import SAMPLE_RATE

#: Fixed parameters, as in test_listen_cli.py, so these tests hold whatever a calibration writes into the model.
PARAMS = ["--little-only", "--detect-threshold", "0.9", "--smoothing", "3", "--suppress", "1.0"]
LISTENER = [sys.executable, str(REPO_ROOT / "little_client.py"), "--listen", "-", *PARAMS]


def recorder_that_dies(seconds: float) -> subprocess.Popen[bytes]:
    """A stand-in for arecord: writes ``seconds`` of raw PCM to its stdout, then is killed (SIGKILL, as when the
    sound device goes away under arecord); its audio is the same noise each time."""
    script = (
        "import os, signal, sys, numpy as np\n"
        f"pcm = (np.random.default_rng(0).standard_normal({round(seconds * SAMPLE_RATE)}) * 300).astype('<i2')\n"
        "sys.stdout.buffer.write(pcm.tobytes()); sys.stdout.buffer.flush()\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    return subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE)


def listen_to_a_dying_recorder(*flags: str) -> tuple[int, str, int]:
    """``recorder | little_client.py --listen - FLAGS`` as a unit's shell runs it: the listener's status and
    stderr, and the recorder's status."""
    recorder = recorder_that_dies(3.0)
    listener = subprocess.run([*LISTENER, *flags], stdin=recorder.stdout, capture_output=True, text=True,
                              cwd=REPO_ROOT, timeout=120)
    recorder.stdout.close()
    return listener.returncode, listener.stderr, recorder.wait(timeout=30)


def test_a_live_source_that_dies_ends_the_run_with_one_line_and_status_1() -> None:
    status, stderr, recorder_status = listen_to_a_dying_recorder("--live")
    assert recorder_status == -signal.SIGKILL, "the recorder really died"
    assert status == 1 and "Traceback" not in stderr
    ended = [line for line in stderr.splitlines() if "the audio source ended" in line]
    assert len(ended) == 1, stderr
    assert "ERROR" in ended[0] and "--listen - --live" in ended[0] and "after 3.0 s" in ended[0]
    assert "listened to 3.0 s of stdin" in stderr, "the summary still comes"


def test_without_live_the_end_of_stdin_is_the_end_of_the_stream() -> None:
    status, stderr, _ = listen_to_a_dying_recorder()
    assert status == 0 and "the audio source ended" not in stderr and "listened to 3.0 s of stdin" in stderr


def test_sigterm_ends_a_live_run_cleanly_with_its_summary() -> None:
    listener = subprocess.Popen([*LISTENER, "--live"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, cwd=REPO_ROOT)
    try:
        listener.stdin.write(bytes(4 * 2 * SAMPLE_RATE))  # 4 s of silence; the pipe stays open, as arecord's
        listener.stdin.flush()
        time.sleep(3)  # loaded and listening, waiting for more audio
        listener.send_signal(signal.SIGTERM)
        _, stderr = listener.communicate(timeout=60)
    finally:
        listener.kill()
    text = stderr.decode()
    assert listener.returncode == 0 and "Traceback" not in text
    assert "(stopped early)" in text and "stopped by SIGTERM" in text and "the audio source ended" not in text


def test_live_is_refused_for_a_file(cli) -> None:
    done = cli("little_client.py", "--listen", "recording.wav", "--live", "--little-only")
    assert done.returncode == 2 and "--live is for stdin (-) or a microphone (mic)" in done.stderr


@pytest.mark.parametrize("journal", [True, False], ids=["journal", "file"])
def test_log_lines_carry_no_time_when_stderr_is_the_journal(tmp_path, journal: bool) -> None:
    """systemd names the journal's stream in JOURNAL_STREAM (device:inode); journald stamps each line itself."""
    log_path = tmp_path / "stderr.log"
    with open(log_path, "wb") as stderr:
        status = os.fstat(stderr.fileno())
        named = f"{status.st_dev}:{status.st_ino}" if journal else f"{status.st_dev}:{status.st_ino + 1}"
        done = subprocess.run(LISTENER, input=bytes(2 * SAMPLE_RATE), stdout=subprocess.PIPE, stderr=stderr,
                              cwd=REPO_ROOT, timeout=120, env={**os.environ, "JOURNAL_STREAM": named})
    assert done.returncode == 0
    lines = log_path.read_text().splitlines()
    listening = next(line for line in lines if "listening to stdin" in line)
    assert listening.startswith("INFO kws.cli.listen_mode: ") is journal
    assert "\r" not in log_path.read_text(), "no progress bar redraws"
