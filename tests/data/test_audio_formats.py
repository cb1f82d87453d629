"""Clips in WAV, FLAC and Ogg Opus, read one way everywhere; training-only folders stay out of measurements.

A FLAC copy of a folder must give a model exactly what the WAV original gives, an
Opus clip must keep its length, and a file that cannot be used must be named in
the error, whatever its format. A folder whose speakers are unknown
(``speech_commands_more``) must never reach a validation or test split, or its
voices could be the ones measured.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from kws.audio import AudioError, read_clip, read_recording
from kws.data.clips import DatasetError, clips_from_paths, list_clips, sample_clips, select_clips
from kws.data.splits import KNOWN_TRAINING_ONLY, TRAINING_ONLY_MARKER, is_training_only, partition_of

soundfile = pytest.importorskip("soundfile", reason="FLAC and Ogg Opus are read with soundfile")

SHARED_MORE = Path(__file__).resolve().parents[3] / "shared" / "data" / "speech_commands_more"


def write_flac(path: Path, samples: np.ndarray, rate: int = 16_000, subtype: str = "PCM_16") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, rate, format="FLAC", subtype=subtype)
    return path


def write_opus(path: Path, samples: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(str(path), samples, 16_000, format="OGG", subtype="OPUS")
    return path


def tone(length: int) -> np.ndarray:
    return (3000 * np.sin(np.arange(length) / 7.0)).astype(np.int16)


# --------------------------------------------------------------------------- #
# Decoding
# --------------------------------------------------------------------------- #


def test_a_flac_clip_decodes_to_the_samples_of_the_wav_it_came_from(data_dir: Path, tmp_path: Path) -> None:
    for clip in sample_clips(list_clips(data_dir), per_label=1):
        original = read_recording(clip.path)
        flac = write_flac(tmp_path / clip.label / (clip.path.stem + ".flac"), original)
        np.testing.assert_array_equal(read_recording(flac), original)
        np.testing.assert_array_equal(read_clip(flac), read_clip(clip.path))


def test_an_opus_clip_decodes_to_16_khz_with_its_original_length(tmp_path: Path) -> None:
    short = write_opus(tmp_path / "yes" / "x_nohash_0.opus", tone(12_345))
    decoded = read_recording(short)
    assert decoded.dtype == np.int16 and decoded.shape == (12_345,)
    assert soundfile.info(str(short)).samplerate == 16_000
    assert read_clip(short).shape == (16_000,) and not read_clip(short)[12_345:].any()
    # Lossy, but the same sound: most of the tone's energy survives the codec.
    error = decoded.astype(np.float64) - tone(12_345)
    assert np.sqrt(np.mean(error**2)) < 0.2 * np.sqrt(np.mean(tone(12_345).astype(np.float64) ** 2))


@pytest.mark.skipif(not SHARED_MORE.is_dir(), reason="speech_commands_more is not beside this checkout")
def test_the_shared_opus_clips_decode_to_their_recorded_lengths() -> None:
    lengths = {path.name: read_recording(path).size for path in sorted((SHARED_MORE / "yes").glob("y0000_*"))}
    assert lengths["y0000_nohash_0.opus"] == 16_000 and lengths["y0000_nohash_10.opus"] == 12_480


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("corrupt.flac", b"fLaC\x00\x00\x00\x22" + bytes(range(200)), r"corrupt\.flac: not a readable FLAC file"),
        ("empty.flac", b"", r"empty\.flac: not a readable FLAC file"),
        ("empty.wav", b"", r"empty\.wav: not a readable WAV file \(empty or cut short\)"),
        ("empty.opus", b"", r"empty\.opus: not a readable OPUS file"),
        ("mp3-inside.wav", b"ID3\x04 an mp3 in disguise", r"mp3-inside\.wav: not a readable WAV file"),
        ("absent.flac", None, r"absent\.flac: cannot be read \(no such file\)"),
    ],
)
def test_an_unreadable_file_is_named_in_the_error(
    tmp_path: Path, name: str, content: bytes | None, message: str
) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(AudioError, match=message):
        read_clip(path)


@pytest.mark.parametrize(
    ("rate", "channels", "subtype", "described"),
    [(44_100, 1, "PCM_16", "44100 Hz, 1 channel"), (16_000, 2, "PCM_16", "2 channel"),
     (16_000, 1, "PCM_S8", "8-bit"), (16_000, 1, "PCM_24", "24-bit")],
)
def test_a_flac_in_another_format_is_a_clear_error(
    tmp_path: Path, rate: int, channels: int, subtype: str, described: str
) -> None:
    samples = tone(4_000) if channels == 1 else np.stack([tone(4_000)] * channels, axis=1)
    path = write_flac(tmp_path / "odd.flac", samples, rate, subtype)
    with pytest.raises(AudioError, match=f"odd.flac: expected 16000 Hz mono 16-bit PCM, got .*{described}"):
        read_clip(path)


def test_a_recording_without_samples_is_never_a_clip(tmp_path: Path) -> None:
    """Padded to a second of zeros it would be classified (and sent to Big) as if it were speech."""
    import wave

    path = tmp_path / "silent.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(16_000)
    with pytest.raises(AudioError, match=r"silent\.wav: holds no audio"):
        read_clip(path)


# --------------------------------------------------------------------------- #
# Listing and splits in a folder of mixed formats
# --------------------------------------------------------------------------- #


def test_a_folder_mixing_wav_flac_and_opus_lists_and_splits_every_clip(data_dir: Path, tmp_path: Path) -> None:
    originals = sample_clips(list_clips(data_dir), per_label=3)
    writers = {".wav": lambda path, samples: shutil.copyfile(source.path, path), ".flac": write_flac,
               ".opus": write_opus}
    for index, source in enumerate(originals):
        suffix = list(writers)[index % 3]
        target = tmp_path / "mixed" / source.label / (source.path.stem + suffix)
        target.parent.mkdir(parents=True, exist_ok=True)
        writers[suffix](target, read_recording(source.path))
    (tmp_path / "mixed" / "yes" / "notes.txt").write_text("not a clip")
    mixed = list_clips(tmp_path / "mixed")
    assert sorted(clip.format_free_key for clip in mixed) == sorted(clip.format_free_key for clip in originals)
    assert {clip.path.suffix for clip in mixed} == {".wav", ".flac", ".opus"}
    for split in ("train", "validation", "test"):
        chosen = select_clips(tmp_path / "mixed", split)
        assert all(partition_of(clip.speaker) == split for clip in chosen)
    assert len(clips_from_paths([tmp_path / "mixed"], labels=("yes",))) == len(mixed)
    assert all(read_clip(clip.path).shape == (16_000,) for clip in mixed)


def test_a_split_file_of_wav_names_selects_the_same_clips_in_a_flac_copy(data_dir: Path, tmp_path: Path) -> None:
    originals = sample_clips(select_clips(data_dir, "test"), per_label=1)
    for clip in originals:
        write_flac(tmp_path / "flac" / clip.label / (clip.path.stem + ".flac"), read_recording(clip.path))
    split_file = tmp_path / "split.txt"
    split_file.write_text("".join(f"./data/mini_speech_commands/{clip.key}\n" for clip in originals))
    chosen = select_clips(tmp_path / "flac", str(split_file))
    assert [clip.format_free_key for clip in chosen] == [clip.format_free_key for clip in originals]


# --------------------------------------------------------------------------- #
# Training-only folders
# --------------------------------------------------------------------------- #


def speakers_of_every_split(count: int = 60) -> list[str]:
    """Speaker ids that the hash puts in each of the three splits."""
    speakers = [f"{index:08x}" for index in range(count)]
    assert {partition_of(speaker) for speaker in speakers} == {"train", "validation", "test"}
    return speakers


def make_opus_folder(root: Path) -> Path:
    for speaker in speakers_of_every_split():
        write_opus(root / "yes" / f"{speaker}_nohash_0.opus", tone(8_000))
    return root


@pytest.mark.parametrize("declared_by", ["marker", "name"])
def test_a_training_only_folder_never_reaches_validation_or_test(tmp_path: Path, declared_by: str) -> None:
    plain = make_opus_folder(tmp_path / "plain")
    assert select_clips(plain, "validation") and select_clips(plain, "test"), "the names alone would be measured"
    if declared_by == "marker":
        folder = make_opus_folder(tmp_path / "recorded_by_us")
        (folder / TRAINING_ONLY_MARKER).write_text("speakers unknown\n")
    else:
        folder = make_opus_folder(tmp_path / KNOWN_TRAINING_ONLY[0])
    assert is_training_only(folder) and not is_training_only(plain)
    every_clip = list_clips(folder)
    assert select_clips(folder, "train") == every_clip == select_clips(folder, "all")
    assert select_clips(folder, "validation") == [] and select_clips(folder, "test") == []
    split_file = tmp_path / "test_split.txt"
    split_file.write_text(f"yes/{every_clip[0].path.name}\n")
    with pytest.raises(DatasetError, match="training-only"):
        select_clips(folder, str(split_file))


def test_a_folder_declared_training_only_by_the_caller(tmp_path: Path) -> None:
    plain = make_opus_folder(tmp_path / "plain")
    assert select_clips(plain, "train", training_only=True) == list_clips(plain)
    assert select_clips(plain, "test", training_only=True) == []


def test_evaluate_refuses_the_test_split_of_a_training_only_folder(tmp_path: Path, shipped_model, cli) -> None:
    folder = make_opus_folder(tmp_path / KNOWN_TRAINING_ONLY[0])
    result = cli("evaluate.py", "--model", str(shipped_model("little")), "--data-dir", str(folder), "--quiet")
    assert result.returncode == 2 and "training-only" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.skipif(not SHARED_MORE.is_dir(), reason="speech_commands_more is not beside this checkout")
def test_dataset_summary_counts_the_shared_opus_folder_as_training_only(cli) -> None:
    result = cli("dataset.py", "summary", "--data-dir", str(SHARED_MORE))
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1:] for line in result.stdout.splitlines() if line.split()}
    assert rows["yes"] == ["3493", "0", "0"] and rows["no"] == ["3423", "0", "0"]
    assert rows["total"] == ["6916", "0", "0"] and "training-only" in result.stdout


# --------------------------------------------------------------------------- #
# A model hears a FLAC copy exactly as it hears the WAV original
# --------------------------------------------------------------------------- #


def test_evaluate_gives_the_same_predictions_on_a_flac_copy(data_dir: Path, tmp_path: Path, shipped_model, cli) -> None:
    originals = sample_clips(select_clips(data_dir, "test"), per_label=3)
    for clip in originals:
        (tmp_path / "wav" / clip.label).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip.path, tmp_path / "wav" / clip.key)
        write_flac(tmp_path / "flac" / clip.label / (clip.path.stem + ".flac"), read_recording(clip.path))
    reports = {}
    for copy in ("wav", "flac"):
        report = tmp_path / f"{copy}.json"
        result = cli("evaluate.py", "--model", str(shipped_model("big")), "--data-dir", str(tmp_path / copy),
                     "--split", "all", "--quiet", "--report", str(report))
        assert result.returncode == 0, result.stderr
        reports[copy] = json.loads(report.read_text())
    assert reports["flac"]["samples"] == reports["wav"]["samples"] == len(originals)
    assert reports["flac"]["confusion_matrix"] == reports["wav"]["confusion_matrix"]
    assert reports["flac"]["accuracy"] == reports["wav"]["accuracy"]
