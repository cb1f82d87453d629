"""The mel pack: the Pi's front-end frames to a Big on the pretrained embedding, and every way it can be wrong.

What must hold: the receiver gets the frames back within the int8 step, the padding rows
that never travel come back exactly, a pack for another front end is refused by name, and
every malformed pack is a MelPackError that says what is wrong.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from conftest import REPO_ROOT

from kws.frontend.mel import clip_log_mel
from kws.frontend.quantize import MAX_ERROR_DB
from kws.frontend.spec import FrontEndSpec
from kws.wire import mel_pack, senml
from kws.wire.mel_pack import FrontEndMismatch, MelPackError, is_mel_pack, mel_from_records, mel_pack_body

SPEC = FrontEndSpec()


def clip(seed: int = 0, loudness: float = 3000.0) -> np.ndarray:
    """A second of a word-like burst: noise shaped by an envelope, so frames differ and the edges are quiet."""
    rng = np.random.default_rng(seed)
    envelope = np.exp(-(((np.arange(16_000) - 8_000) / 2_500.0) ** 2))
    return np.clip(rng.normal(size=16_000) * loudness * envelope, -32768, 32767).astype(np.int16)


def records(body: bytes) -> list[dict]:
    return senml.loads(body)


def test_frames_come_back_within_half_a_step_and_the_padding_exactly() -> None:
    frames = clip_log_mel(clip(), SPEC)
    body = mel_pack_body("pi-7", frames, SPEC, sent_at=1_795_465_000.5)
    message = mel_from_records(records(body), SPEC)
    assert message.clip_id == "pi-7" and message.sent_at == pytest.approx(1_795_465_000.5)
    assert message.frames.shape == SPEC.mel_shape == (147, 32)
    assert np.abs(message.frames - frames).max() <= MAX_ERROR_DB + 1e-4
    first, end = SPEC.clip_rows
    np.testing.assert_allclose(message.frames[:first], frames[:first], atol=1e-4)  # rebuilt, never sent
    np.testing.assert_allclose(message.frames[end:], frames[end:], atol=1e-4)


def test_only_the_clip_frames_travel() -> None:
    """103 of 147 rows: what a Pi sends is about a third smaller than the whole frames would be."""
    pack = json.loads(mel_pack_body("pi-7", clip_log_mel(clip(), SPEC), SPEC))
    assert pack[1] == {"n": "shape", "vs": "103x32"} and SPEC.clip_rows == (22, 125)
    assert len(senml.decode_data(pack[0]["vd"])) == 103 * 32
    assert is_mel_pack(records(json.dumps(pack).encode()))


def test_a_quiet_clip_rebuilds_its_padding_at_the_power_floor() -> None:
    """Below -20 dB the padding sits at the -100 dB floor, not 80 dB under the maximum."""
    frames = clip_log_mel(clip(loudness=2.0), SPEC)
    assert frames.max() < -20
    message = mel_from_records(records(mel_pack_body("pi-7", frames, SPEC)), SPEC)
    np.testing.assert_allclose(message.frames[:22], -100.0, atol=1e-3)


def test_a_pack_for_another_front_end_is_refused_by_name() -> None:
    other = dataclasses.replace(SPEC, mel_offset=3.0)
    body = mel_pack_body("pi-7", clip_log_mel(clip(), other), other)
    with pytest.raises(FrontEndMismatch, match=f"made for front end '{other.fingerprint}'.*{SPEC.fingerprint}"):
        mel_from_records(records(body), SPEC)


def test_the_examples_name_the_default_front_end() -> None:
    """The pack drawn in the module's docstring and in docs/wire-formats.md carries today's fingerprint, so a
    field added to the spec (which changes it) cannot leave a stale one there."""
    example = f'{{"n":"front_end","vs":"{SPEC.fingerprint}"}}'
    assert example in mel_pack.__doc__
    assert example in (REPO_ROOT / "docs" / "wire-formats.md").read_text()


def _broken(change) -> list[dict]:
    pack = json.loads(mel_pack_body("pi-7", clip_log_mel(clip(), SPEC), SPEC))
    change(pack)
    return records(json.dumps(pack).encode())


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda p: p[1].update(vs="147x32"), "shape 147x32; this front end's clip frames are 103x32"),
        (lambda p: p[1].update(vs="lots"), "is not '<frames>x<features>'"),
        (lambda p: p[0].update(vd=p[0]["vd"][:-8]), "mel holds"),
        (lambda p: p[0].update(vd="not base64!"), "mel: "),
        (lambda p: p[0].pop("vd") and p[0].update(v=1), "must carry the frames as a data value"),
        (lambda p: p[3].update(v=1e6), "is not a clip's maximum"),
        (lambda p: p[3].pop("v") and p[3].update(vs="-20"), "must carry a number value 'v'"),
        (lambda p: p.pop(3), "pack has no 'urn:kws:clip:pi-7:top' record"),
        (lambda p: p.pop(2), "pack has no 'urn:kws:clip:pi-7:front_end' record"),
        (lambda p: p[2].pop("vs") and p[2].update(v=7), "must carry a string"),
        (lambda p: p[0].update(bn="urn:kws:clip:pi:7:"), "clip id in the pack's base name 'pi:7'"),
        (lambda p: p.append({"bn": "urn:kws:clip:other:", "n": "mel", "vd": "AA"}), "exactly one"),
    ],
)
def test_a_malformed_pack_says_what_is_wrong(change, complaint: str) -> None:
    with pytest.raises(MelPackError, match=complaint.replace("(", r"\(").replace(")", r"\)")):
        mel_from_records(_broken(change), SPEC)


def test_frames_of_another_shape_are_refused_when_made() -> None:
    with pytest.raises(MelPackError, match="do not match the front end's"):
        mel_pack_body("pi-7", np.zeros((100, 32), np.float32), SPEC)
