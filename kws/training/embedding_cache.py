"""The pretrained front end's embeddings of many clips, computed once and kept on disk.

Embedding a clip costs about 13 ms on one core, a thousand times a head's matrix
product: a head's training would spend every epoch in the front end. The front end is
frozen, so a clip's embeddings never change, and they are cached here by content
(:mod:`kws.training.content_cache`): the key is the SHA-256 of the int16 samples of every
clip in the batch, with the front end's spec, so an edited clip, another augmentation or
another front end is never served a stale entry. A cache file holds one batch as
``(clips, windows, 96)`` float32, under ``embeddings/`` in the cache folder
(:func:`~kws.training.content_cache.cache_root`); deleting it only costs time.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from kws.frontend.embedding import FrontEnd
from kws.training.content_cache import cache_root, cached_batches

#: Clips embedded per call of the embedding graph (their mels are still made one clip a call).
BATCH = 64
FOLDER = "embeddings"


def cache_dir() -> Path:
    """Where cached embeddings go (see the module's docstring)."""
    return cache_root() / FOLDER


def embed_cached(front_end: FrontEnd, clips: np.ndarray, desc: str = "embedding") -> np.ndarray:
    """Embeddings of int16 clips ``(clips, samples)``: ``(clips, windows, 96)`` float32, from the cache where
    it has them, else computed (mel one clip a call, embeddings batched) and stored."""
    if clips.dtype != np.int16:
        raise ValueError(f"the front end reads int16 clips, got {clips.dtype}")
    if not len(clips):
        return np.zeros((0, *front_end.spec.embedding_shape), np.float32)
    spec_text = json.dumps(front_end.spec.to_dict(), sort_keys=True).encode()
    return cached_batches(clips, spec_text, lambda batch: front_end.embed_clips(list(batch)).astype(np.float32),
                          desc, FOLDER, BATCH)
