"""Speaker-disjoint splits: which split a speaker's clips belong to, and split files.

Splits are by speaker so that no voice is both trained on and tested on. Without a
split file, the split is computed from the speaker id with the hashing scheme of
Speech Commands itself (``which_set`` in TensorFlow's ``speech_commands/input_data.py``),
so it is the same on every machine and stable when clips are added.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from kws.audio import CLIP_SUFFIXES
from kws.data import DatasetError

#: The named splits; anything else passed as a split is read as a split file.
SPLIT_NAMES = ("train", "validation", "test", "all")
VALIDATION_PERCENT = 10.0
TEST_PERCENT = 10.0
_MAX_NUM_WAVS_PER_CLASS = 2**27 - 1  # the constant Speech Commands hashes with
#: Fixed once, before any model was trained; changing it reshuffles every split.
SPLIT_SALT = "kws-split:"
#: A file of this name at the top of a dataset folder declares the folder training-only.
TRAINING_ONLY_MARKER = "TRAINING_ONLY"
#: Folders known to be training-only without a marker: ``speech_commands_more`` names its
#: files by group, not speaker (its ``SOURCE.md``), so hashing its names would put voices
#: of the training speakers into the validation and test splits.
KNOWN_TRAINING_ONLY = ("speech_commands_more",)


def is_training_only(folder: Path | str) -> bool:
    """Whether every clip of ``folder`` belongs to the 'train' split, whatever its file names say.

    A folder is training-only when it carries a :data:`TRAINING_ONLY_MARKER` file or is one
    of :data:`KNOWN_TRAINING_ONLY`; ``train.py --training-only-dir`` declares any other.
    Such folders are for clips whose speakers are unknown: they can never be kept apart
    from the voices that are measured, so they are never measured.
    """
    path = Path(folder)
    return path.name in KNOWN_TRAINING_ONLY or (path / TRAINING_ONLY_MARKER).is_file()


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


def read_split_file(path: Path | str) -> set[str]:
    """Clip keys (``label/name``, without the file ending) listed in a split file.

    Lines may be relative to the data directory (``left/x_nohash_0.wav``) or in the
    course form (``./data/mini_speech_commands/left/x_nohash_0.wav``): only the last
    two path parts matter. Any clip ending (:data:`kws.audio.CLIP_SUFFIXES`) may be
    named, and none is kept, so a split file of WAV names selects the same clips in a
    FLAC copy of the folder.
    """
    keys = set()
    for number, line in enumerate(Path(path).read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        parts = Path(line).parts
        if len(parts) < 2 or Path(parts[-1]).suffix.lower() not in CLIP_SUFFIXES:
            endings = ", ".join(CLIP_SUFFIXES)
            raise DatasetError(f"{path}:{number}: expected 'label/name.ext' with ext one of {endings}, got {line!r}")
        keys.add(f"{parts[-2]}/{Path(parts[-1]).stem}")
    return keys
