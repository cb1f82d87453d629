"""Can a client on the broker steer the ensemble? Its accuracy beside forgers, and what was rejected.

Four inference clients (models/ensemble_1..4, child processes) answer the split
through a real Mosquitto while forgers (:mod:`bench.forger`) answer every clip too.
One cooperative run per scenario, all over the same clips, expecting the four models:

* ``alone``: an open broker (anonymous, plain text), no forger: the reference;
* ``forgers``: the same broker with the obvious forger (never announced, its own
  name, scores of 1000 on one label), one claiming the members' names from its own
  topic, and a newcomer that announces itself as a fifth model;
* ``impersonator``: the same broker with a forger writing under each member's name,
  with one-hot scores: nothing in the message tells it apart, which is why the
  deployment needs an ACL;
* ``recipe``: Mosquitto from deploy/mosquitto (TLS, passwords, the per-account ACL),
  every client with its own account, no forger;
* ``recipe + forgers``: the same with an anonymous forger (it cannot connect) and an
  impersonator that holds an account of its own (the ACL refuses its answers).

It prints a table and writes JSON (``reports/bench_forger.json``)::

    python -m bench.bench_forger --data-dir ../shared/data/speech_commands
"""

# ruff: noqa: E402 - imports follow the thread setting on purpose
from __future__ import annotations

from kws.util.threads import one_blas_thread

one_blas_thread()  # before numpy loads: one clip at a time, as the programs it runs

import argparse
import contextlib
import logging
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from bench.common import add_data_dir_argument, parse_bench_args
from bench.forger import Forger, is_forged
from kws.model.metadata import ModelMetadata, metadata_path
from kws.mqtt.brokers.mosquitto import RECIPE_DIR, LocalMosquitto, recipe_listener
from kws.mqtt.fleet import ClientSpec, InferenceFleet, specs_for_models
from kws.mqtt.protocol import BrokerAddress, Topics
from kws.mqtt.run import CooperativeRun, LabelledFeatures, RunSettings
from kws.mqtt.security import BrokerSecurity
from kws.mqtt.session import choose_clips, prepare_clips
from kws.reports import format_table, write_json_report

log = logging.getLogger("bench_forger")

DEFAULT_MODELS = [f"models/ensemble_{index}" for index in range(1, 5)]
DEFAULT_REPORT = Path("reports/bench_forger.json")
COOPERATIVE, INTRUDER = "kws-coop", "intruder"
ForgerFactory = Callable[[], Forger]


def run_scenario(
    broker: BrokerAddress, metadata: ModelMetadata, clips: Sequence[LabelledFeatures], settings: RunSettings,
    security: BrokerSecurity, forgers: Sequence[ForgerFactory],
) -> dict[str, Any]:
    """One cooperative run with these forgers at work; what it reported and what became of the forged answers."""
    refused_at_connect: list[str] = []
    running: list[Forger] = []
    with contextlib.ExitStack() as stack:
        for make in forgers:
            forger = make()
            try:
                running.append(stack.enter_context(forger))
            except ConnectionError as error:
                refused_at_connect.append(f"{forger.name}: {error}")
        with CooperativeRun(broker, Topics(), metadata.feature_config, metadata.labels, settings,
                            security=security) as cooperative:
            report = cooperative.run(clips)
            combined = sum(is_forged(answer.inference_ms, answer.scores)
                           for clip in cooperative.tracker for answer in clip.answers.values())
        time.sleep(0.5)  # the last PUBACKs (and their refusals) reach the forgers
    return {
        "accuracy": report["accuracy"],
        "samples": report["samples"],
        "incomplete": report["incomplete"],
        "forged_sent": sum(sum(forger.sent.values()) for forger in running),
        "forged_combined": combined,
        "refused_by_broker": sum(forger.connection.refused_publications for forger in running),
        "refused_at_connect": refused_at_connect,
        "rejected_answers": report["rejected_answers"],
        "rejected_senders": report["rejected_senders"],
    }


def make_secrets(target: Path, users: Sequence[str]) -> Path:
    subprocess.run(["bash", str(RECIPE_DIR / "make-secrets.sh"), str(target), "127.0.0.1", *users],
                   check=True, capture_output=True, text=True)
    return target


def account(secrets: Path, user: str | None) -> BrokerSecurity:
    clients = secrets / "clients"
    if user is None:
        return BrokerSecurity.load(cafile=clients / "ca.crt")
    return BrokerSecurity.load(username=user, password_file=clients / f"{user}.password", cafile=clients / "ca.crt")


def run(args: argparse.Namespace) -> dict[str, Any]:
    metadata = ModelMetadata.read(metadata_path(args.models[0]))
    clips = prepare_clips(choose_clips(args.data_dir, args.split, metadata.labels, args.clips),
                          metadata.feature_config)
    specs = specs_for_models(args.models)
    members = {spec.name: ModelMetadata.read(metadata_path(spec.model)).name for spec in specs}
    settings = RunSettings(expect=len(specs), expect_models=tuple(members.values()), timeout_s=args.timeout)
    labels, config = metadata.labels, metadata.feature_config
    scenarios: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_forger_") as temporary:
        folder = Path(temporary)
        with LocalMosquitto(folder / "open") as broker, \
                InferenceFleet(specs, broker.address, Topics().prefix, "5", qos=1, log_dir=folder / "open-logs"):
            address = broker.address
            open_forgers = {
                "alone": [],
                "forgers": [lambda: Forger(address, labels, claim=members),
                            lambda: Forger(address, labels, name="newcomer", announce=config)],
                "impersonator": [lambda: Forger(address, labels, own=False, impersonate=members)],
            }
            for name, forgers in open_forgers.items():
                log.info("scenario %s", name)
                scenarios[name] = run_scenario(address, metadata, clips, settings, BrokerSecurity(), forgers)
        secrets = make_secrets(folder / "secrets", [COOPERATIVE, *members, INTRUDER])
        listener = recipe_listener(secrets / "broker")
        recipe_specs = [ClientSpec(spec.model, spec.name, security=account(secrets, spec.name)) for spec in specs]
        with LocalMosquitto(folder / "recipe", listener=listener, tls=True) as broker, \
                InferenceFleet(recipe_specs, broker.address, Topics().prefix, "5", qos=1,
                               log_dir=folder / "recipe-logs"):
            address, coop = broker.address, account(secrets, COOPERATIVE)
            recipe_forgers = {
                "recipe": [],
                "recipe + forgers": [
                    lambda: Forger(address, labels, name="anonymous", security=account(secrets, None)),
                    lambda: Forger(address, labels, name=INTRUDER, claim=members, impersonate=members,
                                   security=account(secrets, INTRUDER)),
                ],
            }
            for name, forgers in recipe_forgers.items():
                log.info("scenario %s", name)
                scenarios[name] = run_scenario(address, metadata, clips, settings, coop, forgers)
    return {
        "setup": {"clips": len(clips), "split": args.split, "models": list(members.values()),
                  "policy": settings.policy, "qos": 1, "timeout_s": args.timeout},
        "scenarios": scenarios,
        "accuracy_unchanged_beside_forgers": scenarios["forgers"]["accuracy"] == scenarios["alone"]["accuracy"],
        "accuracy_unchanged_with_the_recipe": (
            scenarios["recipe + forgers"]["accuracy"] == scenarios["recipe"]["accuracy"]
        ),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_data_dir_argument(parser)
    parser.add_argument("--split", default="test", help="split to take clips from (default: %(default)s)")
    parser.add_argument("--models", nargs="+", default=DEFAULT_MODELS, help="the members (default: ensemble_1..4)")
    parser.add_argument("--clips", type=int, help="use this many clips spread over the split (default: all)")
    parser.add_argument("--timeout", type=float, default=30.0, help="per-clip deadline, s (default: %(default)s)")
    parser.add_argument("--report", type=Path, default=DEFAULT_REPORT, help="JSON report (default: %(default)s)")
    return parse_bench_args(parser, argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    report = run(args)
    rows = [
        [name, result["accuracy"], result["forged_sent"], result["forged_combined"], result["refused_by_broker"],
         len(result["refused_at_connect"]),
         ", ".join(f"{count} {why}" for why, count in result["rejected_answers"].items()) or "-"]
        for name, result in report["scenarios"].items()
    ]
    print(format_table(["scenario", "accuracy", "forged sent", "combined", "refused by broker",
                        "forgers refused at connect", "rejected_answers"], rows))
    print(f"accuracy beside the forgers equals the accuracy alone: {report['accuracy_unchanged_beside_forgers']}; "
          f"with the recipe: {report['accuracy_unchanged_with_the_recipe']}")
    write_json_report(args.report, report)
    log.info("report written to %s", args.report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
