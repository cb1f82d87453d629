"""The demo's third part: a stream of test speakers heard live, its detections, and how they score.

``demo.py`` calls :func:`run_stream_demo`: a short stream of the split's keywords and
other words with pauses over quiet-room noise, then noise alone, is heard by the
listener with the real Big service (started here on a free port) confirming Little's
uncertain band. Detections are printed as they happen (one JSON object a line), then
the listener's summary and the score against what was really said.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kws.listen.confirm import BigConfirmer
from kws.listen.listener import Detection
from kws.listen.params import params_from_metadata
from kws.listen.report import format_summary, listen_report
from kws.model.installed import SERVICE_MODEL
from kws.model.runtime import load_model
from kws.rest.client import BigClient
from kws.rest.service import BigService, start_server
from kws.tuning import stream_synthesis
from kws.tuning.stream_trial import listen_to

log = logging.getLogger(__name__)

#: Keywords and other words in the demo's stream (spread over the split), and its seconds of noise alone.
DEMO_KEYWORDS, DEMO_OTHERS, DEMO_NOISE_S = 24, 8, 30.0


def _print(detection: Detection) -> None:
    print(detection.to_json(), flush=True)


def run_stream_demo(data_dir: Path, models_dir: Path, split: str = "test",
                    emit: Callable[[Detection], None] = _print, big_stem: Path | None = None) -> dict[str, Any]:
    """Build the stream, start Big (``big_stem``, default the service's default Big in ``models_dir``), listen;
    returns the listener's report with ``score`` and ``summary`` added."""
    material = stream_synthesis.load_material([data_dir], stream_synthesis.other_words_dir(data_dir), split)
    material.keywords = material.keywords[:: max(1, len(material.keywords) // DEMO_KEYWORDS)][:DEMO_KEYWORDS]
    material.others = material.others[:: max(1, len(material.others) // DEMO_OTHERS)][:DEMO_OTHERS]
    level = stream_synthesis.NOISE_LEVELS_DBFS["quiet"]
    stream = stream_synthesis.build_stream(material, level, DEMO_NOISE_S, seed=7)
    little = load_model(models_dir / "little", prefer="zlib")
    params, origin = params_from_metadata(little.metadata.raw)
    service = BigService(big_stem or models_dir / SERVICE_MODEL)
    service.load()
    name = f"a {stream.seconds:.0f} s stream ({split} speakers, {level:.0f} dBFS noise)"
    with start_server(service, host="127.0.0.1", port=0, threads=2) as server, BigClient(server.url) as client:
        stats, result = listen_to(stream, little, params, BigConfirmer(client, params.big_min_score), emit, name)
        report = listen_report(stats, params, origin, name, little, server.url)
    report["stream"] = stream.description
    report["score"] = result.to_dict()
    report["summary"] = (
        f"{result.hits} of {result.keywords} keywords heard with the right label, {result.wrong} wrong, "
        f"{result.misses} missed; {result.others_fired} of {result.others} other words fired; "
        f"{result.noise_alarms} false alarms in {result.noise_s:.0f} s of noise alone, "
        f"{result.pause_alarms + result.extras} in pauses or repeated"
    )
    return report


def format_demo(report: dict[str, Any]) -> str:
    """The listener's summary and the score, for the demo's stdout."""
    return f"{format_summary(report)}\nscored: {report['summary']}"
