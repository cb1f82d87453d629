"""Clips as the project hears them: 16-bit mono PCM at 16 kHz, one second long.

Every model, wire format and stream in the project assumes this rate; it is
defined here once, and so is the one way every tool reads a clip file,
:func:`read_clip`:

- **WAV** is read with the standard library's ``wave``: all a Raspberry Pi needs
  for its own recordings, stdin and the microphone.
- **FLAC, Ogg Opus and Ogg Vorbis** are read with ``soundfile`` (libsndfile, a
  small and common library with wheels for x86-64 and 64-bit Arm), imported only
  when such a file is met, so a Pi that reads WAV never needs it.

A file that cannot be used as it is (another rate, stereo, 8-bit, corrupt, empty)
is an :class:`AudioError` naming it, never a silent resample or mix-down.
"""

from __future__ import annotations

import io
import wave
from pathlib import Path

import numpy as np

from kws.errors import KwsError

#: The sample rate of Speech Commands, of the wire formats and of a live stream.
SAMPLE_RATE = 16_000
#: Samples in one clip: one second.
CLIP_SAMPLES = 16_000

#: File endings read with the standard library.
WAV_SUFFIXES = (".wav",)
#: File endings read with ``soundfile``: lossless FLAC, and Ogg with Opus or Vorbis inside.
SOUNDFILE_SUFFIXES = (".flac", ".opus", ".ogg", ".oga")
#: Every file ending that is listed as a clip, in a dataset folder or a folder given to a tool.
CLIP_SUFFIXES = WAV_SUFFIXES + SOUNDFILE_SUFFIXES
#: libsndfile's codings that give 16-bit samples without losing any: 16-bit PCM, and the
#: lossy codecs, which have no bit depth of their own and are decoded to 16 bits here.
_SOUNDFILE_SUBTYPES = {"PCM_16": "16-bit", "OPUS": "Opus", "VORBIS": "Vorbis"}
#: What :class:`AudioError` messages ask for.
EXPECTED = f"{SAMPLE_RATE} Hz mono 16-bit PCM"


class AudioError(KwsError, ValueError):
    """A recording that cannot be used as it is: unreadable, empty, or not 16-bit mono 16 kHz."""


def is_clip_file(path: Path | str) -> bool:
    """Whether ``path`` is named like a clip this module reads (:data:`CLIP_SUFFIXES`, any case)."""
    return Path(path).suffix.lower() in CLIP_SUFFIXES


def clip_files(folder: Path | str, recursive: bool = False) -> list[Path]:
    """The clip files in ``folder`` (and below it, with ``recursive``), sorted; WAV, FLAC and Ogg mixed."""
    root = Path(folder)
    candidates = root.rglob("*") if recursive else root.glob("*")
    return sorted(path for path in candidates if is_clip_file(path) and path.is_file())


def decode_wav(data: bytes | Path | str, name: str = "clip") -> np.ndarray:
    """16-bit mono 16 kHz WAV (bytes or a file) to one clip of int16 samples (see :func:`read_clip`)."""
    return _one_clip(_decode_wav(data, name), name)


def read_recording(path: Path | str) -> np.ndarray:
    """A whole recording of any length as int16 samples; WAV, FLAC or Ogg by the file's ending.

    Noise recordings and long streams are read with this; clips with :func:`read_clip`.
    """
    name = str(path)
    if Path(path).suffix.lower() in SOUNDFILE_SUFFIXES:
        return _decode_with_soundfile(Path(path), name)
    return _decode_wav(Path(path), name)


def read_clip(path: Path | str) -> np.ndarray:
    """One clip file as int16 samples, zero-padded to 1 s (see :func:`read_recording`).

    A recording longer than a clip is an :class:`AudioError` that points at ``--listen``:
    cut to its first second it would be classified on whatever that second holds.
    """
    return _one_clip(read_recording(path), str(path))


def _one_clip(samples: np.ndarray, name: str) -> np.ndarray:
    if samples.size > CLIP_SAMPLES:
        raise AudioError(
            f"{name}: {samples.size / SAMPLE_RATE:.2f} s long, and a clip is at most {CLIP_SAMPLES / SAMPLE_RATE:g} s: "
            f"spot keywords in a longer recording with little_client.py --listen {name}"
        )
    return fit_length(samples, CLIP_SAMPLES)


def fit_length(audio: np.ndarray, length: int) -> np.ndarray:
    """Zero-pad at the end (or trim) to exactly ``length`` samples (Speech Commands has clips shorter than 1 s)."""
    if audio.shape[-1] >= length:
        return audio[..., :length]
    padding = [(0, 0)] * (audio.ndim - 1) + [(0, length - audio.shape[-1])]
    return np.pad(audio, padding)


def _decode_wav(data: bytes | Path | str, name: str) -> np.ndarray:
    source = str(data) if isinstance(data, (str, Path)) else io.BytesIO(data)
    try:
        with wave.open(source, "rb") as wav:
            rate, channels, width = wav.getframerate(), wav.getnchannels(), wav.getsampwidth()
            frames = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as error:
        reason = str(error) or "empty or cut short"
        raise AudioError(f"{name}: not a readable WAV file ({reason})") from error
    except OSError as error:
        raise AudioError(f"{name}: cannot be read ({error.strerror or error})") from error
    if rate != SAMPLE_RATE or channels != 1 or width != 2:
        raise AudioError(f"{name}: expected {EXPECTED}, got {rate} Hz, {channels} channel(s), {8 * width}-bit")
    return _non_empty(np.frombuffer(frames, dtype="<i2").astype(np.int16), name)


def _decode_with_soundfile(path: Path, name: str) -> np.ndarray:
    try:
        import soundfile
    except ImportError as error:  # the Pi's runtime need not have it: say how to get it
        raise AudioError(
            f"{name}: reading {path.suffix} files needs the soundfile package (pip install soundfile); "
            "WAV files need nothing more"
        ) from error
    if not path.is_file():  # libsndfile would only say "System error"
        raise AudioError(f"{name}: cannot be read (no such file)")
    try:
        with soundfile.SoundFile(str(path)) as sound:
            rate, channels, subtype = sound.samplerate, sound.channels, sound.subtype
            if rate != SAMPLE_RATE or channels != 1 or subtype not in _SOUNDFILE_SUBTYPES:
                coding = _SOUNDFILE_SUBTYPES.get(subtype) or _describe_subtype(subtype)
                raise AudioError(
                    f"{name}: expected {EXPECTED}, got {rate} Hz, {channels} channel(s), {coding} ({sound.format})"
                )
            samples = sound.read(dtype="int16", always_2d=False)
    except soundfile.SoundFileError as error:
        reason = getattr(error, "error_string", None) or str(error)  # libsndfile's words, without the path again
        raise AudioError(f"{name}: not a readable {path.suffix.lstrip('.').upper()} file ({reason})") from error
    except OSError as error:
        raise AudioError(f"{name}: cannot be read ({error.strerror or error})") from error
    return _non_empty(np.ascontiguousarray(samples, dtype=np.int16), name)


def _describe_subtype(subtype: str) -> str:
    """libsndfile's name for a coding, in the words of the error messages (``PCM_S8`` -> ``8-bit``)."""
    digits = "".join(character for character in subtype if character.isdigit())
    return f"{digits}-bit" if subtype.startswith("PCM") and digits else subtype


def _non_empty(samples: np.ndarray, name: str) -> np.ndarray:
    """A recording with no samples is an error: padded to a second of zeros it would still be classified."""
    if samples.size == 0:
        raise AudioError(f"{name}: holds no audio (0 samples)")
    return samples
