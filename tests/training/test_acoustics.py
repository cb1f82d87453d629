"""Each microphone-and-room change does what it says to a known signal: gain, length, SNR, band, pitch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("audiomentations", reason="training requirements (requirements/training.txt) not installed")

from kws.training import acoustics  # noqa: E402
from kws.training.augment import AugmentConfig, augment_audio, change_acoustics, change_gain  # noqa: E402
from kws.training.changes import CHANGES, ChangeContext, apply_change  # noqa: E402
from kws.training.non_keywords import NOISE_PARTS, NoiseBank  # noqa: E402

RATE = 16_000


def tone(frequency: float, amplitude: float = 0.3, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (amplitude * np.sin(2 * np.pi * frequency * t)).astype(np.float32)


def level_db(signal: np.ndarray) -> float:
    return 10 * np.log10(np.mean(signal.astype(np.float64) ** 2) + 1e-20)


def dominant_frequency(signal: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(signal * np.hanning(len(signal)), n=8 * len(signal)))
    return float(np.argmax(spectrum) * RATE / (8 * len(signal)))


@pytest.fixture(scope="module")
def noise_bank(tmp_path_factory: pytest.TempPathFactory) -> NoiseBank:
    """A bank of two known recordings: white noise and a 50 Hz hum, 10 s each."""
    import wave

    folder = tmp_path_factory.mktemp("noise")
    rng = np.random.default_rng(0)
    recordings = {"white": rng.normal(0, 0.1, 10 * RATE), "hum": 0.2 * np.sin(np.arange(10 * RATE) / 50)}
    for name, samples in recordings.items():
        with wave.open(str(folder / f"{name}.wav"), "wb") as wav:
            wav.setnchannels(1), wav.setsampwidth(2), wav.setframerate(RATE)
            wav.writeframes((np.clip(samples, -1, 1) * 32767).astype("<i2").tobytes())
    return NoiseBank.load(folder, "train")


def test_band_limit_cuts_outside_the_band_and_keeps_inside() -> None:
    for frequency, low, high, kept in [(100, 300, 3400, False), (1000, 300, 3400, True), (6000, 300, 3400, False),
                                       (1000, 200, None, True), (150, 400, None, False), (7000, None, 4000, False)]:
        clip = tone(frequency)
        change = level_db(acoustics.band_limit(clip, low, high)[4000:]) - level_db(clip[4000:])
        assert (abs(change) < 1.0) if kept else (change < -12.0), (frequency, low, high, change)
        assert len(acoustics.band_limit(clip, low, high)) == len(clip)


@pytest.mark.parametrize("semitones", [-2.0, 2.0])
def test_pitch_shift_moves_a_tone_by_its_semitones_at_the_same_length(semitones: float) -> None:
    shifted = acoustics.pitch_shift(tone(440.0), semitones)
    assert len(shifted) == RATE
    assert dominant_frequency(shifted[2000:-2000]) == pytest.approx(440.0 * 2 ** (semitones / 12), rel=0.02)


@pytest.mark.parametrize("factor", [0.9, 1.1])
def test_speed_changes_pitch_and_keeps_the_length(factor: float) -> None:
    faster = acoustics.change_speed_exactly(tone(440.0), factor)
    assert len(faster) == RATE
    assert dominant_frequency(faster[:12000]) == pytest.approx(440.0 * factor, rel=0.01)


def test_clipping_flattens_the_asked_share_of_samples() -> None:
    clipped = acoustics.clip_distortion(tone(440.0), 10.0)
    flat = np.isclose(np.abs(clipped), np.abs(clipped).max(), atol=1e-6)
    assert flat.mean() == pytest.approx(0.10, abs=0.02)


def test_a_room_keeps_the_word_in_place_and_adds_a_tail() -> None:
    rooms = acoustics.RoomBank.make(seed=5, count=2)
    click = np.zeros(RATE, np.float32)
    click[4000] = 0.5
    for size in acoustics.ROOM_SIZES:
        response = rooms.pick(np.random.default_rng(0), size)
        assert np.argmax(np.abs(response)) <= 8 and np.abs(response).max() == pytest.approx(1.0)
        heard = acoustics.reverberate(click, response)
        assert len(heard) == RATE
        assert 4000 <= np.argmax(np.abs(heard)) <= 4008, size  # the direct sound, where the click was
        assert np.abs(heard).max() == pytest.approx(0.5, rel=1e-3)  # at the same level
        assert np.sum(heard[4100:] ** 2) > 1e-3 * 0.25  # and the room's reflections after it
    small, large = (np.mean([len(r) for r in rooms.responses[size]]) for size in ("small", "large"))
    assert large > small  # bigger rooms ring longer


def test_noise_is_mixed_at_the_asked_snr(noise_bank: NoiseBank) -> None:
    clip = tone(440.0)
    for snr in (0.0, 10.0, 20.0):
        noisy = noise_bank.mix(clip, snr, np.random.default_rng(1))
        assert level_db(clip) - level_db(noisy - clip) == pytest.approx(snr, abs=0.05)


def test_noise_recordings_are_split_in_time_without_overlap(noise_bank: NoiseBank) -> None:
    assert [len(r) for r in noise_bank.recordings] == [8 * RATE, 8 * RATE]  # 80 % of 10 s each
    starts_and_ends = sorted(NOISE_PARTS.values())
    assert all(end == next_start for (_, end), (next_start, _) in zip(starts_and_ends, starts_and_ends[1:]))


def test_silence_clips_are_one_second_at_the_asked_gains(noise_bank: NoiseBank) -> None:
    silence = noise_bank.silence(50, np.random.default_rng(2), gain_db=(-40.0, -20.0))
    assert silence.shape == (50, RATE) and silence.dtype == np.float32
    loudest = max(level_db(r) for r in noise_bank.recordings)
    assert all(level_db(clip) <= loudest - 19.0 for clip in silence)


def test_gain_range_can_be_asymmetric() -> None:
    clips = np.stack([tone(440.0)] * 200)
    changed = change_gain(clips, 6.0, np.random.default_rng(3), min_gain_db=-24.0)
    gains = [level_db(c) - level_db(clips[0]) for c in changed]
    assert -24.01 <= min(gains) < -18.0 and 0.0 < max(gains) <= 6.01


def test_acoustic_augmentation_is_deterministic_and_off_by_default(noise_bank: NoiseBank) -> None:
    clips = np.stack([tone(440.0), tone(880.0)] * 4)
    config = AugmentConfig(pitch_probability=0.5, pitch_semitones=2.0, room_probability=0.5, background_probability=0.8,
                           band_limit_probability=0.5, dc_offset_probability=0.5, clipping_probability=0.5)
    first = augment_audio(clips, config, RATE, np.random.default_rng(4), noise_bank)
    again = augment_audio(clips, config, RATE, np.random.default_rng(4), noise_bank)
    np.testing.assert_array_equal(first, again)
    assert first.shape == clips.shape and first.dtype == np.float32 and np.abs(first).max() <= 1.0
    assert change_acoustics(clips, AugmentConfig(), np.random.default_rng(4), None) is clips
    with pytest.raises(ValueError, match="NoiseBank"):
        change_acoustics(clips, config, np.random.default_rng(4), None)


def test_to_dict_of_older_configs_is_unchanged() -> None:
    assert set(AugmentConfig().to_dict()) == {
        "time_shift_ms", "speed_range", "gain_db", "noise_probability", "noise_snr_db",
        "time_masks", "time_mask_frames", "frequency_masks", "frequency_mask_bins",
    }
    assert AugmentConfig(room_probability=0.4).to_dict()["room_probability"] == 0.4


def test_bench_changes_are_deterministic_int16_and_do_what_they_say(noise_bank: NoiseBank) -> None:
    audio = (np.stack([tone(440.0), tone(1000.0)]) * 32768).astype(np.int16)
    context = ChangeContext(noise_bank, acoustics.RoomBank.make(seed=5, count=2))
    by_name = {change.name: change for change in CHANGES}
    for change in CHANGES:
        once, twice = apply_change(change, audio, context), apply_change(change, audio, context)
        assert once.dtype == np.int16 and once.shape == audio.shape, change.name
        np.testing.assert_array_equal(once, twice)
    floats = audio.astype(np.float64) / 32768
    quieter = apply_change(by_name["quieter 20 dB"], audio, context) / 32768
    assert level_db(quieter[0]) - level_db(floats[0]) == pytest.approx(-20.0, abs=0.05)
    offset = apply_change(by_name["DC offset 0.1"], audio, context) / 32768
    assert offset.mean() - floats.mean() == pytest.approx(0.1, abs=1e-3)
    noisy = apply_change(by_name["noise 10 dB"], audio, context) / 32768
    assert level_db(floats[1]) - level_db(noisy[1] - floats[1]) == pytest.approx(10.0, abs=0.1)
    np.testing.assert_array_equal(apply_change(by_name["none"], audio, context), audio)


def test_noise_dir_without_recordings_is_an_error(tmp_path: Path) -> None:
    from kws.data import DatasetError

    with pytest.raises(DatasetError, match="no noise recordings"):
        NoiseBank.load(tmp_path, "test")
