"""``little_client.py --listen SOURCE``: the flags of the always-listening mode and the run behind them.

The entry script only adds :func:`add_listen_arguments` to its parser and hands over
to :func:`run_listen` when :func:`wants_listen`; the flags, their checks, the wiring
and the messages are here. ``--model``, ``--report`` and the Big service's flags
(:mod:`kws.cli.big_client_flags`) are the script's own and mean the same here.

Output: one JSON object per detection per line on stdout, flushed as it happens;
logs and, at the end (or on Ctrl-C), the summary on stderr; with ``--report``, JSON.

When a run ends, and with which exit status (what a supervisor such as systemd acts on):

* a WAV file that ends has been heard: status 0;
* stdin that ends is, by default, the end of a stream someone piped in (a recording): 0;
  with ``--live`` the stream is live audio that should never end (``arecord`` piped in
  under systemd), so its end means the recorder died or the device went away: one
  error line, status 1, and ``Restart=on-failure`` starts the listener again;
* a source that fails while being read (a microphone unplugged, a read error): one
  error line, status 1, with or without ``--live``;
* SIGTERM or Ctrl-C (a service being stopped): the summary, status 0.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from kws.errors import KwsError, blame
from kws.listen.confirm import BigConfirmer
from kws.listen.listener import Detection, Listener, StopListening
from kws.listen.params import ListenParams, ParamsError, params_from_metadata, with_overrides
from kws.listen.report import format_summary, listen_report
from kws.listen.source import MIC, STDIN, SourceError, open_source
from kws.listen.stream import check_streamable
from kws.model.metadata import metadata_path
from kws.model.runtime import load_model
from kws.reports import write_json_report
from kws.rest.client import BigClient, BigClientSettings

log = logging.getLogger(__name__)

#: Flags that only mean something with --listen (dest -> flag).
LISTEN_FLAGS = {
    "listen_threshold": "--detect-threshold", "smoothing": "--smoothing", "suppress": "--suppress",
    "confirm_below": "--confirm-below", "big_min_score": "--big-min-score", "hop_ms": "--hop-ms",
    "little_only": "--little-only", "live": "--live",
}
#: The clip-mode flags that make no sense on a stream.
CLIP_FLAGS = {"threshold": "--threshold", "data_dir": "--data-dir", "inputs": "CLIP_OR_DIR"}


def add_listen_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The ``always listening`` argument group."""
    group = parser.add_argument_group(
        "always listening",
        "--listen spots keywords on a stream instead of classifying clips: one JSON object per detection and line "
        "on stdout (time_s, label, score, decided_by little or big), as it happens; a summary on stderr at the end "
        "or on Ctrl-C; --report writes JSON. Detections scoring below --confirm-below go to Big (--service), which "
        "confirms, corrects or rejects them; when Big cannot answer, Little's detection stands. The parameters come "
        "from the Little model's metadata (its listen section, chosen on validation speakers by python "
        "calibrate.py listen; without one: 3 windows, 0.9, 1 s, Big below 0.95); each flag overrides one.",
    )
    group.add_argument(
        "--listen", metavar="SOURCE",
        help="a 16 kHz 16-bit WAV file; - for raw 16-bit 16 kHz mono PCM on stdin "
        "(arecord -f S16_LE -r 16000 -c 1 -t raw | python little_client.py --listen -); "
        "mic or mic:DEVICE for a microphone (needs: pip install sounddevice)",
    )
    group.add_argument("--detect-threshold", dest="listen_threshold", type=float, metavar="P",
                       help="smoothed keyword probability that makes a detection, in (0, 1]")
    group.add_argument("--smoothing", type=int, metavar="N", help="windows whose probabilities are averaged")
    group.add_argument("--suppress", type=float, metavar="S", help="seconds of quiet after a detection")
    group.add_argument("--confirm-below", type=float, metavar="P",
                       help="ask Big about detections scoring below P (0: never, 1: always)")
    group.add_argument("--big-min-score", type=float, metavar="P",
                       help="Big rejects a detection when its best keyword's probability is below P")
    group.add_argument("--hop-ms", type=int, metavar="MS", help="milliseconds between windows (default 100)")
    group.add_argument("--little-only", action="store_true",
                       help="never ask Big; use the parameters calibrated for Little alone")
    group.add_argument("--live", action="store_true",
                       help="the source is live audio that never ends by itself (arecord piped into --listen -, "
                       "under systemd): its end is a failure, said in one line, exit status 1, so that the service "
                       "manager restarts the listener. Without it the end of stdin ends the run (exit 0); a WAV "
                       "file's end always does; a source that fails while read (a microphone unplugged) is exit 1 "
                       "either way; SIGTERM ends the run with its summary, exit 0")
    return group


def wants_listen(args: argparse.Namespace) -> bool:
    """Whether the run is a listening run: --listen, or one of its flags (which then asks for --listen)."""
    return args.listen is not None or any(getattr(args, dest, None) for dest in LISTEN_FLAGS)


def _check(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.listen is None:
        given = [flag for dest, flag in LISTEN_FLAGS.items() if getattr(args, dest, None)]
        parser.error(f"{', '.join(given)} need --listen SOURCE")
    for dest, flag in CLIP_FLAGS.items():
        if getattr(args, dest, None):
            parser.error(f"{flag} is for clips and does not apply to --listen")
    if args.live and not is_live_capable(args.listen):
        parser.error(f"--live is for stdin (-) or a microphone (mic); a file such as {args.listen} ends when heard")


def resolve_params(parser: argparse.ArgumentParser, args: argparse.Namespace, model: Any) -> tuple[ListenParams, str]:
    """The model's parameters (or the defaults) with the flags over them; a bad value is a usage error."""
    with blame(f"--model {args.model}: {metadata_path(args.model)}"):
        params, origin = params_from_metadata(model.metadata.raw, little_only=args.little_only)
    overrides = {
        "threshold": ("--detect-threshold", args.listen_threshold),
        "smoothing_windows": ("--smoothing", args.smoothing),
        "suppression_s": ("--suppress", args.suppress),
        "confirm_below": ("--confirm-below", args.confirm_below),
        "big_min_score": ("--big-min-score", args.big_min_score),
        "hop_s": ("--hop-ms", None if args.hop_ms is None else args.hop_ms / 1000),
    }
    for name, (flag, value) in overrides.items():
        try:
            params = with_overrides(params, **{name: value})
        except ParamsError as error:
            parser.error(f"{flag}: {error}")
    if any(value is not None for _, value in overrides.values()):
        origin += ", with flags over it"
    return params, origin


def is_live_capable(spec: str) -> bool:
    """Whether a --listen SOURCE can be live: stdin or a microphone, not a file."""
    return spec == STDIN or spec == MIC or spec.startswith(MIC + ":")


def _stop_on_sigterm(*_: object) -> None:
    raise KeyboardInterrupt  # a service manager's stop ends the run like Ctrl-C: summary and report still come


class _Stdout:
    """Detections to stdout, one JSON line each, flushed at once; a closed stdout (``| head``) ends the run."""

    def __init__(self) -> None:
        self.closed = False

    def __call__(self, detection: Detection) -> None:
        if self.closed:
            return
        try:
            print(detection.to_json(), flush=True)
        except BrokenPipeError:
            self.closed = True
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit's flush cannot fail again
            raise StopListening("stdout was closed") from None


def run_listen(parser: argparse.ArgumentParser, args: argparse.Namespace, big: BigClientSettings) -> int:
    """The listening run of ``little_client.py``; returns the exit status."""
    _check(parser, args)
    try:
        return listen(parser, args, big)
    except KwsError as error:
        parser.exit(error.exit_code, f"error: {error.explain()}\n")


def listen(parser: argparse.ArgumentParser, args: argparse.Namespace, big: BigClientSettings) -> int:
    """Load, listen until the source ends, sum up; what cannot start is a KwsError naming its flag."""
    with blame(f"--model {args.model}"):
        little = load_model(args.model, prefer="zlib")
    params, origin = resolve_params(parser, args, little)
    with blame("--hop-ms / --model"):
        check_streamable(little.feature_config, params.hop_samples)
    with blame(f"--listen {args.listen}"):
        source = open_source(args.listen)
    client = None if args.little_only else BigClient.from_settings(big)
    confirmer = None if client is None else BigConfirmer(client, params.big_min_score)
    with blame(f"--model {args.model}"):  # a model without a keyword among its labels
        listener = Listener(little, params, confirmer, emit=_Stdout())
    log.info(
        "listening to %s: a %d ms hop, %d windows averaged, threshold %.3f, %.2f s quiet after a detection; %s (%s)",
        source.name, round(1000 * params.hop_s), params.smoothing_windows, params.threshold, params.suppression_s,
        "Little alone" if confirmer is None else
        f"Big ({args.service}) confirms scores below {params.confirm_below:.3f}", origin,
    )
    status = 0
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        stats = listener.run(source)
        if args.live and not stats.interrupted:
            log.error("--listen %s --live: the audio source ended after %.1f s (did the recorder stop or the "
                      "device go away?); exit status 1, for the service manager to restart the listener",
                      args.listen, stats.audio_s)
            status = 1
    except SourceError as error:
        log.error("--listen %s: %s; exit status 1", args.listen, error)
        status = 1
    finally:
        source.close()
        if client is not None:
            client.close()
    big_url = None if client is None else args.service
    report = listen_report(listener.stats, params, origin, source.name, little, big_url,
                           0 if confirmer is None else confirmer.not_sent)
    print(format_summary(report), file=sys.stderr, flush=True)
    if args.report is not None:
        write_json_report(args.report, report)
        log.info("report written to %s", args.report)
    return status
