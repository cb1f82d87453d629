"""Clips as the project hears them: 16-bit mono PCM at 16 kHz, one second long.

Every model, wire format and stream in the project assumes this rate; it is
defined here once. A file in any other format is an :class:`AudioError` naming
it, never a silent resample.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

#: The sample rate of Speech Commands, of the wire formats and of a live stream.
SAMPLE_RATE = 16_000
#: Samples in one clip: one second.
CLIP_SAMPLES = 16_000


class AudioError(ValueError):
    """A recording that cannot be used as it is: unreadable, or not 16-bit mono 16 kHz PCM."""


def decode_wav(data: bytes | Path | str, name: str = "clip") -> np.ndarray:
    """16-bit mono 16 kHz WAV to int16 samples, zero-padded or trimmed to 1 s."""
    source = str(data) if isinstance(data, (str, Path)) else io.BytesIO(data)
    try:
        with wave.open(source, "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        raise AudioError(f"{name}: not a readable WAV file ({error})") from error
    except OSError as error:
        raise AudioError(f"{name}: cannot be read ({error})") from error
    if rate != SAMPLE_RATE or channels != 1 or width != 2:
        raise AudioError(
            f"{name}: expected {SAMPLE_RATE} Hz mono 16-bit PCM, got {rate} Hz, {channels} channel(s), {8 * width}-bit"
        )
    return fit_length(np.frombuffer(frames, dtype="<i2").astype(np.int16), CLIP_SAMPLES)


def read_wav(path: Path | str) -> np.ndarray:
    """Decode one clip file; see :func:`decode_wav`."""
    return decode_wav(Path(path), name=str(path))


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end (or trim) to exactly ``length`` samples (Speech Commands has clips shorter than 1 s)."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    padding = [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])]
    return np.pad(audio, padding)
