"""Download Speech Commands for users who have no clips yet: the mini set, or the full v0.02.

The mini set (8 000 clips of the eight keywords) is enough to run everything. The full
Speech Commands v0.02 (105 829 clips of 35 words, CC BY 4.0) is what training for silence,
other words and rooms needs (the learning curve in docs/training-and-data.md): :func:`download_full` streams its
2.3 GB archive once and lays it out as the project's folders do, the eight keywords in
``<dir>/<label>/`` and the 27 other words with ``_background_noise_`` in
``<dir>_other/``, the folder ``train.py --other-dir`` looks for by default.

Both come over HTTPS and are checked against a pinned SHA-256 (the values TensorFlow
Datasets and torchaudio publish for the same files) before anything is kept: a corrupt,
truncated or substituted archive is an error that leaves nothing behind. A mirror of
another file needs its own ``--sha256``.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from kws.data.clips import DEFAULT_DATA_DIR, DEFAULT_LABELS, DatasetError, holds_clips

log = logging.getLogger(__name__)

MINI_SPEECH_COMMANDS_URL = "https://storage.googleapis.com/download.tensorflow.org/data/mini_speech_commands.zip"
#: SHA-256 of mini_speech_commands.zip (182 082 353 bytes).
MINI_SPEECH_COMMANDS_SHA256 = "49650f2341b26d886b46b3f4fb8fed59e30300b17550f1ee4a768b3106cf93a0"
#: What a complete mini_speech_commands.zip holds: 8 words x 1 000 clips.
MINI_SPEECH_COMMANDS_CLIPS = 8_000


FULL_SPEECH_COMMANDS_URL = "https://storage.googleapis.com/download.tensorflow.org/data/speech_commands_v0.02.tar.gz"
#: SHA-256 of speech_commands_v0.02.tar.gz (2 428 923 189 bytes), as TensorFlow Datasets and torchaudio pin it.
FULL_SPEECH_COMMANDS_SHA256 = "af14739ee7dc311471de98f5f9d2c9191b18aedfe957f4a6ff791c709868ff58"
#: Where ``dataset.py download --full`` puts the keywords (the other words go beside it, ``_other``).
DEFAULT_FULL_DATA_DIR = Path("data/speech_commands")
#: v0.02 holds 105 829 clips; fewer than this means a truncated or wrong archive.
FULL_SPEECH_COMMANDS_MIN_CLIPS = 100_000
NOISE_FOLDER = "_background_noise_"
#: A member is extracted only if its folder and file names look like the dataset's own.
_SAFE_FOLDER = re.compile(r"^[A-Za-z_]{1,40}$")
_SAFE_FILE = re.compile(r"^[A-Za-z0-9_.-]{1,80}\.wav$")


def other_dir_of(data_dir: Path) -> Path:
    """Where the full set's other words and noise recordings go: beside the keywords, ``<name>_other``."""
    return data_dir.parent / f"{data_dir.name}_other"


def download_full(
    data_dir: Path | str = DEFAULT_FULL_DATA_DIR,
    url: str = FULL_SPEECH_COMMANDS_URL,
    min_clips: int = FULL_SPEECH_COMMANDS_MIN_CLIPS,
    sha256: str = FULL_SPEECH_COMMANDS_SHA256,
) -> tuple[Path, Path]:
    """Stream the full Speech Commands archive and extract it: keywords to ``data_dir``, the rest beside it.

    The archive is read as it arrives (never stored whole), and a member lands only if
    it is a WAV file in a folder of the dataset's kind, so a hostile archive cannot write
    outside the two folders. The extracted clips stay in staging folders until the whole
    archive's SHA-256 equals ``sha256``; fewer than ``min_clips`` spoken clips is an error
    too (a truncated download).
    """
    data_dir = Path(data_dir)
    other_dir = other_dir_of(data_dir)
    if holds_clips(data_dir):
        log.info("%s already holds clips; nothing to download", data_dir)
        return data_dir, other_dir
    for folder in (data_dir, other_dir):
        if folder.is_dir() and any(folder.iterdir()):
            raise DatasetError(f"{folder} already exists and is not empty: move it away, or give another --data-dir")
    # Extracted into staging folders, renamed only once complete: an interrupted download
    # never leaves a half-filled folder that the next run would take for the dataset.
    staging = {final: final.with_name(final.name + ".partial") for final in (data_dir, other_dir)}
    for folder in staging.values():
        shutil.rmtree(folder, ignore_errors=True)
    counts = {"keywords": 0, "other words": 0, "noise recordings": 0}
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="downloading") as bar:
                reader = _CountingReader(response, bar)
                with tarfile.open(fileobj=reader, mode="r|gz") as archive:
                    for member in archive:
                        target, kind = _target_of(member, staging[data_dir], staging[other_dir])
                        source = archive.extractfile(member) if target is not None else None
                        if source is None:
                            continue
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(source.read())
                        counts[kind] += 1
                while reader.read(1 << 16):  # the tar's end padding: the checksum covers every byte
                    pass
        check_sha256(url, reader.digest.hexdigest(), sha256)
        spoken = counts["keywords"] + counts["other words"]
        if spoken < min_clips:
            raise DatasetError(f"{url}: only {spoken} clips (expected at least {min_clips}): truncated? "
                               "Download again")
        for final, folder in staging.items():
            if final.exists():
                final.rmdir()  # empty: checked before downloading (a folder with files in it is the user's)
            folder.rename(final)
    except (urllib.error.URLError, OSError) as error:
        raise DatasetError(
            f"could not download {url} ({error}); offline? Put a Speech Commands folder "
            "(<label>/<speaker>_nohash_<n>.wav) anywhere and point $KWS_DATA_DIR (or the tool's --data-dir) at it"
        ) from error
    except tarfile.TarError as error:
        raise DatasetError(f"{url}: not a readable .tar.gz ({error}); download again") from error
    finally:
        for folder in staging.values():
            shutil.rmtree(folder, ignore_errors=True)
    log.info("extracted %s", ", ".join(f"{count} {kind}" for kind, count in counts.items()))
    return data_dir, other_dir


class _CountingReader:
    """A file-like wrapper that advances a progress bar by the bytes read through it, and hashes them."""

    def __init__(self, raw, bar: tqdm) -> None:
        self.raw, self.bar = raw, bar
        self.digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        data = self.raw.read(size)
        self.bar.update(len(data))
        self.digest.update(data)
        return data


def check_sha256(url: str, found: str, expected: str) -> None:
    """A DatasetError unless the archive's SHA-256 is the pinned one."""
    if found != expected.lower():
        raise DatasetError(f"{url}: SHA-256 {found}, expected {expected}: a corrupt or substituted archive. "
                           "Download again; a mirror of another file needs its own --sha256")


def _target_of(member: tarfile.TarInfo, data_dir: Path, other_dir: Path) -> tuple[Path | None, str]:
    """Where one archive member goes, and what it is; (None, "") for anything that is not a dataset WAV."""
    parts = Path(member.name).parts
    if not member.isfile() or len(parts) < 2:
        return None, ""
    folder, name = parts[-2], parts[-1]
    if not (_SAFE_FOLDER.match(folder) and _SAFE_FILE.match(name)):
        return None, ""
    if folder == NOISE_FOLDER:
        return other_dir / folder / name, "noise recordings"
    if folder in DEFAULT_LABELS:
        return data_dir / folder / name, "keywords"
    if folder.startswith("_"):
        return None, ""
    return other_dir / folder / name, "other words"


def download(
    data_dir: Path | str = DEFAULT_DATA_DIR,
    url: str = MINI_SPEECH_COMMANDS_URL,
    sha256: str = MINI_SPEECH_COMMANDS_SHA256,
) -> Path:
    """Fetch mini_speech_commands.zip, check its SHA-256 and extract it: ``data_dir`` then holds its label folders."""
    data_dir = Path(data_dir)
    if holds_clips(data_dir):
        log.info("%s already holds clips; nothing to download", data_dir)
        return data_dir
    parent = data_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    archive = parent / "mini_speech_commands.zip"
    try:
        with urllib.request.urlopen(url, timeout=30) as response, open(archive, "wb") as out:
            total = int(response.headers.get("Content-Length", 0)) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc="downloading") as bar:
                reader = _CountingReader(response, bar)
                while chunk := reader.read(1 << 16):
                    out.write(chunk)
        check_sha256(url, reader.digest.hexdigest(), sha256)
    except DatasetError:
        archive.unlink(missing_ok=True)
        raise
    except (urllib.error.URLError, OSError) as error:
        archive.unlink(missing_ok=True)
        raise DatasetError(
            f"could not download {url} ({error}); offline? Put a Speech Commands folder "
            "(<label>/<speaker>_nohash_<n>.wav) anywhere and point $KWS_DATA_DIR (or the tool's --data-dir) at it"
        ) from error
    extract_archive(archive, data_dir)
    archive.unlink()
    return data_dir


def extract_archive(archive: Path, data_dir: Path) -> None:
    """Check the zip (CRCs and the expected 8 000 clips) and extract it into ``data_dir``."""
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
