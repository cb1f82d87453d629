"""little_client.py --listen as a user runs it: WAV files, stdin, bad input, Ctrl-C, and Big going away mid-stream."""

from __future__ import annotations

import json
import queue
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
from conftest import REPO_ROOT, write_wav

from kws.audio import SAMPLE_RATE
from kws.rest.service import BigService, start_server

#: Fixed parameters, so that these tests hold whatever a calibration writes into the model.
PARAMS = ["--detect-threshold", "0.9", "--smoothing", "3", "--suppress", "1.0", "--big-min-score", "0"]
FIELDS = {"time_s", "label", "score", "decided_by"}


def detections(stdout: str) -> list[dict]:
    lines = [json.loads(line) for line in stdout.splitlines() if line.strip()]
    assert all(set(line) == FIELDS for line in lines)
    return lines


def listen(cli, source: str, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess:
    done = cli("little_client.py", "--listen", source, *args, stdin=stdin, timeout=120)
    stderr = done.stderr.decode() if isinstance(done.stderr, bytes) else done.stderr
    assert "Traceback" not in stderr, stderr
    return done


def text(value: str | bytes) -> str:
    return value.decode() if isinstance(value, bytes) else value


def test_a_stream_of_test_clips_gives_detections_at_the_right_times_and_labels(cli, sure_wav, sure_stream,
                                                                                tmp_path) -> None:
    report_path = tmp_path / "listen.json"
    done = listen(cli, str(sure_wav), "--little-only", *PARAMS, "--report", str(report_path))
    assert done.returncode == 0, done.stderr
    found = detections(done.stdout)
    events = sorted(sure_stream.events, key=lambda event: event.start)
    assert len(found) == len(events) == 16
    for event, detection in zip(events, found):
        assert detection["label"] == event.label and detection["decided_by"] == "little"
        assert event.start / SAMPLE_RATE <= detection["time_s"] <= event.end / SAMPLE_RATE + 1.0  # at most 1 s late
        assert detection["score"] >= 0.9
    report = json.loads(report_path.read_text())
    assert report["detections"] == 16 and report["decided_by"] == {"little": 16, "big": 0}
    assert report["audio_s"] == pytest.approx(sure_stream.seconds, abs=1e-3) and report["big"]["requests"] == 0
    assert report["hops"] == -(-sure_stream.samples.size // 1600) and report["real_time_factor"] > 0
    assert report["hop_latency_ms"]["p95"] >= report["hop_latency_ms"]["median"] > 0
    assert report["params"]["threshold"] == 0.9 and "with flags over it" in report["params_from"]
    assert "listened to" in done.stderr and "16 detections" in done.stderr


def test_stdin_and_a_stereo_wav_hear_what_the_wav_hears(cli, sure_wav, sure_stream, tmp_path) -> None:
    reference = detections(listen(cli, str(sure_wav), "--little-only", *PARAMS).stdout)
    piped = listen(cli, "-", "--little-only", *PARAMS, stdin=sure_stream.samples.astype("<i2").tobytes())
    assert piped.returncode == 0 and detections(text(piped.stdout)) == reference
    both = np.stack([sure_stream.samples, sure_stream.samples], axis=1).reshape(-1)
    stereo = listen(cli, str(write_wav(tmp_path / "stereo.wav", both, channels=2)), "--little-only", *PARAMS)
    assert stereo.returncode == 0 and detections(stereo.stdout) == reference
    assert "mixed down to mono" in stereo.stderr


def test_an_odd_byte_count_on_stdin_is_handled(cli, sure_wav, sure_stream) -> None:
    reference = detections(listen(cli, str(sure_wav), "--little-only", *PARAMS).stdout)
    done = listen(cli, "-", "--little-only", *PARAMS, stdin=sure_stream.samples.astype("<i2").tobytes() + b"\x01")
    assert done.returncode == 0 and detections(text(done.stdout)) == reference
    assert "odd byte count" in text(done.stderr)


def test_a_stream_that_ends_mid_window_is_handled(cli, sure_stream, tmp_path) -> None:
    report_path = tmp_path / "short.json"
    half = sure_stream.samples[: SAMPLE_RATE // 2].astype("<i2").tobytes()
    done = listen(cli, "-", "--little-only", "--report", str(report_path), stdin=half)
    assert done.returncode == 0 and "ended before a whole window" in text(done.stderr)
    report = json.loads(report_path.read_text())
    assert report["audio_s"] == 0.5 and report["padded_s"] == 0.5 and report["hops"] == 10
    empty = listen(cli, "-", "--little-only", stdin=b"")
    assert empty.returncode == 0 and "the stream was empty" in text(empty.stderr) and not text(empty.stdout)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda tmp: str(write_wav(tmp / "cd.wav", np.zeros(44_100, dtype=np.int16), rate=44_100)),
         "44100 Hz, 16-bit; the models hear 16000 Hz"),
        (lambda tmp: str(tmp / "missing.wav"), "no such file"),
        (lambda tmp: "mic", ""),
    ],
)
def test_unusable_sources_get_a_clear_message(cli, tmp_path, make, message: str) -> None:
    done = listen(cli, make(tmp_path), "--little-only")
    if make(tmp_path) == "mic" and done.returncode == 0:
        pytest.skip("this machine has a microphone")
    assert done.returncode == 2 and "error: --listen" in done.stderr and message in done.stderr
    if make(tmp_path) == "mic":
        assert "sounddevice" in done.stderr or "input device" in done.stderr or "PortAudio" in done.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--smoothing", "3"], "--smoothing, --little-only need --listen SOURCE"),
        (["--listen", "x.wav", "--threshold", "0.5"], "--threshold is for clips"),
        (["--listen", "x.wav", "--sweep"], "--sweep is offline work, done by: python calibrate.py sweep"),
        (["--listen", "x.wav", "--detect-threshold", "1.5"], "--detect-threshold: threshold must be in (0, 1]"),
        (["--listen", "x.wav", "--hop-ms", "50"], "frame step"),
    ],
)
def test_usage_errors_name_the_flag(cli, args: list[str], message: str) -> None:
    done = cli("little_client.py", *args, "--little-only")
    assert done.returncode == 2 and message in done.stderr and "Traceback" not in done.stderr


class Listening:
    """little_client.py --listen - as a live process: audio written bit by bit, detections read as they come."""

    def __init__(self, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, str(REPO_ROOT / "little_client.py"), "--listen", "-", *args],
            cwd=REPO_ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        self.lines: queue.Queue[dict] = queue.Queue()
        self._stderr: list[bytes] = []
        self._readers = [threading.Thread(target=self._read_stdout, daemon=True),
                         threading.Thread(target=lambda: self._stderr.extend(self.process.stderr), daemon=True)]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        for line in self.process.stdout:
            self.lines.put(json.loads(line))

    def feed(self, samples: np.ndarray) -> None:
        self.process.stdin.write(samples.astype("<i2").tobytes())
        self.process.stdin.flush()

    def take(self, count: int, timeout: float = 60) -> list[dict]:
        return [self.lines.get(timeout=timeout) for _ in range(count)]

    def finish(self, interrupt: bool = False) -> tuple[int, list[dict], str]:
        """End the stream (or press Ctrl-C) and wait: exit status, the detections not taken yet, stderr."""
        if interrupt:
            self.process.send_signal(signal.SIGINT)
        else:
            self.process.stdin.close()
        status = self.process.wait(timeout=60)
        for reader in self._readers:
            reader.join(timeout=10)
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return status, rest, b"".join(self._stderr).decode()


def test_big_killed_mid_stream_leaves_little_s_decisions_standing(cli, sure_wav, sure_stream, shipped_model,
                                                                  tmp_path) -> None:
    alone = detections(listen(cli, str(sure_wav), "--little-only", *PARAMS).stdout)
    halfway = len(alone) // 2
    cut = round((alone[halfway - 1]["time_s"] + alone[halfway]["time_s"]) / 2 * 10) * 1600  # on a hop
    service = BigService(shipped_model("big"))
    service.load()
    server = start_server(service, port=0, threads=2)
    report_path = tmp_path / "killed.json"
    run = Listening("--service", server.url, "--retries", "0", "--timeout", "2", "--confirm-below", "1", *PARAMS,
                    "--report", str(report_path))
    try:
        run.feed(sure_stream.samples[:cut])
        before = run.take(halfway)  # Big has answered each of them
    finally:
        server.stop()
    run.feed(sure_stream.samples[cut:])
    status, after, stderr = run.finish()
    assert status == 0 and "Traceback" not in stderr
    assert [(d["time_s"], d["decided_by"]) for d in before] == [(d["time_s"], "big") for d in alone[:halfway]]
    assert after == alone[halfway:]  # Little's decisions, exactly as without Big
    report = json.loads(report_path.read_text())
    assert report["big"]["requests"] == len(alone) and report["big"]["unavailable"] == len(alone) - halfway
    assert report["decided_by"] == {"big": halfway, "little": len(alone) - halfway}
    assert report["big"]["not_sent_while_down"] == len(alone) - halfway - 1  # tried once, then left alone for 10 s
    assert stderr.count("unreachable (") == 1  # the outage is logged once, not once per detection


def test_ctrl_c_ends_with_the_summary_and_the_report(sure_stream, tmp_path) -> None:
    report_path = tmp_path / "interrupted.json"
    run = Listening("--little-only", *PARAMS, "--report", str(report_path))
    run.feed(sure_stream.samples[: 10 * SAMPLE_RATE])
    first = run.take(1)
    status, rest, stderr = run.finish(interrupt=True)
    assert status == 0 and "Traceback" not in stderr and "(stopped early)" in stderr
    report = json.loads(report_path.read_text())
    assert report["interrupted"] and first[0]["time_s"] <= report["audio_s"] <= 10.0
    assert report["detections"] == len(first) + len(rest)
