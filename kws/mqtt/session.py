"""One cooperative session from start to end: broker, inference clients, clips, the run.

:func:`run_cooperative` is what ``cooperative_client.py`` and the demo run: it
starts what the session needs (an embedded broker, spawned inference clients),
computes every clip's features once with the FeatureConfig of a model's metadata
(never a hard-coded one), runs them through the ensemble and stops everything it
started, however the run ends.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm import tqdm

from kws.audio import read_clip
from kws.data.clips import Clip, select_clips, spread_evenly
from kws.errors import KwsError
from kws.features import FeatureConfig, compute_features
from kws.model.metadata import ModelMetadata, metadata_path
from kws.mqtt.brokers import embedded
from kws.mqtt.connection import DEFAULT_SESSION_EXPIRY_S
from kws.mqtt.fleet import InferenceFleet, specs_for_models
from kws.mqtt.protocol import DEFAULT_BROKER, DEFAULT_TOPIC_PREFIX, BrokerAddress, Topics, parse_broker_url
from kws.mqtt.run import CooperativeRun, LabelledFeatures, RunSettings
from kws.mqtt.security import BrokerSecurity


class SessionError(KwsError, ValueError):
    """Options a cooperative session cannot run with; the text names the flag to change."""


@dataclass(frozen=True)
class CooperativeOptions:
    """Everything a cooperative session needs to know; the fields mirror cooperative_client.py's flags."""

    data_dir: Path
    split: str = "test"
    limit: int | None = None
    """Use this many clips spread evenly over the split (None: all)."""
    spawn: Sequence[str] = ()
    """Models to start one inference client for, as child processes."""
    config_from: str | None = None
    """The model whose metadata gives the FeatureConfig and labels (default: the first of ``spawn``)."""
    broker: str | None = None
    embedded_broker: bool = False
    security: BrokerSecurity = BrokerSecurity()
    """Our account and TLS files; spawned clients get the same files, by path."""
    topic_prefix: str = DEFAULT_TOPIC_PREFIX
    mqtt_version: str | None = None
    session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S
    client_logs: Path | None = None
    client_log_level: str = "INFO"
    run: RunSettings = RunSettings()
    """How the run goes: answers per clip and from which models (``expect`` 0 and ``expect_models`` empty:
    one from each ``spawn`` model), timeout, policy, QoS, pacing."""


def read_feature_source(model: str | Path) -> ModelMetadata:
    """The metadata of the model whose FeatureConfig and labels the run uses (the model file is not loaded)."""
    return ModelMetadata.read(metadata_path(model))


def choose_clips(data_dir: Path, split: str, labels: Sequence[str], limit: int | None) -> list[Clip]:
    """The split's clips, or ``limit`` of them spread evenly so every label is represented."""
    return spread_evenly(select_clips(data_dir, split, labels), limit)


def prepare_clips(clips: Sequence[Clip], config: FeatureConfig) -> list[LabelledFeatures]:
    """Every clip's features, computed once for all the models."""
    return [
        LabelledFeatures(clip.label, compute_features(read_clip(clip.path), config))
        for clip in tqdm(clips, desc="computing features", unit="clip")
    ]


def choose_broker(options: CooperativeOptions) -> BrokerAddress:
    """The broker to use; with an embedded broker, the port of ``broker`` if given, else a free one."""
    if not options.embedded_broker:
        return parse_broker_url(options.broker or DEFAULT_BROKER)
    port = parse_broker_url(options.broker).port if options.broker else 0
    return BrokerAddress("127.0.0.1", port)


def run_cooperative(options: CooperativeOptions) -> dict[str, Any]:
    """Run the session and return its report; raises a :class:`~kws.errors.KwsError` with a clear message:
    SessionError (bad options), ModelError, DatasetError, FleetError, BrokerStartError, BrokerUnavailable
    (no broker), NoClientsOnline."""
    if options.embedded_broker and (options.security.username or options.security.uses_tls_files):
        raise SessionError("the embedded broker has no accounts and no TLS: drop --username, --password-file, "
                         "--cafile, --certfile and --keyfile, or use --broker")
    source = options.config_from or (options.spawn[0] if options.spawn else None)
    if source is None:
        raise SessionError("say which model's FeatureConfig to use: --config-from MODEL (or --spawn MODEL ...)")
    expect_models = options.run.expect_models or tuple(read_feature_source(model).name for model in options.spawn)
    expect = options.run.expect or len(expect_models) or len(options.spawn)
    if expect < 1:
        raise SessionError("say how many answers each clip gets: --expect N (or --expect-models, or --spawn MODEL ...)")
    if expect < len(set(expect_models)):
        raise SessionError(f"--expect {expect} is fewer than the {len(set(expect_models))} expected models, "
                         "each of which answers every clip")
    mqtt_version = options.mqtt_version or (embedded.MQTT_VERSION if options.embedded_broker else "5")
    if options.embedded_broker and mqtt_version != embedded.MQTT_VERSION:
        raise SessionError(f"the embedded broker speaks MQTT {embedded.MQTT_VERSION} only")
    metadata = read_feature_source(source)
    clips = choose_clips(options.data_dir, options.split, metadata.labels, options.limit)
    topics = Topics(options.topic_prefix)
    broker = choose_broker(options)
    settings = dataclasses.replace(options.run, expect=expect, expect_models=expect_models)
    with contextlib.ExitStack() as cleanup:
        if options.embedded_broker:
            broker = cleanup.enter_context(embedded.EmbeddedBroker(broker.host, broker.port)).address
        fleet = None
        if options.spawn:
            fleet = cleanup.enter_context(InferenceFleet(
                specs_for_models(options.spawn), broker, topics.prefix, mqtt_version,
                qos=max(settings.qos_audio, settings.qos_prediction), log_dir=options.client_logs,
                log_level=options.client_log_level, security=options.security,
            ))
        labelled = prepare_clips(clips, metadata.feature_config)  # while the clients start
        cooperative = cleanup.enter_context(CooperativeRun(
            broker, topics, metadata.feature_config, metadata.labels, settings,
            mqtt_version=mqtt_version, session_expiry_s=options.session_expiry_s, fleet=fleet,
            security=options.security,
        ))
        return cooperative.run(labelled, context={
            "broker": broker.url,
            "mqtt_version": mqtt_version,
            "embedded_broker": options.embedded_broker,
            "config_from": metadata.name,
            "data_dir": str(options.data_dir),
            "split": options.split,
        })
