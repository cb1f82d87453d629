"""The audio pack as an HTTP body: the bytes the client sends are the pack the text encoder writes."""

from __future__ import annotations

import numpy as np
import pytest

from kws.wire import audio_pack


@pytest.mark.parametrize("samples", [1, 2, 3, 8000, 16_000])
def test_the_body_as_bytes_is_the_pack_as_text(samples: int) -> None:
    pcm = np.random.default_rng(samples).integers(-32768, 32767, samples, endpoint=True).astype(np.int16)
    text = audio_pack.encode_audio_pack(pcm, device="pi-kitchen", recorded_at=1_700_000_000.25)
    body = audio_pack.audio_pack_body(pcm, device="pi-kitchen", recorded_at=1_700_000_000.25)
    assert body == text.encode("utf-8")
    clip = audio_pack.decode_audio_pack(body)
    assert np.array_equal(clip.samples, pcm) and clip.device == "urn:dev:kws:pi-kitchen:"


def test_a_strided_clip_travels_in_order() -> None:
    pcm = np.arange(-500, 500, dtype=np.int16)
    strided = np.repeat(pcm, 2)[::2]  # not contiguous: the encoder cannot read it in place
    assert np.array_equal(audio_pack.decode_audio_pack(audio_pack.audio_pack_body(strided, device="pi")).samples, pcm)


def test_what_is_not_int16_pcm_is_refused() -> None:
    for wrong in (np.zeros(100, np.float32), np.zeros((2, 100), np.int16), np.zeros(100, ">i2")):
        with pytest.raises(audio_pack.AudioPackError, match="one-dimensional int16 PCM"):
            audio_pack.audio_pack_body(wrong, device="pi")
