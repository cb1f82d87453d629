"""The pretrained front end's embeddings of many clips, computed once and kept on disk.

Embedding a clip costs about 13 ms on one core, a thousand times a head's matrix
product: a head's training would spend every epoch in the front end. The front end is
frozen, so a clip's embeddings never change, and they are cached here by content: the
key is the SHA-256 of the int16 samples of every clip in the batch, with the front end's
spec, so an edited clip, another augmentation or another front end is never served a
stale entry. A cache file holds one batch as ``(clips, windows, 96)`` float32.

The cache lives in ``$KWS_CACHE_DIR``, else ``$XDG_CACHE_HOME/kws-edge-cloud``, else
``~/.cache/kws-edge-cloud``, under ``embeddings/``; deleting it only costs time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path

import numpy as np
from tqdm import tqdm

from kws.frontend.embedding import FrontEnd
from kws.util.logs import progress_wanted

log = logging.getLogger(__name__)

CACHE_VARIABLE = "KWS_CACHE_DIR"
#: Clips embedded per call of the embedding graph (their mels are still made one clip a call).
BATCH = 64


def cache_dir() -> Path:
    """Where cached embeddings go (see the module's docstring)."""
    configured = os.environ.get(CACHE_VARIABLE)
    if configured:
        return Path(configured) / "embeddings"
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "kws-edge-cloud" / "embeddings"


def to_int16(audio: np.ndarray) -> np.ndarray:
    """Float clips in [-1, 1] as the int16 samples the front end reads (rounded, clipped)."""
    return np.clip(np.rint(np.asarray(audio, np.float32) * 32768.0), -32768, 32767).astype(np.int16)


def embed_cached(front_end: FrontEnd, clips: np.ndarray, desc: str = "embedding") -> np.ndarray:
    """Embeddings of int16 clips ``(clips, samples)``: ``(clips, windows, 96)`` float32, from the cache where
    it has them, else computed (mel one clip a call, embeddings batched) and stored."""
    if clips.dtype != np.int16:
        raise ValueError(f"the front end reads int16 clips, got {clips.dtype}")
    folder = cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    spec_text = json.dumps(front_end.spec.to_dict(), sort_keys=True).encode()
    parts, hits = [], 0
    starts = range(0, len(clips), BATCH)
    for start in tqdm(starts, desc=desc, unit="batch", disable=not progress_wanted()):
        batch = np.ascontiguousarray(clips[start : start + BATCH])
        key = hashlib.sha256(spec_text + str(batch.shape).encode() + batch.tobytes()).hexdigest()
        path = folder / f"{key}.npy"
        if path.is_file():
            parts.append(np.load(path))
            hits += 1
            continue
        embeddings = front_end.embed_clips(list(batch)).astype(np.float32)
        partial = path.with_suffix(".partial.npy")
        np.save(partial, embeddings)
        partial.replace(path)  # whole or not at all: an interrupted run leaves no half-written entry
        parts.append(embeddings)
    log.info("%s: %d clips, %d of %d batches from the cache (%s)", desc, len(clips), hits, len(starts), folder)
    if not parts:
        return np.zeros((0, *front_end.spec.embedding_shape), np.float32)
    return np.concatenate(parts)
