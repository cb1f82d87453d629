"""Labelled streams: words where the events say, pauses of at least 1 s, noise at its level; scoring by the rules."""

from __future__ import annotations

import numpy as np
import pytest

from kws.audio import SAMPLE_RATE, read_clip, read_recording
from kws.data.splits import partition_of
from kws.tuning import stream_synthesis
from kws.tuning.stream_scoring import StreamScore, cost, meets_targets, score
from kws.tuning.stream_synthesis import KEYWORD, OTHER, Event, SyntheticStream


@pytest.fixture(scope="module")
def material(data_dir, other_dir) -> stream_synthesis.Material:
    found = stream_synthesis.load_material([data_dir], other_dir, "test")
    found.keywords, found.others = found.keywords[::20], found.others[::20]
    return found


def test_material_follows_the_speaker_split_and_noise_halves(data_dir, other_dir) -> None:
    test = stream_synthesis.load_material([data_dir], other_dir, "test")
    validation = stream_synthesis.load_material([data_dir], other_dir, "validation")
    for clips, split in ((test.keywords + test.others, "test"),
                         (validation.keywords + validation.others, "validation")):
        assert clips and all(partition_of(clip.speaker) == split for clip in clips)
    keyword_labels = {clip.label for clip in test.keywords}
    assert {clip.label for clip in test.others}.isdisjoint({stream_synthesis.NOISE_FOLDER, *keyword_labels})
    for (name, second_half), (_, first_half) in zip(test.noises, validation.noises):
        whole = read_recording(other_dir / stream_synthesis.NOISE_FOLDER / name).astype(np.float32) / 32768.0
        np.testing.assert_array_equal(np.concatenate([first_half, second_half]), whole[: first_half.size
                                                                                         + second_half.size])


def test_a_stream_holds_its_events_and_noise_at_the_level(material) -> None:
    stream = stream_synthesis.build_stream(material, level_dbfs=-35.0, noise_s=20.0, seed=5)
    assert len(stream.events) == len(material.keywords) + len(material.others)
    assert {event.kind for event in stream.events} == {KEYWORD, OTHER}
    events = sorted(stream.events, key=lambda event: event.start)
    gaps = [later.start - earlier.end for earlier, later in zip(events, events[1:])]
    assert min(gaps) >= SAMPLE_RATE  # scoring windows (span + 1 s) never overlap
    assert events[-1].end + SAMPLE_RATE <= stream.noise_start and stream.noise_s == pytest.approx(20.0)
    alone = stream.samples[stream.noise_start :].astype(np.float64) / 32768
    assert 20 * np.log10(np.sqrt(np.mean(alone**2))) == pytest.approx(-35.0, abs=1.0)
    first = events[0]
    clip = read_clip(next(c for c in material.keywords + material.others if c.key == first.clip).path)
    start, end = stream_synthesis.voiced_span(clip)
    loud = stream.samples[first.start : first.end].astype(np.float64)
    assert np.sqrt(np.mean(loud**2)) > 3 * np.sqrt(np.mean((alone * 32768) ** 2))  # the word is there
    assert first.end - first.start == end - start
    again = stream_synthesis.build_stream(material, level_dbfs=-35.0, noise_s=20.0, seed=5)
    np.testing.assert_array_equal(again.samples, stream.samples)


def hand_made() -> SyntheticStream:
    second = SAMPLE_RATE
    events = [Event(KEYWORD, "yes", 1 * second, 2 * second, "a"), Event(KEYWORD, "no", 4 * second, 5 * second, "b"),
              Event(KEYWORD, "up", 7 * second, 8 * second, "c"), Event(OTHER, "cat", 10 * second, 11 * second, "d"),
              Event(OTHER, "dog", 13 * second, 14 * second, "e")]
    return SyntheticStream(np.zeros(3600 * second // 10, dtype=np.int16), events, 20 * second, -40.0)


def test_scoring_follows_its_rules() -> None:
    second = SAMPLE_RATE
    detections = [
        (int(1.5 * second), "yes"),  # a hit (inside the word)
        (int(2.9 * second), "yes"),  # an extra: same word again, 0.9 s after its end
        (int(5.5 * second), "up"),  # wrong label for "no"
        (int(6.2 * second), "up"),  # a pause alarm: more than 1 s after "no", before "up"
        (int(11.5 * second), "go"),  # the other word "cat" fires
        (30 * second, "go"), (40 * second, "left"),  # two false alarms in the noise alone
    ]
    result = score(hand_made(), detections)
    assert result == StreamScore(keywords=3, hits=1, wrong=1, misses=1, extras=1, others=2, others_fired=1,
                                 noise_alarms=2, pause_alarms=1, noise_s=340.0, detections=7)
    assert result.false_alarms_per_hour == pytest.approx(2 / (340 / 3600))
    assert result.other_fire_rate == 0.5 and result.miss_rate == pytest.approx(2 / 3)
    assert not meets_targets(result)
    perfect = score(hand_made(), [(int(1.5 * second), "yes"), (int(4.5 * second), "no"), (int(8.9 * second), "up")])
    assert perfect.hit_rate == 1.0 and cost(perfect) == 0.0 and meets_targets(perfect)
    assert cost(result) > cost(perfect)
