"""Nobody on the broker can steer an answer: a forger beside the real ensemble, and the secure recipe.

Everything here runs against a real Mosquitto: the tests' open one (anonymous, plain
text: the worst case, where only the cooperative client's own checks protect it),
and the deployment recipe itself (deploy/mosquitto/kws.conf and acl, with the
certificates and passwords deploy/mosquitto/make-secrets.sh makes in a temporary
folder): passwords, an ACL that pins each answer to its account, TLS only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from ensemble_runs import REPO_ROOT, RUN_TIMEOUT_S, TOPICS, finish_with_output, in_process_accuracy, start_cooperative

from bench.forger import CLAIMED, IMPERSONATED, OWN, Forger
from kws.model.metadata import ModelMetadata
from kws.mqtt.brokers.mosquitto import RECIPE_DIR, LocalMosquitto, find_mosquitto, recipe_listener
from kws.mqtt.connection import ConnectionSettings, MqttConnection
from kws.mqtt.fleet import ClientSpec, InferenceFleet, specs_for_models
from kws.mqtt.protocol import ONLINE, BrokerAddress, ClientStatus, Prediction
from kws.mqtt.security import BrokerSecurity
from kws.util.net import free_tcp_port

COOPERATIVE = "kws-coop"
INTRUDER = "intruder"
REPLICAS = ("replica-a", "replica-b")


def make_secrets(target: Path, *users: str) -> Path:
    """Run the recipe's own script, as an operator would; skip when its tools are missing."""
    for tool in ("openssl", "mosquitto_passwd"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed (apt-get install openssl mosquitto)")
    done = subprocess.run(["bash", str(RECIPE_DIR / "make-secrets.sh"), str(target), "127.0.0.1", *users],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return target


@pytest.fixture(scope="module")
def model_names(ensemble_models: list[Path]) -> dict[str, str]:
    """Client name (as --spawn and specs_for_models name them) -> model name in its metadata."""
    return {model.name: ModelMetadata.read(model.with_suffix(".json")).name for model in ensemble_models}


@pytest.fixture(scope="module")
def secrets(tmp_path_factory: pytest.TempPathFactory, model_names: dict[str, str]) -> Path:
    """Accounts for the cooperative client, each ensemble member, one intruder and two replicas; the CA; the
    broker's files."""
    return make_secrets(tmp_path_factory.mktemp("secrets"), COOPERATIVE, *model_names, INTRUDER, *REPLICAS)


def account(secrets: Path, user: str, cafile: Path | None = None) -> BrokerSecurity:
    clients = secrets / "clients"
    return BrokerSecurity.load(username=user, password_file=clients / f"{user}.password",
                               cafile=cafile or clients / "ca.crt")


def account_flags(secrets: Path, user: str) -> list[str]:
    return account(secrets, user).arguments()


@pytest.fixture
def recipe_broker(secrets: Path, tmp_path: Path):
    """Mosquitto started from the recipe: passwords, the per-identity ACL, a TLS listener only."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    listener = recipe_listener(secrets / "broker")
    with LocalMosquitto(tmp_path / "mosquitto", port=free_tcp_port(), listener=listener, tls=True) as broker:
        yield broker


def member_fleet(broker: BrokerAddress, models: list[Path], secrets: Path | None, log_dir: Path) -> InferenceFleet:
    """The four inference clients, each logged in with its own account when there are accounts."""
    specs = [
        ClientSpec(spec.model, spec.name, security=account(secrets, spec.name) if secrets else None)
        for spec in specs_for_models([str(model) for model in models])
    ]
    return InferenceFleet(specs, broker, TOPICS.prefix, "5", qos=1, log_dir=log_dir)


# --------------------------------------------------------------------------- #
# An open broker: the cooperative client's own checks
# --------------------------------------------------------------------------- #


def test_a_forger_beside_four_clients_changes_nothing_and_is_counted(
    mosquitto, ensemble_models, model_names, small_dataset, tmp_path
) -> None:
    """The obvious forger (never announced, answers every clip under its own name with scores no model gives),
    plus one that claims the members' names from its own topic and one that announces itself as a fifth model."""
    config = ModelMetadata.read(ensemble_models[0].with_suffix(".json"))
    report_path = tmp_path / "report.json"
    with member_fleet(mosquitto.address, ensemble_models, None, tmp_path / "clients"), \
            Forger(mosquitto.address, config.labels, claim=model_names) as forger, \
            Forger(mosquitto.address, config.labels, name="newcomer", announce=config.feature_config) as newcomer:
        process = start_cooperative(mosquitto.address, small_dataset, ensemble_models[0], report_path,
                                    "--expect-models", *model_names.values(), "--policy", "sum")
        report, output = finish_with_output(process, report_path)
    correct, per_model = in_process_accuracy(ensemble_models, small_dataset, "sum")
    assert report["correct"] == correct, "beside the forgers the ensemble says exactly what the models say"
    assert report["per_model_accuracy"] == per_model
    assert set(report["clients"]) == set(model_names), "no forged answer was combined"
    assert report["answers_per_clip"] == {"min": 4, "mean": 4.0, "max": 4}
    assert report["roster"] == model_names
    assert forger.clips_seen == newcomer.clips_seen == report["samples"] == 72
    rejected = report["rejected_answers"]
    # every forged answer that reached the cooperative client before it finished is counted, none used
    assert 0 < rejected["sender not in the roster"] <= forger.sent[OWN] + newcomer.sent[OWN]
    assert 0 < rejected["sender differs from its topic"] <= forger.sent[CLAIMED]
    assert set(rejected) == {"sender not in the roster", "sender differs from its topic"}
    assert set(report["rejected_senders"]) == {"forger", "newcomer"}
    # logged once per sender and reason, not once per clip
    assert output.count("rejected an answer from forger") == 2
    assert output.count("rejected an answer from newcomer") == 1
    assert "client newcomer (model newcomer) may not answer this run: its model 'newcomer' is not one of" in output
    assert "rejected answers (never combined):" in output


def test_an_impersonator_wins_on_an_open_broker_which_is_why_the_recipe_has_an_acl(
    mosquitto, ensemble_models, model_names, small_dataset, tmp_path
) -> None:
    """Writing under a member's name with valid scores is indistinguishable in the message: the limit of
    what the cooperative client can check alone, measured so the documentation can say it (docs/benchmarks.md)."""
    labels = ModelMetadata.read(ensemble_models[0].with_suffix(".json")).labels
    report_path = tmp_path / "report.json"
    with member_fleet(mosquitto.address, ensemble_models, None, tmp_path / "clients"), \
            Forger(mosquitto.address, labels, own=False, impersonate=model_names) as impersonator:
        process = start_cooperative(mosquitto.address, small_dataset, ensemble_models[0], report_path,
                                    "--expect-models", *model_names.values())
        report, _ = finish_with_output(process, report_path)
    assert impersonator.sent[IMPERSONATED] == 4 * 72
    correct, _ = in_process_accuracy(ensemble_models, small_dataset, "sum")
    assert report["correct"] < correct, "forged 'members' answering 'down' first changed the ensemble's answers"
    rejected = report["rejected_answers"]
    assert rejected.get("duplicate", 0) + rejected.get("clip already finished", 0) > 0, (
        "where the forgeries came first, the real answers were dropped"
    )


# --------------------------------------------------------------------------- #
# The recipe: passwords, ACL, TLS
# --------------------------------------------------------------------------- #


def test_with_the_recipe_the_forger_cannot_publish_at_all(
    recipe_broker, secrets, ensemble_models, model_names, small_dataset, tmp_path
) -> None:
    broker = recipe_broker.address
    assert broker.url.startswith("mqtts://")
    labels = ModelMetadata.read(ensemble_models[0].with_suffix(".json")).labels
    # without an account, no connection at all
    anonymous = Forger(broker, labels, security=BrokerSecurity.load(cafile=secrets / "clients" / "ca.crt"))
    with pytest.raises(ConnectionError, match="Not authorized: this broker wants an account"):
        anonymous.start()
    report_path = tmp_path / "report.json"
    with member_fleet(broker, ensemble_models, secrets, tmp_path / "clients") as fleet, \
            Forger(broker, labels, name=INTRUDER, own=False, impersonate=model_names,
                   security=account(secrets, INTRUDER)) as intruder:
        process = start_cooperative(broker, small_dataset, ensemble_models[0], report_path,
                                    *account_flags(secrets, COOPERATIVE), "--expect-models", *model_names.values())
        report, output = finish_with_output(process, report_path)
        commands = [" ".join(map(str, process.args)) for process in fleet.processes.values()]
        wait_until(lambda: intruder.connection.refused_publications >= intruder.sent[IMPERSONATED])
    correct, _ = in_process_accuracy(ensemble_models, small_dataset, "sum")
    assert report["correct"] == correct and report["broker"] == broker.url
    assert report["answers_per_clip"] == {"min": 4, "mean": 4.0, "max": 4}
    assert report["rejected_answers"] == {}, "the broker never passed a forged answer on"
    assert intruder.sent[IMPERSONATED] == 4 * 72
    assert intruder.connection.refused_publications == intruder.sent[IMPERSONATED], "the ACL refused every one"
    # no secret on a command line or in a log
    passwords = [path.read_text().strip() for path in (secrets / "clients").glob("*.password")]
    logs = output + "".join(path.read_text() for path in (tmp_path / "clients").glob("*.log"))
    assert all(f"--password-file {secrets / 'clients'}" in command for command in commands)
    assert not any(password in text for password in passwords for text in [*commands, logs])


def publish_as(broker: BrokerAddress, security: BrokerSecurity, topic: str, payload: str) -> MqttConnection:
    """Publish one QoS 1 message as ``security``'s account and return the connection, once the broker answered."""
    connection = MqttConnection(ConnectionSettings(broker, client_id=f"probe-{security.username}",
                                                   security=security), lambda _message: None).start()
    assert connection.wait_connected(10), connection.refusal
    connection.publish(topic, payload, qos=1).wait_for_publish(10)
    return connection


def wait_online(broker: BrokerAddress, security: BrokerSecurity, names: Sequence[str], timeout_s: float = 30) -> None:
    """Until every client in ``names`` has announced itself online (read as ``security``'s account)."""
    online: set[str] = set()

    def record(message) -> None:
        status = ClientStatus.from_json(message.payload)
        if status.state == ONLINE:
            online.add(status.client)

    connection = MqttConnection(ConnectionSettings(broker, client_id="probe-online", security=security,
                                                   subscriptions=[(TOPICS.all_status, 1)]), record).start()
    try:
        wait_until(lambda: online >= set(names), timeout_s)
        assert online >= set(names), f"only {sorted(online)} of {names} came online"
    finally:
        connection.stop()


def wait_until(condition, timeout_s: float = 5.0) -> None:
    """Until ``condition()`` holds: PUBACKs and their reason codes arrive on paho's thread."""
    deadline = time.monotonic() + timeout_s
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.02)


@pytest.mark.parametrize(
    ("user", "topic"),
    [
        (COOPERATIVE, TOPICS.prediction(COOPERATIVE, "c1")),  # the cooperative client publishes clips only
        (COOPERATIVE, TOPICS.status(COOPERATIVE)),
        ("ensemble_1", TOPICS.prediction("ensemble_2", "c1")),  # a member answers only as itself
        ("ensemble_1", TOPICS.status("ensemble_2")),
        ("ensemble_1", TOPICS.audio("c1")),  # and publishes no clips
        (INTRUDER, TOPICS.config),
    ],
)
def test_the_acl_refuses_what_an_account_may_not_publish(recipe_broker, secrets, user, topic) -> None:
    connection = publish_as(recipe_broker.address, account(secrets, user), topic, "{}")
    wait_until(lambda: connection.refused_publications > 0)
    connection.stop()
    assert connection.refused_publications == 1


def test_the_acl_takes_an_answer_under_the_members_own_name(recipe_broker, secrets) -> None:
    answer = Prediction("ensemble_1", "ensemble_1", ("a", "b"), (0.5, 0.5), 1.0).to_json()
    connection = publish_as(recipe_broker.address, account(secrets, "ensemble_1"),
                            TOPICS.prediction("ensemble_1", "c1"), answer)
    connection.stop()
    assert connection.refused_publications == 0, "else the test above could not fail"


@pytest.fixture(scope="module")
def other_ca(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CA that signed nothing of the broker's: what a client has when it was given the wrong file."""
    return make_secrets(tmp_path_factory.mktemp("other_secrets"), COOPERATIVE) / "clients" / "ca.crt"


@pytest.fixture
def wrong_password(tmp_path: Path) -> Path:
    path = tmp_path / "wrong.password"
    path.write_text("not-the-password-4711\n")
    path.chmod(0o600)
    return path


def refusal_cases(secrets: Path, other_ca: Path, wrong_password: Path) -> dict[str, tuple[list[str], list[str]]]:
    clients = secrets / "clients"
    return {
        "wrong password": (["--username", COOPERATIVE, "--password-file", str(wrong_password),
                            "--cafile", str(clients / "ca.crt")], ["Not authorized", "--password-file"]),
        "wrong password, MQTT 3.1.1": (["--mqtt-version", "3.1.1", "--username", COOPERATIVE, "--password-file",
                                        str(wrong_password), "--cafile", str(clients / "ca.crt")],
                                       ["Not authorized", "--password-file"]),
        "no account": (["--cafile", str(clients / "ca.crt")], ["Not authorized", "--username", "--password-file"]),
        "wrong CA": ([*account_flags(secrets, COOPERATIVE)[:4], "--cafile", str(other_ca)],
                     ["certificate does not verify", "--cafile"]),
    }


@pytest.mark.parametrize("case", ["wrong password", "wrong password, MQTT 3.1.1", "no account", "wrong CA"])
def test_the_cooperative_client_says_what_is_wrong_and_names_the_flag(
    case, recipe_broker, secrets, other_ca, wrong_password, ensemble_models, small_dataset, cli
) -> None:
    flags, expected = refusal_cases(secrets, other_ca, wrong_password)[case]
    started = time.monotonic()
    done = cli("cooperative_client.py", "--broker", recipe_broker.address.url, *flags, "--config-from",
               str(ensemble_models[0]), "--expect", "1", "--data-dir", str(small_dataset), "--limit", "2")
    assert done.returncode == 2, done.stderr
    assert all(text in done.stderr for text in expected), done.stderr
    assert "Traceback" not in done.stderr and "not-the-password-4711" not in done.stderr
    assert time.monotonic() - started < 30, "said at once, not after the wait for inference clients"


@pytest.mark.parametrize("case", ["wrong password", "wrong CA"])
def test_an_inference_client_exits_naming_the_flag(case, recipe_broker, secrets, other_ca, wrong_password,
                                                   ensemble_models) -> None:
    flags, expected = refusal_cases(secrets, other_ca, wrong_password)[case]
    done = subprocess.run(
        [sys.executable, str(REPO_ROOT / "inference_client.py"), "--model", str(ensemble_models[0]),
         "--broker", recipe_broker.address.url, *flags],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env={**os.environ, "OPENBLAS_NUM_THREADS": "1"},
    )
    assert done.returncode == 2, done.stderr
    assert all(text in done.stderr for text in expected), done.stderr
    assert "Traceback" not in done.stderr and "not-the-password-4711" not in done.stderr


def test_a_plain_url_to_the_tls_port_is_named(recipe_broker, secrets, ensemble_models, small_dataset, cli) -> None:
    done = cli("cooperative_client.py", "--broker", f"mqtt://127.0.0.1:{recipe_broker.address.port}",
               "--config-from", str(ensemble_models[0]), "--expect", "1", "--data-dir", str(small_dataset),
               "--limit", "2")
    assert done.returncode == 2
    assert "the port speaks TLS: use an mqtts:// URL in --broker" in done.stderr


def test_replicas_with_their_own_accounts_share_a_model_under_the_acl(
    recipe_broker, secrets, ensemble_models, small_dataset, tmp_path
) -> None:
    model = ModelMetadata.read(ensemble_models[0].with_suffix(".json")).name
    specs = [ClientSpec(str(ensemble_models[0]), name, ("--share",), account(secrets, name)) for name in REPLICAS]
    report_path = tmp_path / "report.json"
    with InferenceFleet(specs, recipe_broker.address, TOPICS.prefix, "5", qos=1, log_dir=tmp_path / "clients"):
        wait_online(recipe_broker.address, account(secrets, COOPERATIVE), REPLICAS)  # so both get a share
        process = start_cooperative(recipe_broker.address, small_dataset, ensemble_models[0], report_path,
                                    *account_flags(secrets, COOPERATIVE), "--expect-models", model)
        report, _ = finish_with_output(process, report_path)
    assert report["answers_per_clip"] == {"min": 1, "mean": 1.0, "max": 1} and report["rejected_answers"] == {}
    assert set(report["clients"]) == set(REPLICAS), "both replicas took a share, each under its own name"


def test_client_certificates_instead_of_passwords(secrets, ensemble_models, model_names, small_dataset,
                                                  tmp_path) -> None:
    """A listener that takes certificates (require_certificate, the certificate's name as the account), same ACL."""
    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed (apt-get install mosquitto)")
    broker_files, clients = secrets / "broker", secrets / "clients"
    listener = "\n".join([
        "listener {port} 127.0.0.1", "allow_anonymous false", f"acl_file {broker_files}/acl",
        f"cafile {broker_files}/ca.crt", f"certfile {broker_files}/server.crt", f"keyfile {broker_files}/server.key",
        "require_certificate true", "use_identity_as_username true", "",
    ])

    def certificate(user: str) -> BrokerSecurity:
        return BrokerSecurity.load(cafile=clients / "ca.crt", certfile=clients / f"{user}.crt",
                                   keyfile=clients / f"{user}.key")

    member = next(iter(model_names))
    report_path = tmp_path / "report.json"
    with LocalMosquitto(tmp_path / "mosquitto", listener=listener, tls=True) as broker, \
            InferenceFleet([ClientSpec(str(ensemble_models[0]), member, security=certificate(member))],
                           broker.address, TOPICS.prefix, "5", qos=1, log_dir=tmp_path / "clients"):
        process = start_cooperative(broker.address, small_dataset, ensemble_models[0], report_path,
                                    *certificate(COOPERATIVE).arguments(), "--expect", "1", "--limit", "16")
        report, _ = finish_with_output(process, report_path)
    assert report["samples"] == 16 and report["missing"] == 0 and report["clients"] == [member]
