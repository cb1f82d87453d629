"""What a costly computation made of many clips, computed once and kept on disk by content.

Training asks the same questions of the same clips run after run: the pretrained front end's
embeddings of every clip (:mod:`kws.training.embedding_cache`) or of its frozen bottom
(:mod:`kws.training.embedding_tuning`), the features of a bank of augmented variants and the
teacher's probabilities for each (:mod:`kws.training.variant_bank`,
:mod:`kws.training.distillation`). :func:`cached_batches` answers them once. The clips go in
batches; a batch's key is the SHA-256 of a tag (what, besides the clips, determines the answer:
a front end's spec, a FeatureConfig, a teacher file's sha256), the batch's shape and its int16
samples, so an edited clip, another augmentation, other features or another teacher is never
served a stale entry. A cache file holds one batch's answer as a ``.npy`` array, written
whole or not at all.

The cache lives in ``$KWS_CACHE_DIR``, else ``$XDG_CACHE_HOME/kws-edge-cloud``, else
``~/.cache/kws-edge-cloud``, one folder per kind of answer; deleting it only costs time.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kws.util.logs import progress_wanted

log = logging.getLogger(__name__)

CACHE_VARIABLE = "KWS_CACHE_DIR"


def cache_root() -> Path:
    """The folder that holds every kind of cached answer (see the module's docstring)."""
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kws-edge-cloud"


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float clips in [-1, 1] as int16 samples (rounded, clipped): what a microphone records, and what the
    cache keys read. Clips read from 16-bit files come back exactly as they were read."""
    return np.clip(np.rint(np.asarray(audio, np.float32) * 32768.0), -32768, 32767).astype(np.int16)


def cached_batches(
    clips: np.ndarray,
    tag: bytes,
    compute: Callable[[np.ndarray], np.ndarray],
    desc: str,
    folder_name: str,
    batch: int = 64,
) -> np.ndarray:
    """``compute`` of int16 ``clips`` ``(clips, samples)``, ``batch`` clips a call, concatenated along the
    first axis: from ``cache_root() / folder_name`` where it holds a batch's answer, else computed and
    stored there. ``compute`` must answer from the int16 batch it is given and ``tag`` alone; what it
    returns is stored as it is (its dtype included). ``batch`` is part of every key: keep it fixed."""
    if clips.dtype != np.int16:
        raise ValueError(f"the cache reads int16 clips, got {clips.dtype}")
    if not len(clips):
        raise ValueError(f"{desc}: no clips")
    folder = cache_root() / folder_name
    folder.mkdir(parents=True, exist_ok=True)
    parts, hits = [], 0
    starts = range(0, len(clips), batch)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress_wanted()):
        part = np.ascontiguousarray(clips[start : start + batch])
        path = folder / f"{hashlib.sha256(tag + str(part.shape).encode() + part.tobytes()).hexdigest()}.npy"
        if path.is_file():
            parts.append(np.load(path))
            hits += 1
            continue
        answer = np.asarray(compute(part))
        partial = path.with_suffix(".partial.npy")
        np.save(partial, answer)
        partial.replace(path)  # whole or not at all: an interrupted run leaves no half-written entry
        parts.append(answer)
    log.info("%s: %d clips, %d of %d batches from the cache (%s)", desc, len(clips), hits, len(starts), folder)
    return np.concatenate(parts)
