"""Speech Commands clips on disk: finding the folder, listing and selecting clips.

A dataset is a folder in the Speech Commands layout, ``<label>/<speaker>_nohash_<n>.<ext>``,
where each clip may be WAV, FLAC or Ogg Opus (:data:`kws.audio.CLIP_SUFFIXES`, mixed freely).
Every tool finds it by one rule (:func:`resolve_data_dir`): the folder it is given,
else ``$KWS_DATA_DIR``, else the first of :data:`LOCAL_DATA_DIRS` that holds clips.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from tqdm import tqdm

from kws.audio import CLIP_SAMPLES, CLIP_SUFFIXES, clip_files, is_clip_file, read_clip
from kws.data import DatasetError
from kws.data.splits import SPLIT_NAMES, is_training_only, partition_of, read_split_file
from kws.util.logs import progress_wanted

log = logging.getLogger(__name__)

#: The course's class order (``labels.txt``); models store their own order in their metadata.
DEFAULT_LABELS: tuple[str, ...] = ("down", "stop", "right", "left", "up", "yes", "no", "go")
#: The label of a model's "no speech here" class (background noise, a quiet room).
SILENCE = "_silence_"
#: The label of a model's "speech, but none of the keywords" class.
UNKNOWN = "_unknown_"
#: Both, in the order models that know them list them, after the keywords.
NON_KEYWORD_LABELS: tuple[str, ...] = (SILENCE, UNKNOWN)


def is_keyword(label: str) -> bool:
    """``_silence_``, ``_unknown_`` and any other ``_label_`` name what is not a keyword."""
    return not (len(label) > 1 and label.startswith("_") and label.endswith("_"))


def keywords_of(labels: Iterable[str]) -> set[str]:
    """The keywords among a model's labels: what two models must agree on (their refusals may differ)."""
    return {label for label in labels if is_keyword(label)}
#: Where ``python dataset.py download`` puts the mini Speech Commands clips.
DEFAULT_DATA_DIR = Path("data/mini_speech_commands")
_REPO_ROOT = Path(__file__).resolve().parents[2]
#: Where clips are looked for when no folder is given and ``$KWS_DATA_DIR`` is unset: the
#: shared folder beside the checkout (where CI clones it), then the download.
LOCAL_DATA_DIRS = (
    _REPO_ROOT.parent / "shared" / "data" / "speech_commands",
    _REPO_ROOT / DEFAULT_DATA_DIR,
)
DATA_DIR_VARIABLE = "KWS_DATA_DIR"
#: The clip endings, as error messages list them.
_ENDINGS = "/".join(suffix.lstrip(".") for suffix in CLIP_SUFFIXES)

T = TypeVar("T")


@dataclass(frozen=True)
class Clip:
    """One labelled recording."""

    path: Path
    label: str | None
    """None for audio nobody labelled (a Pi's own recordings)."""

    @property
    def speaker(self) -> str:
        return speaker_of(self.path.name)

    @property
    def key(self) -> str:
        """``label/name.ext``: the clip's name inside any copy of the dataset (its path when unlabelled)."""
        return f"{self.label}/{self.path.name}" if self.label is not None else str(self.path)

    @property
    def format_free_key(self) -> str:
        """``label/name``: the same in a copy of the dataset in another format (how split files match)."""
        return f"{self.label}/{self.path.stem}"


def speaker_of(filename: str) -> str:
    """The speaker id: the part of the file name before ``_nohash_``."""
    return re.sub(r"_nohash_.*$", "", Path(filename).name)


def holds_clips(path: Path) -> bool:
    """Whether ``path`` is a folder with at least one ``<label>/<clip>`` (WAV, FLAC or Ogg)."""
    return path.is_dir() and any(is_clip_file(clip) for clip in path.glob("*/*"))


def locate_data_dir() -> Path | None:
    """``$KWS_DATA_DIR`` when set (a :class:`DatasetError` if it holds no clips), else the first of
    :data:`LOCAL_DATA_DIRS` holding clips, else None."""
    configured = os.environ.get(DATA_DIR_VARIABLE)
    if configured:
        if not holds_clips(Path(configured)):
            raise DatasetError(f"${DATA_DIR_VARIABLE}={configured} holds no <label>/<clip> files ({_ENDINGS})")
        return Path(configured)
    return next((path for path in LOCAL_DATA_DIRS if holds_clips(path)), None)


def resolve_data_dir(given: Path | str | None) -> Path:
    """The one rule every tool follows: ``given`` (a --data-dir), else :func:`locate_data_dir`."""
    if given is not None:
        return Path(given)
    found = locate_data_dir()
    if found is None:
        where = ", ".join(str(path) for path in LOCAL_DATA_DIRS)
        raise DatasetError(
            f"no clips found (looked in {where}): pass --data-dir DIR, set ${DATA_DIR_VARIABLE}, "
            "or run 'python dataset.py download'"
        )
    return found


def list_clips(data_dir: Path | str, labels: Sequence[str] = DEFAULT_LABELS) -> list[Clip]:
    """Every clip of the given labels, sorted so runs are repeatable."""
    root = Path(data_dir)
    if not root.is_dir():
        raise DatasetError(
            f"data directory {root} does not exist: pass --data-dir DIR, set ${DATA_DIR_VARIABLE}, "
            "or run 'python dataset.py download'"
        )
    clips = [Clip(path, label) for label in labels for path in clip_files(root / label)]
    if not clips:
        raise DatasetError(f"no <label>/<clip> files ({_ENDINGS}) for labels {list(labels)} under {root}")
    return clips


def select_clips(
    data_dir: Path | str,
    split: str = "all",
    labels: Sequence[str] = DEFAULT_LABELS,
    training_only: bool | None = None,
) -> list[Clip]:
    """The clips of one split: a name from ``SPLIT_NAMES`` or the path of a split file.

    A training-only folder (``training_only``; when None, :func:`kws.data.splits.is_training_only`
    decides) gives every clip to 'train' and 'all', and none to 'validation' or 'test'.
    """
    clips = list_clips(data_dir, labels)
    if split == "all":
        return clips
    if training_only is None:
        training_only = is_training_only(data_dir)
    if split in SPLIT_NAMES:
        if training_only:
            return clips if split == "train" else []
        return [clip for clip in clips if partition_of(clip.speaker) == split]
    split_path = Path(split)
    if not split_path.is_file():
        raise DatasetError(f"--split {split!r} is neither one of {SPLIT_NAMES} nor a file")
    if training_only:
        raise DatasetError(f"{data_dir} is training-only (its speakers are unknown): a split file cannot select "
                           "from it; use --split train or all")
    wanted = read_split_file(split_path)
    chosen = [clip for clip in clips if clip.format_free_key in wanted]
    if not chosen:
        raise DatasetError(f"none of the {len(wanted)} clips listed in {split} is under {data_dir}")
    if len(chosen) < len(wanted):
        log.warning("%d of %d clips in %s are not under %s", len(wanted) - len(chosen), len(wanted), split, data_dir)
    return chosen


def clips_from_paths(paths: Sequence[Path | str], labels: Sequence[str]) -> list[Clip]:
    """Clip files, and every clip file under the folders, in the order given (folders sorted).

    A clip is labelled when its folder is named after one of ``labels`` (the Speech
    Commands layout); any other clip is unlabelled and is classified all the same.
    """
    known = set(labels)
    clips: list[Clip] = []
    for given in map(Path, paths):
        if given.is_dir():
            files = clip_files(given, recursive=True)
        elif given.is_file():
            files = [given]
        else:
            raise DatasetError(f"{given} is neither a clip file ({_ENDINGS}) nor a folder")
        clips.extend(Clip(path, path.parent.name if path.parent.name in known else None) for path in files)
    if not clips:
        raise DatasetError(f"no clip files ({_ENDINGS}) under {', '.join(map(str, paths))}")
    return clips


def spread_evenly(items: Sequence[T], count: int | None) -> list[T]:
    """``count`` of ``items`` spread evenly over the sequence (all of them when ``count`` is None or more).

    A sorted list of clips runs label by label and speaker by speaker, so a plain
    prefix would be one label and one or two voices.
    """
    if count is None or count >= len(items):
        return list(items)
    step = len(items) / count
    return [items[int(index * step)] for index in range(count)]


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
        chosen.extend(spread_evenly(members, per_label))
    return chosen


def load_audio(clips: Sequence[Clip], progress: bool = True) -> np.ndarray:
    """All clips as one int16 array of shape (clips, 16 000)."""
    audio = np.empty((len(clips), CLIP_SAMPLES), dtype=np.int16)
    bar = tqdm(clips, desc="reading clips", unit="clip", disable=not progress_wanted(progress))
    for index, clip in enumerate(bar):
        audio[index] = read_clip(clip.path)
    return audio


def label_indices(clips: Iterable[Clip], labels: Sequence[str]) -> np.ndarray:
    """Each clip's label as its index in ``labels``."""
    position = {label: index for index, label in enumerate(labels)}
    return np.array([position[clip.label] for clip in clips], dtype=np.int64)
