"""The demo's third part: a stream heard with the real Big service, its detections and its score."""

from __future__ import annotations

from kws.listen.demo import DEMO_KEYWORDS, format_demo, run_stream_demo


def test_the_demo_stream_reports_what_it_printed(data_dir, models_dir) -> None:
    printed = []
    report = run_stream_demo(data_dir, models_dir, "test", emit=printed.append)
    assert report["detections"] == len(printed) and report["big_service"].startswith("http://127.0.0.1:")
    assert [event["reported"] for event in report["events"] if event["reported"]] == [d.to_dict() for d in printed]
    assert report["score"]["keywords"] == DEMO_KEYWORDS
    assert report["big"]["requests"] == sum(event["asked_big"] for event in report["events"])
    text = format_demo(report)
    assert "listened to" in text and f"of {DEMO_KEYWORDS} keywords heard with the right label" in text
