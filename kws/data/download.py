"""Download the mini Speech Commands archive for users who have no clips yet."""

from __future__ import annotations

import logging
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from kws.data.clips import DEFAULT_DATA_DIR, DatasetError

log = logging.getLogger(__name__)

MINI_SPEECH_COMMANDS_URL = "http://storage.googleapis.com/download.tensorflow.org/data/mini_speech_commands.zip"
#: What a complete mini_speech_commands.zip holds: 8 words x 1 000 clips.
MINI_SPEECH_COMMANDS_CLIPS = 8_000


def download(data_dir: Path | str = DEFAULT_DATA_DIR, url: str = MINI_SPEECH_COMMANDS_URL) -> Path:
    """Fetch and extract mini_speech_commands.zip so that ``data_dir`` holds its label folders."""
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
