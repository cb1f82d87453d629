"""Cooperative inference through a real Mosquitto, with real clips, when things go wrong.

Four inference clients run as child processes, the cooperative client as another;
the tests kill a client, restart the broker and send garbage in the middle of
runs, and read the cooperative client's JSON report. Nothing waits a fixed time:
a watcher subscribed to the answers says when a run is "in the middle".
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import numpy as np
import paho.mqtt.client as mqtt
import paho.mqtt.publish as publish
import pytest
from ensemble_runs import (
    COOPERATIVE_CLIENT,
    REPO_ROOT,
    RUN_TIMEOUT_S,
    TOPICS,
    finish,
    in_process_accuracy,
    start_cooperative,
)

from kws.model.runtime import ModelMetadata
from kws.mqtt.brokers.mosquitto import LocalMosquitto
from kws.mqtt.fleet import ClientSpec, InferenceFleet, specs_for_models
from kws.mqtt.protocol import ONLINE, BrokerAddress, ClientStatus, Prediction, ProtocolError
from kws.wire.features_pack import encode_features_pack


class AnswerWatcher:
    """Counts answers per client on ``kws/prediction/+`` and lets a test wait for a count."""

    def __init__(self, broker: BrokerAddress) -> None:
        self.counts: Counter[str] = Counter()
        self.answered_clips: set[str] = set()
        self._changed = threading.Condition()
        subscribed = threading.Event()
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self._client.on_connect = lambda client, *_: client.subscribe(TOPICS.all_predictions, qos=1)
        self._client.on_subscribe = lambda *_: subscribed.set()
        self._client.on_message = self._record
        self._client.reconnect_delay_set(1, 2)
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        assert subscribed.wait(10), "the watcher could not subscribe"

    def _record(self, _client, _userdata, message: mqtt.MQTTMessage) -> None:
        try:
            prediction = Prediction.from_json(message.payload)
        except ProtocolError:  # the tests' own garbage
            return
        with self._changed:
            self.counts[prediction.client] += 1
            self.answered_clips.add(TOPICS.answer_of(message.topic)[1])
            self._changed.notify_all()

    def wait_for(self, count: int, client: str | None = None, timeout_s: float = 30.0) -> None:
        def reached() -> bool:
            return (self.counts[client] if client else sum(self.counts.values())) >= count

        with self._changed:
            assert self._changed.wait_for(reached, timeout_s), f"only {dict(self.counts)} answers after {timeout_s} s"

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def watcher(mosquitto: LocalMosquitto):
    answers = AnswerWatcher(mosquitto.address)
    yield answers
    answers.close()


@pytest.fixture
def fleet(mosquitto: LocalMosquitto, ensemble_models: list[Path], tmp_path: Path):
    """The four inference clients, MQTT 5, QoS 1, logging to tmp_path/clients."""
    specs = specs_for_models([str(model) for model in ensemble_models])
    with InferenceFleet(specs, mosquitto.address, TOPICS.prefix, "5", qos=1, log_dir=tmp_path / "clients") as clients:
        yield clients


def test_four_clients_answer_every_clip(mosquitto, fleet, ensemble_models, small_dataset, tmp_path) -> None:
    report_path = tmp_path / "report.json"
    process = start_cooperative(mosquitto.address, small_dataset, ensemble_models[0], report_path,
                                "--expect", "4", "--policy", "vote")
    report = finish(process, report_path)
    assert report["samples"] == 72  # 3 clips x 8 labels x 3 splits
    assert report["missing"] == report["incomplete"] == 0
    assert report["answers_per_clip"] == {"min": 4, "mean": 4.0, "max": 4}
    assert report["policy"] == "vote" and report["expect"] == 4 and report["qos"] == {"audio": 1, "prediction": 1}
    assert report["throughput_clips_per_s"] > 0 and report["latency_ms"]["median"] > 0
    correct, per_model = in_process_accuracy(ensemble_models, small_dataset, "vote")
    assert report["correct"] == correct, "MQTT must combine exactly what the models say in-process"
    assert report["per_model_accuracy"] == per_model


def test_a_killed_client_leaves_its_clips_to_the_others(
    mosquitto, fleet, watcher, ensemble_models, small_dataset, tmp_path
) -> None:
    report_path = tmp_path / "report.json"
    process = start_cooperative(mosquitto.address, small_dataset, ensemble_models[0], report_path,
                                "--expect", "4", "--rate", "30", "--timeout", "2")
    victim = ensemble_models[-1].name
    watcher.wait_for(5, client=victim)  # the run is under way: 72 clips at 30 a second take 2.4 s
    fleet.kill(victim)
    labels = ModelMetadata.read(ensemble_models[0].with_suffix(".json")).labels
    ghost = Prediction("ghost", "ghost", ("yes", "no"), (0.5, 0.5), 1.0).to_json()
    late = Prediction(victim, victim, labels, (1 / len(labels),) * len(labels), 1.0).to_json()
    strays = ((TOPICS.prediction("ghost", "c1"), ghost), (TOPICS.prediction(victim, "not-a-clip"), late),
              (TOPICS.prediction("x", "y"), "{garbage"))
    for topic, payload in strays:
        publish.single(topic, payload, qos=1, hostname=mosquitto.address.host, port=mosquitto.address.port)
    report = finish(process, report_path)
    assert report["samples"] == 72
    assert report["missing"] == 0, "the other three models answered every clip"
    assert 0 < report["incomplete"] < 72
    assert report["answers_per_clip"]["min"] == 3
    assert 5 <= report["answers_per_model"][victim] < 72
    assert report["rejected_answers"] == {"malformed": 1, "sender not in the roster": 1, "unknown clip": 1}, (
        "stray answers are counted, not used"
    )
    assert report["rejected_senders"] == {"ghost": 1, victim: 1, "x": 1}


@pytest.mark.parametrize("qos", [0, 1])
def test_broker_restart_mid_run(qos, mosquitto, fleet, watcher, ensemble_models, small_dataset, tmp_path) -> None:
    """QoS 1 loses nothing across a restart (persistent sessions, broker persistence); QoS 0 reports its losses."""
    report_path = tmp_path / "report.json"
    process = start_cooperative(
        mosquitto.address, small_dataset, ensemble_models[0], report_path,
        "--expect", "4", "--rate", "20", "--timeout", "15" if qos else "4",
        "--qos-audio", str(qos), "--qos-prediction", str(qos),
    )
    watcher.wait_for(20)  # about 5 of 72 clips answered by all four
    mosquitto.restart()
    report = finish(process, report_path)
    assert report["samples"] == 72 and report["qos"] == {"audio": qos, "prediction": qos}
    if qos:
        assert report["missing"] == report["incomplete"] == 0
        assert report["answers_per_clip"]["min"] == 4
    else:
        # the cooperative client published on for a second or more with no broker to take the clips
        assert report["missing"] > 0
        assert report["accuracy"] <= (report["samples"] - report["missing"]) / report["samples"]
    fleet.check_alive()  # every client reconnected rather than died


def test_malformed_audio_is_skipped_and_the_client_stays_up(mosquitto, ensemble_models, tmp_path) -> None:
    model = ensemble_models[0]
    config = ModelMetadata.read(model.with_suffix(".json")).feature_config
    good = np.zeros(config.shape, np.float32)
    other_config = config.__class__(**(config.to_dict() | {"upper_frequency": config.upper_frequency / 2}))
    records = json.loads(encode_features_pack("bad-shape", good, config))
    records[1]["vs"] = f"{config.shape[0] // 2}x{config.shape[1]}"
    bad_messages = {
        "bad-json": b"[{\"bn\": ",
        "not-senml": b"{\"features\": [1, 2, 3]}",
        "bad-base64": encode_features_pack("bad-base64", good, config).replace("\"vd\":\"", "\"vd\":\"%%"),
        "bad-shape": json.dumps(records),
        "other-config": encode_features_pack("other-config", np.zeros(other_config.shape, np.float32), other_config),
    }
    log_dir = tmp_path / "clients"
    with InferenceFleet([ClientSpec(str(model), "lonely")], mosquitto.address, TOPICS.prefix, "5", qos=1,
                        log_dir=log_dir) as clients:
        watcher = AnswerWatcher(mosquitto.address)
        publisher = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        publisher.connect(mosquitto.address.host, mosquitto.address.port)
        publisher.loop_start()
        wait_until_online(mosquitto.address, "lonely")
        for clip_id, payload in bad_messages.items():
            publisher.publish(TOPICS.audio(clip_id), payload, qos=1).wait_for_publish(10)
        publisher.publish(TOPICS.audio("good"), encode_features_pack("good", good, config), qos=1)
        watcher.wait_for(1, client="lonely")
        assert watcher.answered_clips == {"good"}, "only the good clip may be answered"
        clients.check_alive()
        publisher.disconnect()
        publisher.loop_stop()
        watcher.close()
    log = (log_dir / "lonely.log").read_text()
    assert log.count("skipped malformed message") == 4
    assert "features were made with another FeatureConfig: upper_frequency" in log
    assert "stopped after 1 answered, 4 skipped: malformed, 1 skipped: other FeatureConfig" in log


def wait_until_online(broker: BrokerAddress, *names: str, timeout_s: float = 30.0) -> None:
    """Block until every client in ``names`` has published its retained online status."""
    online: set[str] = set()
    all_online = threading.Event()

    def on_status(_client, _userdata, message: mqtt.MQTTMessage) -> None:
        status = ClientStatus.from_json(message.payload)
        if status.state == ONLINE:
            online.add(status.client)
        if online >= set(names):
            all_online.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.on_connect = lambda connected, *_: connected.subscribe(TOPICS.all_status, qos=1)
    client.on_message = on_status
    client.connect(broker.host, broker.port)
    client.loop_start()
    try:
        assert all_online.wait(timeout_s), f"only {sorted(online)} of {names} came online"
    finally:
        client.disconnect()
        client.loop_stop()


def test_share_groups_split_one_model_between_replicas(
    mosquitto, ensemble_models, small_dataset, tmp_path
) -> None:
    first, second = (str(model) for model in ensemble_models[:2])
    specs = [ClientSpec(first, "first-a", ("--share",)), ClientSpec(first, "first-b", ("--share",)),
             ClientSpec(second, "second")]
    report_path = tmp_path / "report.json"
    with InferenceFleet(specs, mosquitto.address, TOPICS.prefix, "5", qos=1, log_dir=tmp_path / "clients"):
        wait_until_online(mosquitto.address, *(spec.name for spec in specs))  # so both replicas get a share
        process = start_cooperative(mosquitto.address, small_dataset, ensemble_models[0], report_path, "--expect", "2")
        report = finish(process, report_path)
    assert report["answers_per_clip"] == {"min": 2, "mean": 2.0, "max": 2}, "one answer per model, never two"
    assert report["answers_per_model"] == {ensemble_models[0].name: 72, ensemble_models[1].name: 72}
    assert set(report["clients"]) == {"first-a", "first-b", "second"}, "both replicas took a share"


def test_embedded_broker_and_spawned_clients_in_one_command(ensemble_models, small_dataset, tmp_path) -> None:
    report_path = tmp_path / "report.json"
    started = time.monotonic()
    process = subprocess.Popen(
        [sys.executable, str(COOPERATIVE_CLIENT), "--embedded-broker", "--spawn", *map(str, ensemble_models),
         "--data-dir", str(small_dataset), "--split", "all", "--limit", "16", "--report", str(report_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    report = finish(process, report_path)
    assert report["embedded_broker"] and report["mqtt_version"] == "3.1.1"
    assert report["samples"] == 16 and report["expect"] == 4
    assert report["missing"] == report["incomplete"] == 0
    assert time.monotonic() - started < RUN_TIMEOUT_S


def test_reports_on_stdout_and_every_log_on_stderr(ensemble_models, small_dataset, cli) -> None:
    """``cooperative_client.py > out.txt`` keeps only the report; --log-level reaches the spawned clients too."""
    done = cli("cooperative_client.py", "--embedded-broker", "--spawn", *map(str, ensemble_models[:2]),
               "--data-dir", str(small_dataset), "--limit", "8", "--log-level", "WARNING", timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("model ") and "ensemble (sum)" in done.stdout
    assert " INFO " not in done.stdout + done.stderr, "WARNING quiets this client and the spawned ones"
    assert "XNNPACK" not in done.stdout + done.stderr


def test_spawned_clients_log_to_stderr_named(ensemble_models, small_dataset, cli) -> None:
    done = cli("cooperative_client.py", "--embedded-broker", "--spawn", str(ensemble_models[0]),
               "--data-dir", str(small_dataset), "--limit", "4", timeout=RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stderr
    assert f"[{ensemble_models[0].name}] " in done.stderr and f"[{ensemble_models[0].name}]" not in done.stdout


def test_no_broker_is_said_at_once_and_names_the_flag(ensemble_models, small_dataset, free_port, cli) -> None:
    started = time.monotonic()
    done = cli("cooperative_client.py", "--broker", f"mqtt://127.0.0.1:{free_port}", "--config-from",
               str(ensemble_models[0]), "--expect", "1", "--data-dir", str(small_dataset), "--limit", "2")
    assert done.returncode == 2
    assert f"cannot reach the MQTT broker at mqtt://127.0.0.1:{free_port} (Connection refused)" in done.stderr
    assert "--broker" in done.stderr and "Traceback" not in done.stderr
    assert "retrying in 1 s (attempt 1)" in done.stderr, "each retry is visible, with its backoff"
    assert time.monotonic() - started < 30, "not the 60 s wait for inference clients"


def test_inference_client_says_it_cannot_reach_the_broker(ensemble_models, free_port) -> None:
    process = subprocess.Popen(
        [sys.executable, str(REPO_ROOT / "inference_client.py"), "--model", str(ensemble_models[0]),
         "--broker", f"mqtt://127.0.0.1:{free_port}"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            lines.append(line)
            if "cannot reach the MQTT broker" in line:
                break
        output = "".join(lines)
        assert "cannot reach the MQTT broker" in output and "Connection refused" in output
        assert "connected to" not in output
    finally:
        process.terminate()
        process.wait(10)


def test_an_embedded_broker_on_a_busy_port_is_one_clear_error(ensemble_models, small_dataset, cli) -> None:
    """Its port taken, the embedded broker says so and how to pick another: no amqtt traceback, no clip sent."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        done = cli("cooperative_client.py", "--embedded-broker", "--broker", f"mqtt://127.0.0.1:{port}",
                   "--spawn", str(ensemble_models[0]), "--data-dir", str(small_dataset), "--limit", "2")
    assert done.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use)" in done.stderr and "--broker" in done.stderr
    assert "Traceback" not in done.stderr


def test_ctrl_c_reports_the_clips_sent_so_far(ensemble_models, small_dataset, tmp_path) -> None:
    """Interrupted mid-run, the cooperative client prints its summary and writes its report for the clips
    it had sent, and stops its broker and clients: no bare 'interrupted', no traceback."""
    from conftest import interrupt_script

    report_path = tmp_path / "report.json"
    done = interrupt_script("cooperative_client.py", "--embedded-broker", "--spawn", str(ensemble_models[0]),
                            "--data-dir", str(small_dataset), "--split", "all", "--rate", "10",
                            "--report", str(report_path), once="ready:", timeout=RUN_TIMEOUT_S)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "interrupted after" in done.stderr
    report = json.loads(report_path.read_text())
    assert report["interrupted"] and 0 < report["samples"] < 72
    assert "interrupted: the clips sent until Ctrl-C" in done.stdout
