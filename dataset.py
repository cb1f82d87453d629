"""Speech Commands clips on disk: listing, speaker-disjoint splits, WAV decoding, download.

A dataset is a folder in the Speech Commands layout, ``<label>/<speaker>_nohash_<n>.wav``.
Splits are by speaker so that no voice is both trained on and tested on. Without a
split file, the split is computed from the speaker id with the hashing scheme of
Speech Commands itself (``which_set`` in TensorFlow's ``speech_commands/input_data.py``),
so it is the same on every machine and stable when clips are added.

Usage::

    python dataset.py download                    # fetch mini_speech_commands.zip into data/
    python dataset.py summary --data-dir DIR      # clips per label and split
"""

from __future__ import annotations

import argparse
import hashlib
import io
import logging
import os
import re
import sys
import urllib.error
import urllib.request
import wave
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

log = logging.getLogger("dataset")

#: The course's class order (``labels.txt``); models store their own order in their metadata.
DEFAULT_LABELS: tuple[str, ...] = ("down", "stop", "right", "left", "up", "yes", "no", "go")
DEFAULT_DATA_DIR = Path("data/mini_speech_commands")
MINI_SPEECH_COMMANDS_URL = "http://storage.googleapis.com/download.tensorflow.org/data/mini_speech_commands.zip"
#: What a complete mini_speech_commands.zip holds: 8 words x 1 000 clips.
MINI_SPEECH_COMMANDS_CLIPS = 8_000

SAMPLE_RATE = 16_000
CLIP_SAMPLES = 16_000

#: The named splits; anything else passed as a split is read as a split file.
SPLIT_NAMES = ("train", "validation", "test", "all")
VALIDATION_PERCENT = 10.0
TEST_PERCENT = 10.0
_MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # the constant Speech Commands hashes with
#: Fixed once, before any model was trained; changing it reshuffles every split.
SPLIT_SALT = "kws-split:"


class DatasetError(Exception):
    """A dataset problem a user can fix: a missing folder, a bad WAV, an unknown split."""


@dataclass(frozen=True)
class Clip:
    """One labelled recording."""

    path: Path
    label: str

    @property
    def speaker(self) -> str:
        return speaker_of(self.path.name)

    @property
    def key(self) -> str:
        """``label/name.wav``: the clip's name inside any copy of the dataset."""
        return f"{self.label}/{self.path.name}"


def speaker_of(filename: str) -> str:
    """The speaker id: the part of the file name before ``_nohash_``."""
    return re.sub(r"_nohash_.*$", "", Path(filename).name)


def partition_of(
    speaker: str, validation_percent: float = VALIDATION_PERCENT, test_percent: float = TEST_PERCENT
) -> str:
    """Which split a speaker belongs to, by Speech Commands' own hashing scheme.

    The scheme is ``which_set`` from Speech Commands (SHA-1 of the speaker id, taken
    modulo 2**27, as a percentage), with one change: the id is prefixed with
    :data:`SPLIT_SALT`. The balanced clips we have *are* Speech Commands' own test
    partition, so the unsalted hash puts every one of their speakers in 'test'; the
    salt spreads them 80/10/10 while keeping the split deterministic, speaker-disjoint
    and stable when clips are added.
    """
    digest = int(hashlib.sha1((SPLIT_SALT + speaker).encode("utf-8")).hexdigest(), 16)
    percentage = (digest % (_MAX_NUM_WAVS_PER_CLASS + 1)) * (100.0 / _MAX_NUM_WAVS_PER_CLASS)
    if percentage < validation_percent:
        return "validation"
    if percentage < validation_percent + test_percent:
        return "test"
    return "train"


#: Where clips are looked for when no --data-dir is given, after $KWS_DATA_DIR: the shared
#: folder beside the checkout (where CI clones it), then the course download.
LOCAL_DATA_DIRS = (
    Path(__file__).resolve().parent.parent / "shared" / "data" / "speech_commands",
    Path(__file__).resolve().parent / DEFAULT_DATA_DIR,
)


def locate_data_dir() -> Path | None:
    """The first folder holding clips: ``$KWS_DATA_DIR`` alone when set, else :data:`LOCAL_DATA_DIRS`."""
    configured = os.environ.get("KWS_DATA_DIR")
    candidates = (Path(configured),) if configured else LOCAL_DATA_DIRS
    return next((path for path in candidates if path.is_dir() and any(path.glob("*/*.wav"))), None)


def list_clips(data_dir: Path | str, labels: Sequence[str] = DEFAULT_LABELS) -> list[Clip]:
    """Every clip of the given labels, sorted so runs are repeatable."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(
            f"data directory {root} does not exist: pass --data-dir, or run 'python dataset.py download'"
        )
    clips = [Clip(path, label) for label in labels for path in sorted((root / label).glob("*.wav"))]
    if not clips:
        raise DatasetError(f"no <label>/*.wav clips for labels {list(labels)} under {root}")
    return clips


def read_split_file(path: Path | str) -> set[str]:
    """Clip keys (``label/name.wav``) listed in a split file.

    Lines may be relative to the data directory (``left/x_nohash_0.wav``) or in the
    course form (``./data/mini_speech_commands/left/x_nohash_0.wav``): only the last
    two path parts matter.
    """
    keys = set()
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = Path(line).parts
        if len(parts) < 2 or not parts[-1].endswith(".wav"):
            raise DatasetError(f"{path}:{number}: expected 'label/name.wav', got {line!r}")
        keys.add(f"{parts[-2]}/{parts[-1]}")
    return keys


def select_clips(data_dir: Path | str, split: str = "all", labels: Sequence[str] = DEFAULT_LABELS) -> list[Clip]:
    """The clips of one split: a name from ``SPLIT_NAMES`` or the path of a split file."""
    clips = list_clips(data_dir, labels)
    if split == "all":
        return clips
    if split in SPLIT_NAMES:
        return [clip for clip in clips if partition_of(clip.speaker) == split]
    split_path = Path(split)
    if not split_path.is_file():
        raise DatasetError(f"--split {split!r} is neither one of {SPLIT_NAMES} nor a file")
    wanted = read_split_file(split_path)
    chosen = [clip for clip in clips if clip.key in wanted]
    if not chosen:
        raise DatasetError(f"none of the {len(wanted)} clips listed in {split} is under {data_dir}")
    if len(chosen) < len(wanted):
        log.warning("%d of %d clips in %s are not under %s", len(wanted) - len(chosen), len(wanted), split, data_dir)
    return chosen


def sample_clips(clips: Sequence[Clip], per_label: int) -> list[Clip]:
    """Up to ``per_label`` clips of each label, spread evenly over its sorted clips.

    For smoke checks and benchmarks that want a few real, varied clips and the
    same ones on every run (a plain prefix would be one or two speakers).
    """
    by_label: dict[str, list[Clip]] = {}
    for clip in clips:
        by_label.setdefault(clip.label, []).append(clip)
    chosen = []
    for members in by_label.values():
        step = max(1, len(members) // per_label)
        chosen.extend(members[::step][:per_label])
    return chosen


def decode_wav(data: bytes | Path | str, name: str = "clip") -> np.ndarray:
    """16-bit mono 16 kHz WAV to int16 samples, zero-padded or trimmed to 1 s.

    Anything else is a :class:`DatasetError` naming the file, never a silent resample.
    """
    source = str(data) if isinstance(data, (str, Path)) else io.BytesIO(data)
    try:
        with wave.open(source, "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise DatasetError(f"{name}: not a readable WAV file ({error})") from error
    if rate != SAMPLE_RATE or channels != 1 or width != 2:
        raise DatasetError(
            f"{name}: expected {SAMPLE_RATE} Hz mono 16-bit PCM, got {rate} Hz, {channels} channel(s), {8 * width}-bit"
        )
    samples = np.frombuffer(frames, dtype="<i2").astype(np.int16)
    if samples.size >= CLIP_SAMPLES:
        return samples[:CLIP_SAMPLES]
    return np.pad(samples, (0, CLIP_SAMPLES - samples.size))


def read_wav(path: Path | str) -> np.ndarray:
    """Decode one clip file; see :func:`decode_wav`."""
    return decode_wav(Path(path), name=str(path))


def load_audio(clips: Sequence[Clip], progress: bool = True) -> np.ndarray:
    """All clips as one int16 array of shape (clips, 16 000)."""
    from tqdm import tqdm

    audio = np.empty((len(clips), CLIP_SAMPLES), dtype=np.int16)
    for index, clip in enumerate(tqdm(clips, desc="reading clips", unit="clip", disable=not progress)):
        audio[index] = read_wav(clip.path)
    return audio


def label_indices(clips: Iterable[Clip], labels: Sequence[str]) -> np.ndarray:
    """Each clip's label as its index in ``labels``."""
    position = {label: index for index, label in enumerate(labels)}
    return np.array([position[clip.label] for clip in clips], dtype=np.int64)


# --------------------------------------------------------------------------- #
# Download
# --------------------------------------------------------------------------- #


def download(data_dir: Path | str = DEFAULT_DATA_DIR, url: str = MINI_SPEECH_COMMANDS_URL) -> Path:
    """Fetch and extract mini_speech_commands.zip so that ``data_dir`` holds its label folders."""
    from tqdm import tqdm

    data_dir = Path(data_dir)
    if data_dir.is_dir() and any(data_dir.glob("*/*.wav")):
        log.info("%s already holds clips; nothing to download", data_dir)
        return data_dir
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    archive = parent / "mini_speech_commands.zip"
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(archive, "wb") as out:
            total = int(response.headers.get("Content-Length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="downloading") as bar:
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError) as error:
        archive.unlink(missing_ok=True)
        raise DatasetError(
            f"could not download {url} ({error}); offline? Copy a Speech Commands folder "
            "here yourself and pass its path with --data-dir"
        ) from error
    extract_archive(archive, data_dir)
    archive.unlink()
    return data_dir


def extract_archive(archive: Path, data_dir: Path) -> None:
    """Check the zip (CRCs and the expected 8 000 clips) and extract it into ``data_dir``."""
    from tqdm import tqdm

    try:
        with zipfile.ZipFile(archive) as bundle:
            broken = bundle.testzip()
            if broken is not None:
                raise DatasetError(f"{archive}: member {broken} is corrupt; delete it and download again")
            members = [m for m in bundle.infolist() if m.filename.endswith(".wav")]
            if len(members) != MINI_SPEECH_COMMANDS_CLIPS:
                raise DatasetError(f"{archive}: expected {MINI_SPEECH_COMMANDS_CLIPS} clips, found {len(members)}")
            for member in tqdm(members, desc="extracting", unit="clip"):
                parts = Path(member.filename).parts  # mini_speech_commands/<label>/<name>.wav
                target = data_dir / parts[-2] / parts[-1]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(bundle.read(member))
    except zipfile.BadZipFile as error:
        raise DatasetError(f"{archive}: not a zip file ({error})") from error


# --------------------------------------------------------------------------- #
# CLI
# --------------------------------------------------------------------------- #


def summarise(data_dir: Path) -> dict[str, Counter]:
    """Clip counts per split and label."""
    counts: dict[str, Counter] = {name: Counter() for name in ("train", "validation", "test")}
    for clip in list_clips(data_dir):
        counts[partition_of(clip.speaker)][clip.label] += 1
    return counts


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("download", help="download and extract mini_speech_commands.zip")
    fetch.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="where the label folders go (default: %(default)s)"
    )
    fetch.add_argument(
        "--url", default=MINI_SPEECH_COMMANDS_URL, help="archive to fetch, e.g. a local mirror (default: %(default)s)"
    )
    summary = commands.add_parser("summary", help="count clips per label in each speaker-disjoint split")
    summary.add_argument(
        "--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="dataset folder (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "download":
            print(f"clips are in {download(args.data_dir, args.url)}")
        else:
            counts = summarise(args.data_dir)
            print(f"{'label':<8}" + "".join(f"{name:>12}" for name in counts))
            for label in DEFAULT_LABELS:
                print(f"{label:<8}" + "".join(f"{counts[name][label]:>12}" for name in counts))
            print(f"{'total':<8}" + "".join(f"{sum(c.values()):>12}" for c in counts.values()))
    except DatasetError as error:
        parser.exit(2, f"error: {error}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
