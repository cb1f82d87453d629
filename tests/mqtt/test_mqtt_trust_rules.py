"""The rules an answer must pass before it is combined, and the account/TLS options, without a broker.

The broker tests (test_mqtt_trust.py) show the rules hold end to end; these pin each
rule down, so a change that loosens one fails here with its name.
"""

from __future__ import annotations

import math

import pytest

from kws.features import FeatureConfig
from kws.mqtt.protocol import OFFLINE, ONLINE, BrokerAddress, ClientStatus, Prediction
from kws.mqtt.roster import NOT_A_MEMBER, SENDER_MISMATCH, WRONG_MODEL, Member, Roster
from kws.mqtt.security import BrokerSecurity, SecurityError
from kws.mqtt.tracker import ACCEPTED, DUPLICATE, NOT_PROBABILITIES, UNKNOWN_CLIP, EnsembleTracker

CONFIG = FeatureConfig(frame_length=640, frame_step=640, num_mel_bins=20, num_coefficients=10)
OTHER_CONFIG = FeatureConfig(frame_length=640, frame_step=640, num_mel_bins=20, num_coefficients=8)
LABELS = ("down", "stop", "right", "left", "up", "yes", "no", "go")
UNIFORM = (0.125,) * 8


def online(client: str, model: str, config: FeatureConfig = CONFIG, share: str | None = None) -> ClientStatus:
    return ClientStatus(client, ONLINE, model, share, config)


def answer(client: str, model: str, scores=UNIFORM) -> Prediction:
    return Prediction(client, model, LABELS, tuple(scores), 1.0)


# --------------------------------------------------------------------------- #
# The roster
# --------------------------------------------------------------------------- #


def test_only_announced_members_answer_and_only_for_their_model() -> None:
    roster = Roster(CONFIG)
    assert roster.update(online("e1", "ensemble_1")) is None
    assert isinstance(roster.check("e1", answer("e1", "ensemble_1")), Member)
    assert roster.check("forger", answer("forger", "forger")) == NOT_A_MEMBER  # never announced itself
    assert roster.check("forger", answer("e1", "ensemble_1")) == SENDER_MISMATCH  # its topic, e1's name
    assert roster.check("e1", answer("e1", "ensemble_2")) == WRONG_MODEL


def test_expected_models_keep_other_models_out_of_the_roster() -> None:
    roster = Roster(CONFIG, expected_models=("ensemble_1", "ensemble_2"))
    assert roster.update(online("e1", "ensemble_1")) is None
    assert "not one of the expected" in roster.update(online("fifth", "forged"))
    assert "another FeatureConfig" in roster.update(online("e2", "ensemble_2", OTHER_CONFIG))
    assert roster.check("fifth", answer("fifth", "forged")) == NOT_A_MEMBER
    assert roster.check("e2", answer("e2", "ensemble_2")) == NOT_A_MEMBER
    assert not roster.ready(expect=1), "ensemble_2 has no member yet"
    roster.update(online("e2", "ensemble_2"))
    assert roster.ready(expect=2)


def test_a_member_that_goes_offline_still_counts_for_the_answers_it_sent() -> None:
    roster = Roster(CONFIG)
    roster.update(online("e1", "ensemble_1"))
    roster.update(ClientStatus("e1", OFFLINE, "ensemble_1"))
    assert isinstance(roster.check("e1", answer("e1", "ensemble_1")), Member)
    assert roster.online_sources() == set() and not roster.ready(expect=1)


def test_replicas_of_a_share_group_are_one_answer_source() -> None:
    roster = Roster(CONFIG)
    roster.update(online("e1-a", "ensemble_1", share="ensemble_1"))
    roster.update(online("e1-b", "ensemble_1", share="ensemble_1"))
    assert roster.online_sources() == {"share:ensemble_1"}
    a, b = (roster.check(name, answer(name, "ensemble_1")) for name in ("e1-a", "e1-b"))
    tracker = EnsembleTracker(LABELS, expect=2, timeout_s=5.0, policy="sum")
    tracker.sent("c1", "yes", now=0.0)
    assert tracker.add("c1", answer("e1-a", "ensemble_1"), 0.1, a.answer_source) == ACCEPTED
    assert tracker.add("c1", answer("e1-b", "ensemble_1"), 0.2, b.answer_source) == DUPLICATE


# --------------------------------------------------------------------------- #
# Probability vectors
# --------------------------------------------------------------------------- #


@pytest.mark.parametrize(
    ("scores", "problem"),
    [
        ((1000.0,) + (0.0,) * 7, "outside [0, 1]"),  # what swamps a summed ensemble
        ((-0.5, 1.5) + (0.0,) * 6, "outside [0, 1]"),
        ((0.5,) * 8, "sum to 4"),
        ((0.0,) * 8, "sum to 0"),
    ],
)
def test_scores_that_are_not_probabilities_are_rejected(scores, problem) -> None:
    assert problem in answer("e1", "ensemble_1", scores).probability_problem()
    tracker = EnsembleTracker(LABELS, expect=1, timeout_s=5.0, policy="sum")
    tracker.sent("c1", "yes", now=0.0)
    assert tracker.add("c1", answer("e1", "ensemble_1", scores), 0.1) == NOT_PROBABILITIES
    assert tracker.rejected == {NOT_PROBABILITIES: 1} and tracker.rejected_senders == {"e1": 1}
    assert tracker.pending == 1, "nothing was combined"


def test_a_quantized_models_rounding_is_still_a_probability_vector() -> None:
    int8_steps = tuple(round(value * 256) / 256 for value in (0.7, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01))
    assert math.isclose(sum(int8_steps), 1.0, abs_tol=0.02)
    assert answer("e1", "ensemble_1", int8_steps).probability_problem() is None


def test_answers_for_clips_of_other_runs_are_rejected() -> None:
    tracker = EnsembleTracker(LABELS, expect=1, timeout_s=5.0, policy="sum")
    tracker.sent("run1-00000", "yes", now=0.0)
    assert tracker.add("run0-00000", answer("e1", "ensemble_1"), 0.1) == UNKNOWN_CLIP
    assert tracker.rejected == {UNKNOWN_CLIP: 1}


# --------------------------------------------------------------------------- #
# Accounts and TLS files
# --------------------------------------------------------------------------- #


def test_the_password_comes_from_its_file_and_stays_out_of_reprs_and_flags(tmp_path) -> None:
    password_file = tmp_path / "e1.password"
    password_file.write_text("s3cret pass\n")
    password_file.chmod(0o600)
    security = BrokerSecurity.load(username="e1", password_file=password_file)
    assert security.password == "s3cret pass"
    assert "s3cret" not in repr(security)
    assert security.arguments() == ["--username", "e1", "--password-file", str(password_file)]


def test_a_password_file_others_can_read_is_warned_about(tmp_path, caplog) -> None:
    password_file = tmp_path / "e1.password"
    password_file.write_text("Zq7-visible\n")
    password_file.chmod(0o644)
    BrokerSecurity.load(username="e1", password_file=password_file)
    assert "can be read by other users" in caplog.text and "Zq7-visible" not in caplog.text


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"password_file": "PASSWORD"}, "--password-file needs --username"),
        ({"username": "e1", "password_file": "missing"}, "--password-file .*missing: No such file"),
        ({"username": "e1", "password_file": "EMPTY"}, "the first line is empty"),
        ({"cafile": "missing"}, "--cafile .*missing"),
        ({"cafile": "EMPTY"}, "--cafile"),
        ({"certfile": "missing"}, "--certfile and --keyfile go together"),
    ],
)
def test_unusable_security_files_name_their_flag(tmp_path, kwargs, message) -> None:
    (tmp_path / "PASSWORD").write_text("pw\n")
    (tmp_path / "EMPTY").write_text("")
    paths = {key: (tmp_path / value if key != "username" else value) for key, value in kwargs.items()}
    with pytest.raises(SecurityError, match=message):
        BrokerSecurity.load(**paths)


def test_tls_files_with_a_plain_url_are_refused(tmp_path) -> None:
    security = BrokerSecurity(cafile=tmp_path / "ca.crt")
    with pytest.raises(SecurityError, match="mqtts://broker:<TLS port>"):
        security.check_for(BrokerAddress("broker", 1883))
    security.check_for(BrokerAddress("broker", 8883, tls=True))


@pytest.mark.parametrize(
    ("script", "flags", "message"),
    [
        ("cooperative_client.py", ["--broker", "mqtt://127.0.0.1:1", "--cafile", "ca.crt"], "--cafile"),
        ("cooperative_client.py", ["--embedded-broker", "--username", "e1"], "the embedded broker has no accounts"),
        ("cooperative_client.py", ["--broker", "mqtts://h", "--username", "e1", "--password-file", "nowhere"],
         "--password-file nowhere: No such file"),
        ("inference_client.py", ["--model", "m", "--password-file", "nowhere"], "--password-file needs --username"),
        ("inference_client.py", ["--model", "m", "--broker", "ws://h"], "--broker: broker URL 'ws://h'"),
    ],
)
def test_bad_account_and_tls_flags_are_usage_errors(cli, tmp_path, script, flags, message) -> None:
    (tmp_path / "ca.crt").write_text("")
    done = cli(script, *[str(tmp_path / flag) if flag == "ca.crt" else flag for flag in flags], timeout=60)
    assert done.returncode == 2 and message in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
