"""kws.data and dataset.py: speaker-disjoint splits, split files, WAV decoding, download and extraction.

A leaked speaker inflates every accuracy figure we publish, and a WAV decoded
wrongly is a model fed garbage on the Pi, so these behaviours are pinned here.
"""

from __future__ import annotations

import io
import subprocess
import sys
import wave
import zipfile
from pathlib import Path

import numpy as np
import pytest

from kws.audio import AudioError, decode_wav, read_clip
from kws.data.clips import DEFAULT_LABELS, Clip, DatasetError, list_clips, sample_clips, select_clips, speaker_of
from kws.data.download import download_full, extract_archive
from kws.data.splits import partition_of, read_split_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def wav_bytes(samples: np.ndarray, rate: int = 16_000, channels: int = 1, width: int = 2) -> bytes:
    """A WAV file's bytes; ``samples`` are written as raw frames of the given width."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(channels)
        wav.setsampwidth(width)
        wav.setframerate(rate)
        wav.writeframes(np.ascontiguousarray(samples).tobytes())
    return buffer.getvalue()


def make_dataset(root: Path, names_by_label: dict[str, list[str]]) -> Path:
    """A tiny dataset of 0.1 s tone clips in the Speech Commands layout."""
    tone = (1000 * np.sin(np.arange(1_600) / 5.0)).astype("<i2")
    for label, names in names_by_label.items():
        (root / label).mkdir(parents=True, exist_ok=True)
        for name in names:
            (root / label / name).write_bytes(wav_bytes(tone))
    return root


# --------------------------------------------------------------------------- #
# Splits
# --------------------------------------------------------------------------- #


def test_splits_are_speaker_disjoint_and_cover_every_clip(data_dir: Path) -> None:
    splits = {name: select_clips(data_dir, name) for name in ("train", "validation", "test")}
    speakers = {name: {clip.speaker for clip in clips} for name, clips in splits.items()}
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["train"] & speakers["test"]
    assert not speakers["validation"] & speakers["test"]
    every_clip = select_clips(data_dir, "all")
    assert sorted(clip.path for clips in splits.values() for clip in clips) == sorted(c.path for c in every_clip)
    assert every_clip == list_clips(data_dir)


def test_split_sizes_are_roughly_80_10_10_of_speakers(data_dir: Path) -> None:
    speakers = {clip.speaker for clip in list_clips(data_dir)}
    counts = {name: sum(partition_of(s) == name for s in speakers) for name in ("train", "validation", "test")}
    assert counts["train"] / len(speakers) == pytest.approx(0.8, abs=0.08)
    assert counts["validation"] / len(speakers) == pytest.approx(0.1, abs=0.05)
    assert counts["test"] / len(speakers) == pytest.approx(0.1, abs=0.05)


def test_split_is_deterministic(data_dir: Path) -> None:
    assert select_clips(data_dir, "test") == select_clips(data_dir, "test")
    # Pinned: the models' published test accuracy is on these speakers. If the
    # hashing or its salt changes, every shipped model's figures become stale.
    assert partition_of("022cd682") == "validation"
    assert partition_of("03401e93") == "train"
    assert partition_of("1538beb7") == "test"


def test_speaker_is_the_part_before_nohash() -> None:
    assert speaker_of("left/8012c69d_nohash_3.wav") == "8012c69d"
    assert Clip(Path("/x/left/8012c69d_nohash_3.wav"), "left").key == "left/8012c69d_nohash_3.wav"


def test_split_file_accepts_short_and_course_forms(tmp_path: Path) -> None:
    split_file = tmp_path / "split.txt"
    split_file.write_text(
        "./data/mini_speech_commands/left/8012c69d_nohash_3.wav\n"
        "\n"
        "stop/0ea0e2f4_nohash_1.wav\n"
        "/elsewhere/go/0ea0e2f4_nohash_1.wav\n"
    )
    assert read_split_file(split_file) == {
        "left/8012c69d_nohash_3", "stop/0ea0e2f4_nohash_1", "go/0ea0e2f4_nohash_1",
    }


def test_split_file_selects_exactly_the_listed_clips(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {
        "left": ["aaaa0001_nohash_0.wav", "bbbb0002_nohash_0.wav"],
        "stop": ["aaaa0001_nohash_0.wav", "cccc0003_nohash_1.wav"],
    })
    split_file = tmp_path / "split.txt"
    split_file.write_text(
        "./data/mini_speech_commands/left/bbbb0002_nohash_0.wav\nstop/cccc0003_nohash_1.wav\nup/absent_nohash_0.wav\n"
    )
    chosen = select_clips(root, str(split_file), labels=("left", "stop"))
    assert [clip.key for clip in chosen] == ["left/bbbb0002_nohash_0.wav", "stop/cccc0003_nohash_1.wav"]


def test_course_split_file_reads_8000_distinct_clips() -> None:
    course_files = sorted((REPO_ROOT.parent / "shared/data").glob("kws_*_split.txt"))
    if not course_files:
        pytest.skip("the course split files are not beside this checkout")
    keys = [read_split_file(path) for path in course_files]
    assert sum(map(len, keys)) == 8_000
    assert len(set().union(*keys)) == 8_000, "the course's train, validation and test lists overlap"


def test_split_file_with_a_bad_line_names_the_line(tmp_path: Path) -> None:
    split_file = tmp_path / "split.txt"
    split_file.write_text("left/a_nohash_0.wav\nnot-a-clip\n")
    with pytest.raises(DatasetError, match=r"split\.txt:2:"):
        read_split_file(split_file)


def test_unknown_split_is_a_clear_error(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"left": ["aaaa0001_nohash_0.wav"]})
    with pytest.raises(DatasetError, match="--split 'tset' is neither"):
        select_clips(root, "tset", labels=("left",))


def test_split_file_matching_nothing_is_an_error(tmp_path: Path) -> None:
    root = make_dataset(tmp_path / "data", {"left": ["aaaa0001_nohash_0.wav"]})
    split_file = tmp_path / "split.txt"
    split_file.write_text("left/zzzz9999_nohash_0.wav\n")
    with pytest.raises(DatasetError, match="none of the 1 clips"):
        select_clips(root, str(split_file), labels=("left",))


def test_missing_data_dir_points_at_the_flag(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="--data-dir"):
        list_clips(tmp_path / "nowhere")


def test_data_dir_without_clips_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "left").mkdir()
    with pytest.raises(DatasetError, match="no <label>/<clip> files"):
        list_clips(tmp_path)


def test_sample_clips_spreads_over_each_label(tmp_path: Path) -> None:
    root = make_dataset(tmp_path, {
        "left": [f"{i:08x}_nohash_0.wav" for i in range(10)], "stop": ["aaaa0001_nohash_0.wav"],
    })
    chosen = sample_clips(list_clips(root, ("left", "stop")), per_label=3)
    assert [clip.path.name for clip in chosen] == [
        "00000000_nohash_0.wav", "00000003_nohash_0.wav", "00000006_nohash_0.wav", "aaaa0001_nohash_0.wav",
    ]


# --------------------------------------------------------------------------- #
# WAV decoding
# --------------------------------------------------------------------------- #


def test_short_clip_is_zero_padded_at_the_end(tmp_path: Path) -> None:
    samples = np.arange(1, 8_001, dtype="<i2")
    path = tmp_path / "short.wav"
    path.write_bytes(wav_bytes(samples))
    decoded = read_clip(path)
    assert decoded.dtype == np.int16 and decoded.shape == (16_000,)
    np.testing.assert_array_equal(decoded[:8_000], samples)
    assert not decoded[8_000:].any()


def test_a_recording_longer_than_a_clip_points_at_listen(tmp_path: Path) -> None:
    """Cut to its first second, a 3 s recording would be classified on whatever that second holds."""
    path = tmp_path / "three_seconds.wav"
    path.write_bytes(wav_bytes(np.arange(48_000, dtype="<i2")))
    with pytest.raises(AudioError, match=r"three_seconds\.wav: 3\.00 s long, .* --listen .*three_seconds\.wav"):
        read_clip(path)
    with pytest.raises(AudioError, match="1.25 s long"):
        decode_wav(wav_bytes(np.arange(20_000, dtype="<i2")))
    np.testing.assert_array_equal(decode_wav(wav_bytes(np.arange(16_000, dtype="<i2"))), np.arange(16_000))


def test_real_clip_decodes_to_one_second(data_dir: Path) -> None:
    clip = list_clips(data_dir)[0]
    audio = read_clip(clip.path)
    assert audio.shape == (16_000,) and np.abs(audio.astype(np.int32)).max() > 100


@pytest.mark.parametrize(
    ("rate", "channels", "width", "described"),
    [(8_000, 1, 2, "8000 Hz"), (44_100, 1, 2, "44100 Hz"), (16_000, 2, 2, "2 channel"), (16_000, 1, 1, "8-bit"),
     (16_000, 1, 4, "32-bit")],
)
def test_wrong_wav_format_is_a_clear_error(
    tmp_path: Path, rate: int, channels: int, width: int, described: str
) -> None:
    path = tmp_path / "odd.wav"
    path.write_bytes(wav_bytes(np.zeros(1_000 * channels * width, dtype=np.uint8), rate, channels, width))
    with pytest.raises(AudioError, match=f"odd.wav: expected 16000 Hz mono 16-bit PCM, got .*{described}"):
        read_clip(path)


def test_non_wav_bytes_are_a_clear_error() -> None:
    with pytest.raises(AudioError, match="upload.wav: not a readable WAV file"):
        decode_wav(b"ID3\x04 this is an mp3", name="upload.wav")


# --------------------------------------------------------------------------- #
# Download and extraction
# --------------------------------------------------------------------------- #


def test_offline_download_fails_pointing_at_data_dir(tmp_path: Path, free_port: int) -> None:
    target = tmp_path / "data" / "mini_speech_commands"
    result = subprocess.run(
        [sys.executable, "dataset.py", "download", "--data-dir", str(target),
         "--url", f"http://127.0.0.1:{free_port}/mini_speech_commands.zip"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "could not download" in result.stderr and "--data-dir" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "data" / "mini_speech_commands.zip").exists(), "a partial archive was left behind"


def write_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_STORED) as bundle:
        for name, data in members.items():
            bundle.writestr(name, data)
    return path


def test_extract_archive_puts_clips_in_label_folders(tmp_path: Path) -> None:
    clip = wav_bytes(np.zeros(16, dtype="<i2"))
    members = {f"mini_speech_commands/{label}/{i:08x}_nohash_0.wav": clip
               for label in DEFAULT_LABELS for i in range(1_000)}
    members["mini_speech_commands/README.md"] = b"not a clip"
    # A hostile member name must not escape the target folder.
    del members["mini_speech_commands/go/00000000_nohash_0.wav"]
    members["../../go/00000000_nohash_0.wav"] = clip
    archive = write_zip(tmp_path / "mini.zip", members)
    target = tmp_path / "out"
    extract_archive(archive, target)
    assert len(list(target.glob("*/*.wav"))) == 8_000
    assert sorted(p.name for p in target.iterdir()) == sorted(DEFAULT_LABELS)
    assert (target / "go" / "00000000_nohash_0.wav").read_bytes() == clip
    assert not (tmp_path.parent / "go").exists()


def test_extract_archive_rejects_an_incomplete_archive(tmp_path: Path) -> None:
    archive = write_zip(tmp_path / "mini.zip", {"mini_speech_commands/left/a_nohash_0.wav": b"RIFF"})
    with pytest.raises(DatasetError, match="expected 8000 clips, found 1"):
        extract_archive(archive, tmp_path / "out")


def test_extract_archive_rejects_a_corrupt_member(tmp_path: Path) -> None:
    payload = b"RIFF" + b"\x01" * 64
    archive = write_zip(tmp_path / "mini.zip", {"mini_speech_commands/left/a_nohash_0.wav": payload})
    data = archive.read_bytes()
    archive.write_bytes(data.replace(payload, payload[:-1] + b"\x02", 1))  # CRC no longer matches
    with pytest.raises(DatasetError, match="a_nohash_0.wav is corrupt"):
        extract_archive(archive, tmp_path / "out")


def test_extract_archive_rejects_a_non_zip(tmp_path: Path) -> None:
    archive = tmp_path / "mini.zip"
    archive.write_text("<html>captive portal</html>")
    with pytest.raises(DatasetError, match="not a zip file"):
        extract_archive(archive, tmp_path / "out")


# --------------------------------------------------------------------------- #
# The full Speech Commands download (served by a real HTTP server on loopback)
# --------------------------------------------------------------------------- #


def serve_folder(folder: Path):
    """A real HTTP server for ``folder`` on a free loopback port, in a thread; returns (server, base URL)."""
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def write_full_archive(path: Path, data_dir: Path) -> dict[str, int]:
    """A small archive in v0.02's layout: keyword and other-word clips, a noise recording, and hostile members."""
    import tarfile

    other = data_dir.parent / "speech_commands_other"
    if not other.is_dir():
        pytest.skip(f"no {other}")
    keywords = [c.path for c in select_clips(data_dir, "test")[:6]]
    others = sorted((other / "bed").glob("*.wav"))[:3]
    noise = sorted((other / "_background_noise_").glob("*.wav"))[:1]
    with tarfile.open(path, "w:gz") as archive:
        for clip in [*keywords, *others, *noise]:
            archive.add(clip, arcname=f"./{clip.parent.name}/{clip.name}")
        archive.addfile(tarfile.TarInfo("README.md"), io.BytesIO())
        for hostile in ("../../escaped.wav", "./yes/../../../escaped.wav", "./ev il/x.wav"):
            info = tarfile.TarInfo(hostile)
            info.size = 4
            archive.addfile(info, io.BytesIO(b"RIFF"))
        link = tarfile.TarInfo("./yes/link.wav")
        link.type, link.linkname = tarfile.SYMTYPE, "/etc/passwd"
        archive.addfile(link)
    return {"keywords": len(keywords), "others": len(others), "noise": len(noise)}


def test_full_download_lays_out_keywords_and_other_words(data_dir: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    counts = write_full_archive(served / "speech_commands_v0.02.tar.gz", data_dir)
    server, base = serve_folder(served)
    try:
        target = tmp_path / "data" / "speech_commands"
        keywords, others = download_full(target, f"{base}/speech_commands_v0.02.tar.gz", min_clips=1,
                                         sha256=file_sha256(served / "speech_commands_v0.02.tar.gz"))
    finally:
        server.shutdown()
    assert keywords == target and others == tmp_path / "data" / "speech_commands_other"
    assert len(list(keywords.glob("*/*.wav"))) == counts["keywords"]
    assert {p.parent.name for p in keywords.glob("*/*.wav")} <= set(DEFAULT_LABELS)
    assert len(list((others / "bed").glob("*.wav"))) == counts["others"]
    assert len(list((others / "_background_noise_").glob("*.wav"))) == counts["noise"]
    assert not list(tmp_path.rglob("escaped.wav")) and not (keywords / "yes" / "link.wav").exists()
    assert not list(tmp_path.rglob("*.partial"))
    # The folders are what the rest of the project reads: the clips list, and the other words by speaker.
    assert len(list_clips(keywords)) == counts["keywords"]


def test_truncated_full_download_leaves_nothing(data_dir: Path, tmp_path: Path) -> None:
    served = tmp_path / "served"
    served.mkdir()
    write_full_archive(served / "full.tar.gz", data_dir)
    server, base = serve_folder(served)
    target = tmp_path / "data" / "speech_commands"
    try:
        with pytest.raises(DatasetError, match="truncated"):
            download_full(target, f"{base}/full.tar.gz", min_clips=100_000, sha256=file_sha256(served / "full.tar.gz"))
    finally:
        server.shutdown()
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())


def test_an_archive_that_is_not_the_pinned_one_leaves_nothing(data_dir: Path, tmp_path: Path) -> None:
    """The official URLs are pinned to the official archives' SHA-256: anything else is refused, clips and all."""
    served = tmp_path / "served"
    served.mkdir()
    write_full_archive(served / "speech_commands_v0.02.tar.gz", data_dir)
    write_zip(served / "mini_speech_commands.zip", {"mini_speech_commands/yes/a_nohash_0.wav": b"RIFF"})
    server, base = serve_folder(served)
    try:
        with pytest.raises(DatasetError, match="SHA-256 .*, expected af14739e.*--sha256"):
            download_full(tmp_path / "data" / "speech_commands", f"{base}/speech_commands_v0.02.tar.gz", min_clips=1)
        result = subprocess.run(
            [sys.executable, "dataset.py", "download", "--data-dir", str(tmp_path / "mini" / "clips"),
             "--url", f"{base}/mini_speech_commands.zip"],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
        )
    finally:
        server.shutdown()
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").iterdir())
    assert result.returncode == 2 and "expected 49650f23" in result.stderr and "Traceback" not in result.stderr
    assert not list((tmp_path / "mini").rglob("*")), "the refused archive was kept"


def test_a_bad_sha256_flag_names_the_flag(tmp_path: Path) -> None:
    result = subprocess.run([sys.executable, "dataset.py", "download", "--sha256", "abc"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2 and "--sha256" in result.stderr and "64 hexadecimal digits" in result.stderr


def file_sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_offline_full_download_is_a_clear_error(tmp_path: Path, free_port: int) -> None:
    result = subprocess.run(
        [sys.executable, "dataset.py", "download", "--full", "--data-dir", str(tmp_path / "speech_commands"),
         "--url", f"http://127.0.0.1:{free_port}/speech_commands_v0.02.tar.gz"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 2
    assert "could not download" in result.stderr and "Traceback" not in result.stderr
