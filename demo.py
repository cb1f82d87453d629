"""The whole demo in one command: both collaboration modes on real speech.

1. **Big/Little over REST.** Starts the Big service (``big_service.py``) on a free
   local port, runs the Little client (``little_client.py``) over the test split
   with a threshold calibrated on the validation split, then stops the service.
2. **Cooperative inference over MQTT.** Starts an embedded MQTT broker, spawns one
   inference client per ensemble model, and runs the cooperative client
   (``cooperative_client.py``) over the same clips.

Both reports are printed and written as JSON under ``--report-dir``. Nothing needs
to be running beforehand; everything started here is stopped at the end::

    python demo.py                                  # finds or downloads the clips
    python demo.py --data-dir ../shared/data/speech_commands --limit 80
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Sequence

import big_service
import cooperative_client
import dataset
import little_client
from kws_model import ModelError

log = logging.getLogger("demo")

MODELS_DIR = Path(__file__).resolve().parent / "models"
ENSEMBLE = [MODELS_DIR / f"ensemble_{index}" for index in range(1, 5)]


def find_data_dir() -> Path:
    """Local clips if there are any (see ``dataset.locate_data_dir``); else download mini_speech_commands."""
    found = dataset.locate_data_dir()
    if found is not None:
        return found
    log.info("no clips found locally: downloading mini_speech_commands into %s", dataset.DEFAULT_DATA_DIR)
    return dataset.download(dataset.DEFAULT_DATA_DIR)


def run_big_little(data_dir: Path, split: str, report: Path, extra: Sequence[str]) -> dict:
    """Big service up on a free port, Little client over the clips, service down."""
    service = big_service.BigService(MODELS_DIR / "big")
    service.load()
    with big_service.start_server(service, host="127.0.0.1", port=0) as server:
        log.info("Big service listening on %s", server.url)
        status = little_client.main(
            ["--service", server.url, "--data-dir", str(data_dir), "--split", split, "--report", str(report), *extra]
        )
    if status:
        raise SystemExit(status)
    return json.loads(report.read_text())


def run_ensemble(data_dir: Path, split: str, report: Path, extra: Sequence[str]) -> dict:
    """Embedded broker, four spawned inference clients, the cooperative client."""
    status = cooperative_client.main(
        [
            "--embedded-broker",
            "--spawn",
            *map(str, ENSEMBLE),
            "--data-dir",
            str(data_dir),
            "--split",
            split,
            "--report",
            str(report),
            *extra,
        ]
    )
    if status:
        raise SystemExit(status)
    return json.loads(report.read_text())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Run both collaboration modes end to end on real speech and print their reports.",
        epilog="Every server the demo needs (the Big service, an MQTT broker, four inference clients) "
        "is started and stopped by it.",
    )
    parser.add_argument(
        "--data-dir",
        type=Path,
        help="Speech Commands folder (default: $KWS_DATA_DIR, ../shared/data/speech_commands, "
        "or data/mini_speech_commands, downloaded if missing)",
    )
    parser.add_argument(
        "--split", default="test", help="train, validation, test, all, or a split file (default: %(default)s)"
    )
    parser.add_argument("--limit", type=int, metavar="N", help="ensemble: use only N clips (a quick look)")
    parser.add_argument(
        "--report-dir", type=Path, default=Path("reports/demo"), help="where the JSON reports go (default: %(default)s)"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        data_dir = args.data_dir or find_data_dir()
        dataset.select_clips(data_dir, args.split)  # fail early, with the flag's name, on a bad folder or split
    except dataset.DatasetError as error:
        parser.error(f"--data-dir/--split: {error}")
    args.report_dir.mkdir(parents=True, exist_ok=True)
    log.info("clips from %s (split %s)", data_dir, args.split)

    print("\n=== 1. Big/Little over REST ===", flush=True)
    try:
        cascade = run_big_little(data_dir, args.split, args.report_dir / "big_little.json", [])
    except ModelError as error:
        parser.exit(2, f"error: models/big: {error}\n")
    print("\n=== 2. Cooperative inference over MQTT ===", flush=True)
    limit = ["--limit", str(args.limit)] if args.limit else []
    ensemble = run_ensemble(data_dir, args.split, args.report_dir / "ensemble.json", limit)

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
    print(f"reports in {args.report_dir}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
