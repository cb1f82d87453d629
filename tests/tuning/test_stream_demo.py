"""The demo's third part: a stream heard with the real Big service, its detections and its score."""

from __future__ import annotations

from kws.tuning.stream_demo import DEMO_KEYWORDS, format_demo, run_stream_demo


def test_the_demo_stream_reports_what_it_printed(data_dir, models_dir) -> None:
    printed = []
    report = run_stream_demo(data_dir, models_dir, "test", emit=printed.append)
    assert report["detections"] == len(printed) and report["big_service"].startswith("http://127.0.0.1:")
    assert [event["reported"] for event in report["events"] if event["reported"]] == [d.to_dict() for d in printed]
    assert report["score"]["keywords"] == DEMO_KEYWORDS
    assert report["big"]["requests"] == sum(event["asked_big"] for event in report["events"])
    text = format_demo(report)
    assert "listened to" in text and f"of {DEMO_KEYWORDS} keywords heard with the right label" in text


def test_ctrl_c_during_the_demo_stops_with_what_finished(data_dir, tmp_path) -> None:
    """Interrupted in its first part, the demo prints that part's summary, writes its report, stops its
    Big service and says where the reports are: no traceback, no second part."""
    import json

    from conftest import interrupt_script

    done = interrupt_script("demo.py", "--data-dir", str(data_dir), "--split", "all", "--report-dir", str(tmp_path),
                            once="Big service listening on", timeout=120)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "=== 2." not in done.stdout
    assert f"interrupted: the parts that finished are in {tmp_path}/" in done.stdout
    assert json.loads((tmp_path / "big_little.json").read_text())["interrupted"]
