"""Big confirms, corrects or rejects; when it cannot answer, Little's detection stands."""

from __future__ import annotations

import numpy as np
import pytest

from kws.audio import read_clip
from kws.listen.confirm import CONFIRMED, CORRECTED, FAILED, REJECTED, UNAVAILABLE, BigConfirmer, Verdict, judge
from kws.listen.detector import Candidate
from kws.listen.listener import BIG, LITTLE, Trace, settle
from kws.rest.client import BigClient
from kws.rest.service import BigService, start_server
from kws.util.net import free_tcp_port

LABELS = ("_silence_", "_unknown_", "yes", "no")


@pytest.mark.parametrize(
    ("probabilities", "min_score", "outcome", "label"),
    [
        ([0.0, 0.1, 0.8, 0.1], 0.5, CONFIRMED, "yes"),
        ([0.0, 0.1, 0.1, 0.8], 0.5, CORRECTED, "no"),
        ([0.0, 0.6, 0.3, 0.1], 0.2, REJECTED, None),  # Big says it is another word
        ([0.7, 0.0, 0.3, 0.0], 0.2, REJECTED, None),  # ... or silence
        ([0.0, 0.0, 0.45, 0.55], 0.6, REJECTED, None),  # not sure enough of any keyword
    ],
)
def test_judge(probabilities, min_score: float, outcome: str, label: str | None) -> None:
    verdict = judge("yes", LABELS, np.array(probabilities), min_score)
    assert (verdict.outcome, verdict.label) == (outcome, label)


def test_settle_reports_big_s_word_or_little_s() -> None:
    candidate = Candidate(end=32_000, index=2, score=0.8)
    asked = Trace(candidate, "yes", asked_big=True)
    asked.verdict = judge("yes", LABELS, np.array([0.0, 0.0, 0.1, 0.9]), 0.5)
    assert settle(asked).to_dict() == {"time_s": 2.0, "label": "no", "score": 0.9, "decided_by": BIG}
    asked.verdict = judge("yes", LABELS, np.array([0.0, 0.9, 0.1, 0.0]), 0.5)
    assert settle(asked) is None
    for verdict in (None, Verdict(UNAVAILABLE), Verdict(FAILED)):
        trace = Trace(candidate, "yes", asked_big=verdict is not None, verdict=verdict)
        assert settle(trace).to_dict() == {"time_s": 2.0, "label": "yes", "score": 0.8, "decided_by": LITTLE}


def test_the_real_service_confirms_and_its_absence_leaves_little_standing(shipped_model, sure_clips) -> None:
    service = BigService(shipped_model("big"))
    service.load()
    clip = sure_clips[0]
    window = read_clip(clip.path)
    with start_server(service, port=0, threads=2) as server, BigClient(server.url, retries=0) as client:
        confirmer = BigConfirmer(client, min_score=0.5)
        verdict = confirmer.confirm(clip.label, window)
        assert verdict.outcome in (CONFIRMED, CORRECTED) and verdict.label is not None and verdict.decided
        assert 2_000 < verdict.body_bytes < verdict.wire_bytes and verdict.seconds > 0
        assert confirmer.confirm(clip.label, window[:10]).outcome in (CONFIRMED, CORRECTED, REJECTED)
        too_long = np.concatenate([window, window])  # the service takes at most 1 s: a 422, our bug, logged
        assert confirmer.confirm(clip.label, too_long).outcome == FAILED
    with BigClient(f"http://127.0.0.1:{free_tcp_port()}", retries=0, timeout=1) as nobody:
        confirmer = BigConfirmer(nobody, 0.5)
        verdict = confirmer.confirm(clip.label, window)
        assert verdict.outcome == UNAVAILABLE and not verdict.decided and verdict.body_bytes == 0
        assert confirmer.confirm(clip.label, window).outcome == UNAVAILABLE and confirmer.not_sent == 1
        impatient = BigConfirmer(nobody, 0.5, retry_after_s=0.0)
        assert [impatient.confirm(clip.label, window).outcome for _ in range(2)] == [UNAVAILABLE] * 2
        assert impatient.not_sent == 0
