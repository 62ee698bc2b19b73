"""A person's erasure without I/O: the address it takes, the sessions' subjects it revokes, the order of its steps
(the gateway's before the directory's, so that a retry after a failure still finds the person), its summary."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from typing import Any, cast

import pytest
from graphql import GraphQLError

from gateway import erasure
from gateway.clients import ServiceClients
from services.common.auth import Principal, Role
from services.common.errors import Forbidden, ValidationFailed
from services.common.settings import Settings

ADMIN = Principal(subject="admin:test", role=Role.ADMIN)
PERSON_ID = str(uuid.uuid4())


@pytest.mark.parametrize(
    ("given", "kept"),
    [
        ("Claire.Dupont@Example.ORG", "claire.dupont@example.org"),
        ("  a@b.fr\t", "a@b.fr"),
        ("é@exemple.fr", "é@exemple.fr"),
    ],
)
def test_an_address_is_kept_as_every_store_compares_it(given: str, kept: str) -> None:
    assert erasure.erasure_address(given) == kept


@pytest.mark.parametrize(
    ("given", "rule"),
    [
        ("", "length"),
        ("   ", "length"),
        ("a@b.fr" + "x" * 320, "length"),
        ("pas une adresse", "format"),
        ("a@b", "format"),
        ("a b@c.fr", "format"),
        ("a\x00@b.fr", "format"),
        ("a@@b.fr", "format"),
    ],
)
def test_a_bad_address_names_the_field_and_the_rule(given: str, rule: str) -> None:
    with pytest.raises(ValidationFailed) as refused:
        erasure.erasure_address(given)
    assert refused.value.field == "email" and refused.value.extra["rule"] == rule


def test_sessions_are_found_by_their_persons_subject_each_once() -> None:
    one, other = uuid.uuid4(), uuid.uuid4()
    subjects = erasure.person_subjects([str(one), one, other, str(other).upper()])
    assert subjects == sorted({f"person:{one}", f"person:{other}"})
    assert erasure.person_subjects([]) == []
    with pytest.raises(ValueError):
        erasure.person_subjects(["not-an-id"])


def test_the_summary_says_each_count() -> None:
    done = erasure.Erasure(persons_deleted=1, memberships_deleted=2, sessions_revoked=3)
    assert done.summary() == (
        "persons deleted: 1, memberships deleted: 2, claims deleted: 0, registrations anonymised: 0, "
        "sessions revoked: 3, sign-in links deleted: 0"
    )
    assert erasure.Erasure().summary().count(": 0") == 6


class Steps:
    """Fake clients and sign-in store that write down each step, and fail the one they are told to."""

    def __init__(self, person: str | None, fail: str | None = None) -> None:
        self.person = person
        self.fail = fail
        self.done: list[str] = []
        self.clients = SimpleNamespace(
            directory=SimpleNamespace(lookup_person=self.lookup, erase_person=self.erase_directory),
            events=SimpleNamespace(erase_person=self.erase_events),
        )

    def step(self, name: str) -> None:
        if name == self.fail:
            raise GraphQLError(f"{name} is unavailable", extensions={"code": "UNAVAILABLE"})
        self.done.append(name)

    async def lookup(self, address: str) -> dict[str, Any]:
        self.step("lookup")
        return {"person": {"id": self.person} if self.person else None, "memberships": []}

    async def erase_directory(self, address: str, principal: Principal) -> dict[str, int]:
        self.step("directory")
        found, self.person = self.person, None
        return {
            "persons_deleted": int(found is not None),
            "memberships_deleted": 2 if found else 0,
            "claims_deleted": 0,
        }

    async def erase_events(self, address: str, principal: Principal) -> dict[str, int]:
        self.step("events")
        return {"registrations_anonymised": 1}

    async def forget_sign_in(
        self, settings: Settings, pool: object, address: str, person_ids: list[str], forget: object
    ) -> tuple[int, int]:
        self.step("gateway")
        self.done[-1] = f"gateway{person_ids}"
        return (len(person_ids), 0)


async def run(steps: Steps, monkeypatch: pytest.MonkeyPatch, principal: Principal = ADMIN) -> erasure.Erasure:
    monkeypatch.setattr(erasure, "forget_sign_in", steps.forget_sign_in)
    return await erasure.erase_person(
        Settings(_env_file=None),
        cast(Any, None),
        cast(ServiceClients, steps.clients),
        "A@B.fr",
        principal=principal,
    )


async def test_the_gateway_forgets_the_person_before_the_directory_does(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(PERSON_ID)
    done = await run(steps, monkeypatch)
    assert steps.done == ["lookup", f"gateway{[PERSON_ID]}", "directory", f"gateway{[PERSON_ID]}", "events"]
    assert done.persons_deleted == 1 and done.memberships_deleted == 2 and done.registrations_anonymised == 1
    assert done.sessions_revoked == 2  # both sweeps counted


async def test_a_retry_after_the_directory_failed_still_finds_the_person(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(PERSON_ID, fail="directory")
    with pytest.raises(GraphQLError):
        await run(steps, monkeypatch)
    assert steps.done == ["lookup", f"gateway{[PERSON_ID]}"]  # the events service was not reached
    steps.fail, steps.done = None, []
    done = await run(steps, monkeypatch)
    assert steps.done[:2] == ["lookup", f"gateway{[PERSON_ID]}"] and done.persons_deleted == 1


async def test_a_retry_after_the_events_failed_does_their_part(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(PERSON_ID, fail="events")
    with pytest.raises(GraphQLError):
        await run(steps, monkeypatch)
    steps.fail, steps.done = None, []
    done = await run(steps, monkeypatch)
    assert steps.done == ["lookup", "gateway[]", "directory", "gateway[]", "events"]
    assert (done.persons_deleted, done.registrations_anonymised) == (0, 1)


async def test_only_admins_erase_and_a_bad_address_reaches_no_service(monkeypatch: pytest.MonkeyPatch) -> None:
    steps = Steps(PERSON_ID)
    with pytest.raises(Forbidden):
        await run(steps, monkeypatch, Principal(subject="partner:x", role=Role.PARTNER))
    monkeypatch.setattr(erasure, "forget_sign_in", steps.forget_sign_in)
    with pytest.raises(ValidationFailed):
        await erasure.erase_person(
            Settings(_env_file=None), cast(Any, None), cast(ServiceClients, steps.clients), "x", principal=ADMIN
        )
    assert steps.done == []
