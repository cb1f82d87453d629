"""Where a stream's audio comes from: a recording (WAV, or FLAC/Ogg), raw PCM on stdin, or a microphone.

Every source hands out int16 mono samples at 16 kHz in blocks of the size asked for
(the last one may be shorter; an empty block is the end). What cannot be used gets a
:class:`SourceError` that says what to do instead, never a traceback; what can be
mended is mended and noted (``notes``, logged once): a stereo WAV is mixed down to
mono, an odd byte count at the end of stdin loses its last, half sample.

The microphone needs ``sounddevice`` (and PortAudio), an optional dependency:
``pip install sounddevice``. Without it, ``arecord`` into stdin does the same job::

    arecord -f S16_LE -r 16000 -c 1 -t raw | python little_client.py --listen -
"""

from __future__ import annotations

import logging
import sys
import wave
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np

from kws.audio import SAMPLE_RATE, SOUNDFILE_SUFFIXES, AudioError, read_recording
from kws.errors import KwsError

log = logging.getLogger(__name__)

STDIN = "-"
MIC = "mic"
_BYTES_PER_SAMPLE = 2
CONVERT_HINT = "convert it first, e.g. sox IN.wav -r 16000 -c 1 -b 16 OUT.wav (or ffmpeg -i IN -ar 16000 -ac 1 OUT.wav)"


class SourceError(KwsError):
    """A stream that cannot be opened or read; the message says why and what to do."""


class AudioSource(Protocol):
    """What the listener reads from."""

    name: str
    notes: list[str]

    def read(self, count: int) -> np.ndarray:
        """Up to ``count`` int16 samples; fewer only at the end, none once it is over."""

    def close(self) -> None: ...


def _note(source: AudioSource, message: str, level: int = logging.WARNING) -> None:
    source.notes.append(message)
    log.log(level, "%s: %s", source.name, message)


class WavSource:
    """A 16 kHz, 16-bit PCM WAV file, read block by block (a long recording is never loaded whole)."""

    def __init__(self, path: Path | str) -> None:
        self.name = str(path)
        self.notes: list[str] = []
        try:
            self._wav = wave.open(str(path), "rb")
        except FileNotFoundError as error:
            raise SourceError(f"{path}: no such file") from error
        except (wave.Error, EOFError) as error:
            raise SourceError(f"{path}: not a PCM WAV file ({error}); {CONVERT_HINT}") from error
        except OSError as error:
            raise SourceError(f"{path}: cannot be read ({error})") from error
        rate, self.channels, width = self._wav.getframerate(), self._wav.getnchannels(), self._wav.getsampwidth()
        if rate != SAMPLE_RATE or width != _BYTES_PER_SAMPLE:
            self._wav.close()
            raise SourceError(
                f"{path} is {rate} Hz, {8 * width}-bit; the models hear {SAMPLE_RATE} Hz 16-bit PCM: {CONVERT_HINT}"
            )
        if self.channels > 1:
            _note(self, f"{self.channels} channels mixed down to mono (their mean)", logging.INFO)

    def read(self, count: int) -> np.ndarray:
        try:
            data = self._wav.readframes(count)
        except (wave.Error, EOFError, OSError) as error:
            raise SourceError(f"{self.name}: cannot be read further ({error})") from error
        whole = len(data) - len(data) % (_BYTES_PER_SAMPLE * self.channels)
        samples = np.frombuffer(data[:whole], dtype="<i2")
        if self.channels > 1:
            mixed = samples.reshape(-1, self.channels).astype(np.float32).mean(axis=1)
            return np.clip(np.rint(mixed), -32768, 32767).astype(np.int16)
        return samples.astype(np.int16)

    def close(self) -> None:
        self._wav.close()


class StdinSource:
    """Raw 16-bit little-endian mono PCM at 16 kHz on a byte stream (stdin), as ``arecord -t raw`` writes it."""

    def __init__(self, stream: BinaryIO | None = None) -> None:
        self.name = "stdin"
        self.notes: list[str] = []
        if stream is None:
            if sys.stdin is None or sys.stdin.isatty():
                raise SourceError(
                    "stdin must be a pipe of raw 16-bit 16 kHz mono PCM, not a terminal: "
                    "arecord -f S16_LE -r 16000 -c 1 -t raw | python little_client.py --listen -"
                )
            stream = sys.stdin.buffer
        self._stream = stream
        self._started = False

    def read(self, count: int) -> np.ndarray:
        try:
            data = self._stream.read(count * _BYTES_PER_SAMPLE)  # a buffered read waits for all of it or the end
        except OSError as error:
            raise SourceError(f"stdin cannot be read ({error})") from error
        if not self._started and data:
            self._started = True
            if data[:4] == b"RIFF":
                raise SourceError(
                    "stdin starts with a WAV header, but --listen - takes raw PCM: pass the file as --listen FILE, "
                    "or record with arecord -t raw"
                )
        if len(data) % _BYTES_PER_SAMPLE:
            _note(self, "the stream ended on an odd byte count; its last byte (half a 16-bit sample) was dropped")
            data = data[:-1]
        return np.frombuffer(data, dtype="<i2").astype(np.int16)

    def close(self) -> None:
        """stdin belongs to the process; it is left open."""


class MicSource:
    """The default (or a named) input device through ``sounddevice``, at 16 kHz mono 16-bit."""

    def __init__(self, device: str | None = None) -> None:
        self.name = f"mic:{device}" if device else MIC
        self.notes: list[str] = []
        try:
            import sounddevice
        except ImportError as error:
            raise SourceError(
                "the microphone needs the optional package sounddevice: pip install sounddevice "
                "(on Raspberry Pi OS also apt-get install libportaudio2); or pipe arecord into --listen -"
            ) from error
        except OSError as error:  # sounddevice is there but the PortAudio library is not
            raise SourceError(f"sounddevice cannot load PortAudio ({error}): apt-get install libportaudio2") from error
        self._sounddevice = sounddevice
        chosen: int | str | None = int(device) if device and device.isdigit() else device
        try:
            sounddevice.check_input_settings(device=chosen, channels=1, dtype="int16", samplerate=SAMPLE_RATE)
            self._stream = sounddevice.InputStream(device=chosen, channels=1, dtype="int16", samplerate=SAMPLE_RATE)
            self._stream.start()
        except (sounddevice.PortAudioError, ValueError) as error:
            raise SourceError(
                f"no usable input device for {SAMPLE_RATE} Hz mono 16-bit ({error}); "
                "list the devices with python -m sounddevice and pick one with --listen mic:INDEX"
            ) from error
        self._overflowed = False

    def read(self, count: int) -> np.ndarray:
        try:
            data, overflowed = self._stream.read(count)
        except self._sounddevice.PortAudioError as error:
            raise SourceError(f"{self.name} stopped ({error})") from error
        if overflowed and not self._overflowed:
            self._overflowed = True
            _note(self, "input overflowed: audio was lost because the listener fell behind")
        return np.asarray(data, dtype=np.int16).reshape(-1)

    def close(self) -> None:
        self._stream.stop()
        self._stream.close()


def open_source(spec: str) -> AudioSource:
    """``-`` is stdin, ``mic`` or ``mic:DEVICE`` the microphone, anything else a recording.

    A WAV file is read block by block with the standard library; a FLAC or Ogg file
    (:data:`kws.audio.SOUNDFILE_SUFFIXES`) is decoded whole with ``soundfile`` first.
    """
    if spec == STDIN:
        return StdinSource()
    if spec == MIC or spec.startswith(MIC + ":"):
        return MicSource(spec.partition(":")[2] or None)
    if Path(spec).suffix.lower() in SOUNDFILE_SUFFIXES:
        return open_compressed_recording(spec)
    return WavSource(spec)


def open_compressed_recording(path: Path | str) -> ArraySource:
    """A FLAC or Ogg recording, decoded whole (compressed, an hour is about 115 MB once decoded)."""
    if not Path(path).is_file():
        raise SourceError(f"{path}: no such file")
    try:
        return ArraySource(read_recording(path), name=str(path))
    except AudioError as error:
        raise SourceError(f"{error}; {CONVERT_HINT}") from error


class ArraySource:
    """Samples already in memory, as a source (the benchmark, calibration and the demo build their streams so)."""

    def __init__(self, samples: np.ndarray, name: str = "array") -> None:
        self.name = name
        self.notes: list[str] = []
        self._samples = np.asarray(samples, dtype=np.int16).reshape(-1)
        self._position = 0

    def read(self, count: int) -> np.ndarray:
        block = self._samples[self._position : self._position + count]
        self._position += block.size
        return block

    def close(self) -> None:
        """Nothing to release."""
