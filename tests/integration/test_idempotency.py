"""Creating mutations with an idempotency key, over the real stack: a retry answers the first answer, one record.

Each of registerActor, publishEvent, registerForEvent and publishNeed is retried sequentially, concurrently and
after a stall in which the caller gave up while the service went on to commit; the same key with another input is
a CONFLICT; keys are each caller's own and expire after MAILLAGE_IDEMPOTENCY_RETENTION_HOURS.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from services.common import idempotency
from services.common.auth import Role
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events
from tests.integration.gateway_fixtures import Gateway
from tests.integration.matching_fixtures import Matching
from tests.integration.test_gateway import RENNES, actor_input, need_input, register
from tests.integration.test_matching import eventually, in_replica


@dataclass
class Creation:
    """One creating mutation: its document, its input for a tag, who calls it, and how its records are counted."""

    field: str
    document: str
    variables: Callable[[str], dict[str, Any]]
    authorization: str
    database_url: str
    count_sql: str  # records made with a tag ($1)

    async def count(self, tag: str) -> int:
        conn = await asyncpg.connect(self.database_url)
        try:
            return int(await conn.fetchval(self.count_sql, tag))
        finally:
            await conn.close()


# A retry sends the same input: the moments in it are fixed once.
STARTS = (datetime.now(UTC) + timedelta(days=40)).replace(microsecond=0)
DEADLINE = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0).isoformat()


def event_input(tag: str, organizer_id: str) -> dict[str, Any]:
    starts = STARTS
    return {
        "title": f"Atelier réemploi {tag}",
        "kind": "WORKSHOP",
        "organizerIds": [organizer_id],
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(hours=2)).isoformat(),
        "place": {"address": "Place de la Mairie", **RENNES},
        "capacity": 500,
    }


@pytest.fixture(scope="module")
async def creations(gateway: Gateway, directory: Directory, events: Events, matching: Matching) -> dict[str, Creation]:
    tag = uuid.uuid4().hex[:6]
    authority = await register(gateway, f"Mairie I {tag}", kind="local_authority", legalForm="Commune", activities=[])
    organizer = await register(gateway, f"Atelier I {tag}")
    await in_replica(matching, authority["id"], organizer["id"])
    as_organizer = gateway.bearer(Role.ACTOR, organizer["id"])
    publish_event = "mutation($input: PublishEventInput!, $key: IdempotencyKey) { publishEvent(input: $input, idempotencyKey: $key) { id } }"

    async def event_published() -> str | None:  # the events service learns of the organizer from the broker
        answer = await gateway.gql(publish_event, {"input": event_input(f"open {tag}", organizer["id"])}, as_organizer)
        return None if answer.get("errors") else str(answer["data"]["publishEvent"]["id"])

    event_id = await eventually(event_published)
    return {
        "registerActor": Creation(
            "registerActor",
            "mutation($input: RegisterActorInput!, $key: IdempotencyKey) { registerActor(input: $input, idempotencyKey: $key) { id name } }",
            lambda t: {"input": actor_input(f"Ressourcerie {t}", contact={"email": f"{t}@example.org"})},
            gateway.admin,
            directory.database_url,
            "SELECT count(*) FROM actors WHERE name = 'Ressourcerie ' || $1",
        ),
        "publishEvent": Creation(
            "publishEvent",
            publish_event,
            lambda t: {"input": event_input(t, organizer["id"])},
            as_organizer,
            events.database_url,
            "SELECT count(*) FROM events WHERE title = 'Atelier réemploi ' || $1",
        ),
        "registerForEvent": Creation(
            "registerForEvent",
            "mutation($e: ID!, $input: RegistrationInput!, $key: IdempotencyKey) { registerForEvent(eventId: $e, input: $input, idempotencyKey: $key) { id } }",
            lambda t: {"e": event_id, "input": {"person": {"name": "Camille", "email": f"{t}@example.org"}}},
            as_organizer,
            events.database_url,
            "SELECT count(*) FROM registrations WHERE person_email = $1 || '@example.org'",
        ),
        "publishNeed": Creation(
            "publishNeed",
            "mutation($input: PublishNeedInput!, $key: IdempotencyKey) { publishNeed(input: $input, idempotencyKey: $key) { id } }",
            lambda t: {"input": need_input(title=f"Un lieu de réemploi {t}", deadline=DEADLINE)},
            gateway.bearer(Role.COLLECTIVITY, authority["id"]),
            matching.database_url,
            "SELECT count(*) FROM needs WHERE title = 'Un lieu de réemploi ' || $1",
        ),
    }


MUTATIONS = ["registerActor", "publishEvent", "registerForEvent", "publishNeed"]


async def create(
    gateway: Gateway, creation: Creation, tag: str, key: str | None, authorization: str | None = None
) -> dict[str, Any]:
    return await gateway.gql(
        creation.document, {**creation.variables(tag), "key": key}, authorization or creation.authorization
    )


def created_id(answer: dict[str, Any], creation: Creation) -> str:
    assert not answer.get("errors"), answer["errors"]
    return str(answer["data"][creation.field]["id"])


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_a_retry_with_the_same_key_answers_the_first_answer_and_creates_nothing(
    gateway: Gateway, creations: dict[str, Creation], mutation: str
) -> None:
    creation, tag, key = creations[mutation], uuid.uuid4().hex[:8], str(uuid.uuid4())
    first = await create(gateway, creation, tag, key)
    again = await create(gateway, creation, tag, key)
    assert created_id(again, creation) == created_id(first, creation)
    assert again == first
    assert await creation.count(tag) == 1


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_two_concurrent_calls_with_one_key_create_one_record(
    gateway: Gateway, creations: dict[str, Creation], mutation: str
) -> None:
    creation, tag, key = creations[mutation], uuid.uuid4().hex[:8], str(uuid.uuid4())
    answers = await asyncio.gather(*(create(gateway, creation, tag, key) for _ in range(2)))
    assert created_id(answers[0], creation) == created_id(answers[1], creation)
    assert await creation.count(tag) == 1


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_a_retry_after_a_timeout_finds_the_creation_that_committed_late(
    gateway: Gateway, creations: dict[str, Creation], mutation: str
) -> None:
    """The service stalls (its outbox is locked): the caller gives up, the service commits, the retry replays."""
    creation, tag, key = creations[mutation], uuid.uuid4().hex[:8], str(uuid.uuid4())
    staller = await asyncpg.connect(creation.database_url)
    stall = staller.transaction()
    await stall.start()
    try:
        await staller.execute("LOCK TABLE outbox IN SHARE ROW EXCLUSIVE MODE")
        async with httpx.AsyncClient(timeout=1.0) as impatient:
            with pytest.raises(httpx.ReadTimeout):
                await impatient.post(
                    gateway.url + "/graphql",
                    json={"query": creation.document, "variables": {**creation.variables(tag), "key": key}},
                    headers={"Authorization": creation.authorization},
                )
        retry = asyncio.create_task(create(gateway, creation, tag, key))
        await asyncio.sleep(0.3)
        assert not retry.done()  # it waits for the first call, which holds its key
        assert await creation.count(tag) == 0
    finally:
        await stall.rollback()  # the service goes on: the first call commits
        await staller.close()
    answer = await retry
    assert await creation.count(tag) == 1
    conn = await asyncpg.connect(creation.database_url)
    try:
        stored = await conn.fetchval("SELECT body->>'id' FROM idempotency_keys WHERE key = $1", key)
    finally:
        await conn.close()
    assert created_id(answer, creation) == stored


@pytest.mark.parametrize("mutation", MUTATIONS)
async def test_the_same_key_with_another_input_is_a_conflict(
    gateway: Gateway, creations: dict[str, Creation], mutation: str
) -> None:
    creation, tag, key = creations[mutation], uuid.uuid4().hex[:8], str(uuid.uuid4())
    created_id(await create(gateway, creation, tag, key), creation)
    other = await create(gateway, creation, tag + "b", key)
    [error] = other["errors"]
    assert error["extensions"] == {"code": "CONFLICT", "field": "idempotencyKey", "rule": "reused"}, error
    assert await creation.count(tag + "b") == 0


async def test_a_key_is_the_callers_own(gateway: Gateway, creations: dict[str, Creation]) -> None:
    creation, tag, key = creations["registerActor"], uuid.uuid4().hex[:8], str(uuid.uuid4())
    mine = created_id(await create(gateway, creation, tag, key), creation)
    partner = gateway.bearer(Role.ADMIN, subject=f"admin:other-{tag}")
    theirs = created_id(await create(gateway, creation, tag, key, partner), creation)
    assert mine != theirs and await creation.count(tag) == 2


async def test_without_a_key_a_retry_creates_again_or_is_refused_as_a_duplicate(
    gateway: Gateway, creations: dict[str, Creation]
) -> None:
    need, tag = creations["publishNeed"], uuid.uuid4().hex[:8]
    assert created_id(await create(gateway, need, tag, None), need) != created_id(
        await create(gateway, need, tag, None), need
    )
    assert await need.count(tag) == 2
    registration = creations["registerForEvent"]
    created_id(await create(gateway, registration, tag, None), registration)
    [error] = (await create(gateway, registration, tag, None))["errors"]
    assert error["extensions"]["code"] == "CONFLICT" and error["extensions"]["rule"] == "unique"


@pytest.mark.parametrize("key", ["", "x" * 256, "clé-accentuée", "two words"])
async def test_a_malformed_key_names_the_argument_and_the_rule(
    gateway: Gateway, creations: dict[str, Creation], key: str
) -> None:
    creation, tag = creations["publishNeed"], uuid.uuid4().hex[:8]
    [error] = (await create(gateway, creation, tag, key))["errors"]
    assert error["extensions"] == {"code": "BAD_USER_INPUT", "field": "idempotencyKey", "rule": "format"}, error
    assert await creation.count(tag) == 0


async def test_the_rest_api_replays_status_headers_and_body_and_forgets_after_the_retention(
    matching: Matching, creations: dict[str, Creation]
) -> None:
    need, tag, key = creations["publishNeed"], uuid.uuid4().hex[:8], str(uuid.uuid4())
    authority = await asyncpg.connect(matching.database_url)
    try:
        owner = str(await authority.fetchval("SELECT id FROM actors WHERE name LIKE 'Mairie I %' LIMIT 1"))
    finally:
        await authority.close()
    body = {
        "title": f"Un lieu de réemploi {tag}",
        "kind": "partnership",
        "themes": ["reemploi"],
        "service_types": ["fourniture_biens"],
        "commune_code": RENNES["communeCode"],
        "location": RENNES["location"],
        "deadline": DEADLINE,
    }
    headers = {**matching.token(Role.COLLECTIVITY, owner), idempotency.KEY_HEADER: key}
    async with matching.client() as http:
        first = await http.post("/v1/needs", json=body, headers=headers)
        again = await http.post("/v1/needs", json=body, headers=headers)
        assert first.status_code == again.status_code == 201, again.text
        assert again.json() == first.json()
        for header in ("etag", "location"):
            assert again.headers[header] == first.headers[header]
        assert again.headers[idempotency.REPLAYED_HEADER] == "true" and idempotency.REPLAYED_HEADER not in first.headers

        bad = await http.post("/v1/needs", json=body, headers={**headers, idempotency.KEY_HEADER: "two words"})
        assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "Idempotency-Key", bad.text

        conn = await asyncpg.connect(matching.database_url)
        try:
            retention = timedelta(hours=matching.settings.idempotency_retention_hours)
            await conn.execute(
                "UPDATE idempotency_keys SET created_at = now() - $2::interval - interval '1 minute' WHERE key = $1",
                key,
                retention,
            )
            later = await http.post("/v1/needs", json=body, headers=headers)
            assert later.status_code == 201 and later.json()["id"] != first.json()["id"]  # the key had expired
            assert await need.count(tag) == 2
            await conn.execute(
                "UPDATE idempotency_keys SET created_at = now() - $2::interval * 2 WHERE key = $1", key, retention
            )
            assert await idempotency.purge(conn, matching.settings) >= 1
            assert await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE key = $1", key) == 0
        finally:
            await conn.close()


async def test_erasing_a_person_forgets_the_kept_answers_that_name_them(
    gateway: Gateway, events: Events, creations: dict[str, Creation]
) -> None:
    registration, tag, key = creations["registerForEvent"], uuid.uuid4().hex[:8], str(uuid.uuid4())
    created_id(await create(gateway, registration, tag, key), registration)
    async with events.client() as http:
        erased = await http.post("/v1/erasures", json={"email": f"{tag}@example.org"}, headers=events.admin)
    assert erased.status_code == 200, erased.text
    conn = await asyncpg.connect(events.database_url)
    try:
        assert (
            await conn.fetchval("SELECT count(*) FROM idempotency_keys WHERE body::text LIKE '%' || $1 || '%'", tag)
            == 0
        )
    finally:
        await conn.close()
