"""Sources: WAV files (with what cannot be used named, stereo mixed down), raw PCM on a byte stream."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from conftest import write_wav

from kws.listen.source import ArraySource, SourceError, StdinSource, WavSource, open_source


def read_all(source, block: int = 1600) -> np.ndarray:
    parts = []
    while (part := source.read(block)).size:
        parts.append(part)
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def test_a_wav_is_read_block_by_block(tmp_path: Path) -> None:
    samples = (np.arange(5000) % 2000 - 1000).astype(np.int16)
    source = open_source(str(write_wav(tmp_path / "a.wav", samples)))
    assert isinstance(source, WavSource)
    assert source.read(1600).size == 1600
    np.testing.assert_array_equal(np.concatenate([samples[:1600], read_all(source)]), samples)
    source.close()


def test_a_stereo_wav_is_mixed_down_to_mono(tmp_path: Path) -> None:
    left = np.full(3200, 1000, dtype=np.int16)
    right = np.full(3200, -3001, dtype=np.int16)
    path = write_wav(tmp_path / "stereo.wav", np.stack([left, right], axis=1).reshape(-1), channels=2)
    source = WavSource(path)
    np.testing.assert_array_equal(read_all(source), np.full(3200, -1000, dtype=np.int16))
    assert source.notes == ["2 channels mixed down to mono (their mean)"]


@pytest.mark.parametrize("rate", [44_100, 8_000])
def test_another_rate_is_named_with_what_to_do(tmp_path: Path, rate: int) -> None:
    path = write_wav(tmp_path / "cd.wav", np.zeros(rate, dtype=np.int16), rate=rate)
    with pytest.raises(SourceError, match=rf"{rate} Hz, 16-bit; the models hear 16000 Hz .* sox"):
        WavSource(path)


def test_what_is_not_a_wav_is_named(tmp_path: Path) -> None:
    (tmp_path / "notes.wav").write_text("not audio")
    with pytest.raises(SourceError, match="not a PCM WAV file"):
        WavSource(tmp_path / "notes.wav")
    with pytest.raises(SourceError, match="no such file"):
        WavSource(tmp_path / "missing.wav")


def test_raw_pcm_with_an_odd_byte_count_loses_only_the_half_sample() -> None:
    samples = np.array([1, -2, 300, -32768, 32767], dtype="<i2")
    source = StdinSource(io.BufferedReader(io.BytesIO(samples.tobytes() + b"\x07")))
    np.testing.assert_array_equal(read_all(source, block=2), samples)
    assert len(source.notes) == 1 and "odd byte count" in source.notes[0]


def test_a_wav_header_on_stdin_is_named() -> None:
    source = StdinSource(io.BufferedReader(io.BytesIO(b"RIFF\x24\x00\x00\x00WAVEfmt " + bytes(40))))
    with pytest.raises(SourceError, match="WAV header"):
        source.read(1600)


def test_the_microphone_says_what_is_missing() -> None:
    """Without sounddevice (an optional dependency) or without an input device: a message, not a traceback."""
    try:
        source = open_source("mic")
    except SourceError as error:
        assert "sounddevice" in str(error) or "input device" in str(error) or "PortAudio" in str(error)
    else:  # a machine with a microphone: it must give int16 samples
        assert source.read(160).dtype == np.int16
        source.close()


def test_an_array_is_a_source() -> None:
    source = ArraySource(np.arange(10, dtype=np.int16))
    assert source.read(4).tolist() == [0, 1, 2, 3] and read_all(source, 4).tolist() == [4, 5, 6, 7, 8, 9]
