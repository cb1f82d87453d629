"""Who may answer: the inference clients that announced themselves for this session.

A client is a *member* once it has said, on ``<prefix>/status/<client>``, that it is
online with the session's FeatureConfig and, when the cooperative client expects
particular models (``--expect-models``, or the models it spawned), one of those. An
answer counts only when its sender is a member and the answer is for the model the
member announced; anything else on the prediction topics (a client that never
announced itself, one that announced another model, a payload that names a sender
other than its topic) is rejected, never combined.

Membership stays for the whole run once granted, so the last answers of a member
that dies mid-run still count; an ``offline`` status only stops it counting as
ready. What the roster cannot tell is whether the sender of a message is who its
topic says: on an open broker anyone may publish under any name. That is the
broker's job, with an ACL that pins the name level to the account
(``deploy/mosquitto/acl``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass

from kws.features import FeatureConfig
from kws.mqtt.protocol import ONLINE, ClientStatus, Prediction

# Why an answer's sender was refused (reasons of the report's rejected_answers).
SENDER_MISMATCH = "sender differs from its topic"
NOT_A_MEMBER = "sender not in the roster"
WRONG_MODEL = "model differs from the sender's announcement"


@dataclass(frozen=True)
class Member:
    """A client allowed to answer, as it announced itself."""

    client: str
    model: str
    answer_source: str
    """What answers a clip once: the client, or its share group (:attr:`ClientStatus.answer_source`)."""


class Roster:
    """Statuses seen on ``<prefix>/status/+`` and the members they make."""

    def __init__(self, config: FeatureConfig, expected_models: Collection[str] = ()) -> None:
        self.config = config
        self.expected_models = frozenset(expected_models)
        self.statuses: dict[str, ClientStatus] = {}
        self.members: dict[str, Member] = {}

    def update(self, status: ClientStatus) -> str | None:
        """Record a status whose topic named ``status.client``; returns why it does not make a member, if so."""
        self.statuses[status.client] = status
        if status.state != ONLINE:
            return None
        problem = self.admission_problem(status)
        if problem is None:
            self.members[status.client] = Member(status.client, status.model, status.answer_source)
        else:
            self.members.pop(status.client, None)
        return problem

    def admission_problem(self, status: ClientStatus) -> str | None:
        """Why an online client may not answer, or None when it may."""
        if status.config is None or status.config != self.config:
            return "it announced another FeatureConfig (it would skip every clip)"
        if self.expected_models and status.model not in self.expected_models:
            return f"its model {status.model!r} is not one of the expected {sorted(self.expected_models)}"
        return None

    def check(self, sender: str, prediction: Prediction) -> Member | str:
        """The member that may give this answer, or why the answer is rejected.

        ``sender`` is the client level of the answer's topic (what an ACL pins to the account).
        """
        if prediction.client != sender:
            return SENDER_MISMATCH
        member = self.members.get(sender)
        if member is None:
            return NOT_A_MEMBER
        if prediction.model != member.model:
            return WRONG_MODEL
        return member

    def online_sources(self) -> set[str]:
        """Answer sources of the members online now: what the run waits for before it starts."""
        return {
            member.answer_source
            for client, member in self.members.items()
            if self.statuses[client].state == ONLINE
        }

    def online_models(self) -> set[str]:
        return {member.model for client, member in self.members.items() if self.statuses[client].state == ONLINE}

    def ready(self, expect: int) -> bool:
        """``expect`` answer sources online, and every expected model among them."""
        return len(self.online_sources()) >= expect and self.expected_models <= self.online_models()
