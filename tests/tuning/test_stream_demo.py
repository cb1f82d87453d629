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


def test_the_demo_serves_the_network_big_when_the_front_end_cannot_be_used(models_dir, tmp_path, caplog) -> None:
    """A front end whose files do not hash as the default Big's metadata says is refused (kws.frontend.files):
    the demo then serves models/big and says why, rather than stopping."""
    import importlib.util
    import json
    import shutil

    spec = importlib.util.spec_from_file_location("demo_script", models_dir.parent / "demo.py")
    demo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(demo)
    for path in models_dir.glob(f"{demo.SERVICE_MODEL}.*"):
        shutil.copy(path, tmp_path)
    assert demo.demo_big(tmp_path) == tmp_path / demo.SERVICE_MODEL  # the installed front end checks out
    metadata = json.loads((tmp_path / f"{demo.SERVICE_MODEL}.json").read_text())
    metadata["front_end"]["mel_sha256"] = "0" * 64
    (tmp_path / f"{demo.SERVICE_MODEL}.json").write_text(json.dumps(metadata))
    with caplog.at_level("WARNING"):
        assert demo.demo_big(tmp_path) == tmp_path / "big"
    assert "pretrained front end cannot be used" in caplog.text and "requirements/server.txt" in caplog.text
