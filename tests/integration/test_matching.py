"""Needs to actors over the real stack: directory events → replica → matching → match.found → webhooks and e-mails."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import asyncpg
import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from services.common.auth import Role
from services.matching.webhooks import TargetRefused, check_target
from tests.integration.directory_fixtures import Directory
from tests.integration.matching_fixtures import Matching
from tests.integration.test_directory_api import create

pytestmark = pytest.mark.asyncio
T = TypeVar("T")


async def eventually(probe: Callable[[], Awaitable[T | None]], timeout_s: float = 20.0) -> T:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        value = await probe()
        if value:
            return value
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.05)


async def in_replica(matching: Matching, *actor_ids: str) -> None:
    conn = await asyncpg.connect(matching.database_url)
    try:

        async def probe() -> bool:
            count = await conn.fetchval("SELECT count(*) FROM actors WHERE id = ANY($1::uuid[])", list(actor_ids))
            return bool(count == len(actor_ids))

        await eventually(probe)
    finally:
        await conn.close()


def need_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "title": "Une ressourcerie pour le quartier",
        "kind": "partnership",
        "description": "Collecte et revente d'objets de seconde main, réemploi",
        "themes": ["reemploi"],
        "service_types": ["fourniture_biens"],
        "commune_code": "25056",
        "location": {"lat": 47.2378, "lon": 6.0241},
        "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }
    body.update(overrides)
    return body


async def setting(directory: Directory, matching: Matching) -> dict[str, dict[str, Any]]:
    """A Besançon authority, a ressourcerie 3 km away, one 80 km away and a bike workshop next door."""
    tag = uuid.uuid4().hex[:6]
    authority = await create(
        directory,
        name=f"Ville test {tag}",
        kind="local_authority",
        legal_form="Commune",
        themes=[],
        service_types=[],
        activities=[],
        qpv_code=None,
        contact={"email": f"mairie-{tag}@example.org"},
    )
    near = await create(
        directory,
        name=f"Ressourcerie proche {tag}",
        activities=[],
        location={"lat": 47.2500, "lon": 6.0600},
        contact={"email": f"proche-{tag}@example.org"},
    )
    far = await create(
        directory,
        name=f"Ressourcerie lointaine {tag}",
        commune_code="39300",
        location={"lat": 46.67, "lon": 5.55},
        activities=[],
    )
    bike = await create(
        directory,
        name=f"Atelier vélo {tag}",
        themes=["mobilite"],
        service_types=["prestation_service"],
        activities=[],
        location={"lat": 47.2380, "lon": 6.0250},
        # Its own words: with the directory fixture's default (a ressourcerie's) the text door would let it in.
        description="Atelier participatif d'autoréparation de vélos et vélo-école.",
    )
    await in_replica(matching, authority["id"], near["id"], far["id"], bike["id"])
    return {"authority": authority, "near": near, "far": far, "bike": bike}


async def publish(matching: Matching, authority_id: str, **overrides: Any) -> dict[str, Any]:
    async with matching.client() as http:
        response = await http.post(
            "/v1/needs", json=need_body(**overrides), headers=matching.token(Role.COLLECTIVITY, authority_id)
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def matches_of(matching: Matching, need_id: str) -> list[dict[str, Any]]:
    async with matching.client() as http:
        response = await http.get(f"/v1/needs/{need_id}/matches", headers=matching.admin)
    assert response.status_code == 200, response.text
    return list(response.json())


async def test_a_published_need_reaches_the_right_actors_with_webhooks_and_emails(
    own_matching: tuple[Directory, Matching],
) -> None:
    # A stack of its own: the shared one's webhook deliveries and e-mails queue behind every other test's.
    directory, matching = own_matching
    actors = await setting(directory, matching)
    path = f"/hook-{uuid.uuid4().hex[:6]}"
    matching.receiver.scripts[path] = [500, 500]
    partner = matching.token(Role.PARTNER, subject=f"partner-{uuid.uuid4().hex[:6]}")
    async with matching.client() as http:
        created = await http.post(
            "/v1/webhooks", json={"url": matching.receiver.url + path, "event_types": ["match.found"]}, headers=partner
        )
    assert created.status_code == 201, created.text
    secret = created.json()["secret"]
    assert secret.startswith("whsec_")

    need = await publish(matching, actors["authority"]["id"])
    found = await eventually(lambda: matches_of(matching, need["id"]))
    by_actor = {m["actor_id"]: m for m in found}
    assert actors["near"]["id"] in by_actor
    assert actors["far"]["id"] not in by_actor and actors["bike"]["id"] not in by_actor
    reasons = {r["code"]: r["text"] for r in by_actor[actors["near"]["id"]]["reasons"]}
    assert reasons["distance"].startswith("à ") and "km" in reasons["distance"]

    async def delivered() -> bool:
        ids = matching.receiver.ids(path)
        return bool(ids) and all(count >= 3 for count in ids.values())

    await eventually(delivered)
    await asyncio.sleep(0.5)  # nothing more after the 200
    ids = matching.receiver.ids(path)
    assert len(ids) == len(found) and set(ids.values()) == {3}
    _, headers, body = next(r for r in matching.receiver.received if r[0] == path)
    payload = Webhook(secret).verify(body, headers)
    assert payload["type"] == "match.found" and payload["data"]["match"]["need_id"] == need["id"]

    async def mails() -> list[str]:
        return [m["To"] for m in matching.smtp.messages if need["title"] in str(m["Subject"])]

    tag = actors["near"]["name"].split()[-1]

    async def told(address: str) -> bool:  # the mails of one need arrive one by one: wait for each
        return address in [m["To"] for m in matching.smtp.messages]

    assert await eventually(lambda: told(f"proche-{tag}@example.org"))  # the matched actor, told of the need
    assert await eventually(lambda: told(f"mairie-{tag}@example.org"))  # the authority, told of its matches
    assert f"proche-{tag}@example.org" in await mails()


async def test_an_actor_registered_after_the_need_is_matched_and_notified_once(
    directory: Directory, matching: Matching
) -> None:
    actors = await setting(directory, matching)
    need = await publish(matching, actors["authority"]["id"])
    await eventually(lambda: matches_of(matching, need["id"]))
    newcomer = await create(directory, name="Recyclerie nouvelle", activities=[], location={"lat": 47.245, "lon": 6.03})

    async def matched() -> bool:
        return newcomer["id"] in {m["actor_id"] for m in await matches_of(matching, need["id"])}

    await eventually(matched)
    async with directory.client() as http:  # a change of the actor does not notify it again
        current = (await http.get(f"/v1/actors/{newcomer['id']}", headers=directory.admin)).json()
        edit = {k: v for k, v in current.items() if k in ("name", "kind", "commune_code", "themes", "service_types")}
        edit["description"] = "Recyclerie, réemploi et réparation"
        response = await http.put(
            f"/v1/actors/{newcomer['id']}",
            json={**edit, "location": current["location"]},
            headers={**directory.admin, "If-Match": f'"{current["version"]}"'},
        )
        assert response.status_code == 200, response.text
    conn = await asyncpg.connect(matching.database_url)
    try:
        await eventually(
            lambda: conn.fetchval("SELECT version > 1 FROM actors WHERE id = $1", uuid.UUID(newcomer["id"]))
        )
        rows = await conn.fetch(
            """SELECT ce_id FROM outbox WHERE ce_type LIKE '%match.found'
               AND data->'match'->>'actor_id' = $1 AND data->'match'->>'need_id' = $2""",
            newcomer["id"],
            need["id"],
        )
    finally:
        await conn.close()
    assert len(rows) == 1


async def test_an_actor_registered_after_the_need_reaches_it_through_a_related_theme_once(
    own_matching: tuple[Directory, Matching],
) -> None:
    # Its own stack: in the shared one, other tests' actors near Besançon fill the need's top K with shared themes,
    # and a related-theme actor (ranked below them, as it should be) never enters it.
    directory, matching = own_matching
    actors = await setting(directory, matching)
    need = await publish(matching, actors["authority"]["id"])
    await eventually(lambda: matches_of(matching, need["id"]))
    circular = await create(  # declared "économie circulaire" only, as many recycleries do
        directory,
        name="Recyclerie circulaire",
        themes=["economie_circulaire"],
        activities=[],
        location={"lat": 47.246, "lon": 6.031},
    )

    async def matched() -> dict[str, Any] | None:
        return next((m for m in await matches_of(matching, need["id"]) if m["actor_id"] == circular["id"]), None)

    match = await eventually(matched)
    assert any(r["code"] == "related_theme" and r["text"].startswith("thème voisin") for r in match["reasons"])
    conn = await asyncpg.connect(matching.database_url)
    try:
        rows = await conn.fetch(
            """SELECT ce_id FROM outbox WHERE ce_type LIKE '%match.found'
               AND data->'match'->>'actor_id' = $1 AND data->'match'->>'need_id' = $2""",
            circular["id"],
            need["id"],
        )
    finally:
        await conn.close()
    assert len(rows) == 1


async def test_closing_a_need_withdraws_pending_matches_and_stops_matching(
    directory: Directory, matching: Matching
) -> None:
    actors = await setting(directory, matching)
    need = await publish(matching, actors["authority"]["id"])
    await eventually(lambda: matches_of(matching, need["id"]))
    owner = matching.token(Role.COLLECTIVITY, actors["authority"]["id"])
    stranger = matching.token(Role.COLLECTIVITY, actors["near"]["id"])
    async with matching.client() as http:
        refused = await http.post(f"/v1/needs/{need['id']}/close", json={"status": "fulfilled"}, headers=stranger)
        closed = await http.post(f"/v1/needs/{need['id']}/close", json={"status": "fulfilled"}, headers=owner)
        again = await http.post(f"/v1/needs/{need['id']}/close", json={"status": "closed"}, headers=owner)
    assert refused.status_code == 403
    assert closed.status_code == 200 and closed.json()["status"] == "fulfilled"
    assert again.status_code == 409
    assert {m["status"] for m in await matches_of(matching, need["id"])} == {"withdrawn"}


async def test_a_need_reserved_by_an_edit_withdraws_the_unanswered_matches_it_leaves_out(
    directory: Directory, matching: Matching
) -> None:
    actors = await setting(directory, matching)
    need = await publish(matching, actors["authority"]["id"])
    found = await eventually(lambda: matches_of(matching, need["id"]))
    assert actors["near"]["id"] in {m["actor_id"] for m in found}  # an association
    owner = matching.token(Role.COLLECTIVITY, actors["authority"]["id"])
    async with matching.client() as http:  # reserved to cooperatives: its event matches it again
        edited = await http.patch(f"/v1/needs/{need['id']}", json={"eligible_kinds": ["cooperative"]}, headers=owner)
    assert edited.status_code == 200, edited.text

    async def withdrawn() -> bool:
        return {
            m["status"] for m in await matches_of(matching, need["id"]) if m["actor_id"] == actors["near"]["id"]
        } == {"withdrawn"}

    await eventually(withdrawn)
    conn = await asyncpg.connect(matching.database_url)
    try:
        told = await conn.fetchval(
            """SELECT count(*) FROM outbox WHERE ce_type LIKE '%match.withdrawn'
               AND data->'match'->>'actor_id' = $1 AND data->'match'->>'need_id' = $2""",
            actors["near"]["id"],
            need["id"],
        )
    finally:
        await conn.close()
    assert told == 1  # announced once, to the actor and to partners


async def test_the_match_lifecycle(directory: Directory, matching: Matching) -> None:
    actors = await setting(directory, matching)
    path = f"/viewed-{uuid.uuid4().hex[:6]}"
    partner = matching.token(Role.PARTNER, subject=f"partner-{uuid.uuid4().hex[:6]}")
    async with matching.client() as http:
        hook = await http.post(
            "/v1/webhooks", json={"url": matching.receiver.url + path, "event_types": ["match.viewed"]}, headers=partner
        )
    assert hook.status_code == 201, hook.text
    need = await publish(matching, actors["authority"]["id"])
    found = await eventually(lambda: matches_of(matching, need["id"]))
    match = next(m for m in found if m["actor_id"] == actors["near"]["id"])
    me = matching.token(Role.ACTOR, actors["near"]["id"])
    owner = matching.token(Role.COLLECTIVITY, actors["authority"]["id"])
    async with matching.client() as http:
        viewed = await http.post(f"/v1/matches/{match['id']}/view", headers=me)
        viewed_again = await http.post(f"/v1/matches/{match['id']}/view", headers=me)
        early = await http.post(f"/v1/matches/{match['id']}/select", json={}, headers=owner)
        no_reason = await http.post(f"/v1/matches/{match['id']}/respond", json={"response": "declined"}, headers=me)
        interested = await http.post(
            f"/v1/matches/{match['id']}/respond", json={"response": "interested", "comment": "Avec plaisir"}, headers=me
        )
        by_other = await http.post(f"/v1/matches/{match['id']}/select", json={}, headers=me)
        selected = await http.post(f"/v1/matches/{match['id']}/select", json={"comment": "Retenu"}, headers=owner)
    assert viewed.json()["status"] == "viewed"
    assert viewed_again.status_code == 200 and viewed_again.json()["status"] == "viewed"
    assert early.status_code == 409
    assert no_reason.status_code == 422
    assert interested.json()["status"] == "interested"
    assert by_other.status_code == 403
    assert selected.json()["status"] == "selected"

    # The first view only is published, keyed by need like the match's other events, so they stay in order.
    conn = await asyncpg.connect(matching.database_url)
    try:
        rows = await conn.fetch(
            "SELECT topic, key, ce_type, headers, data FROM outbox WHERE data->'match'->>'id' = $1 ORDER BY id",
            match["id"],
        )
    finally:
        await conn.close()
    events = [(r["ce_type"].removeprefix("org.maillage.matching."), r["topic"], r["key"]) for r in rows]
    assert events == [
        (kind, "maillage.matching.match.v1", need["id"])
        for kind in ("match.found", "match.viewed", "match.responded", "match.selected")
    ]
    event = json.loads(rows[1]["data"])["match"]
    assert (event["status"], event["need_id"], event["actor_id"]) == ("viewed", need["id"], actors["near"]["id"])
    assert json.loads(rows[1]["headers"])["subject"] == match["id"]

    # A partner that asked for match.viewed is told once, by the notifier (its endpoint hears every need's views).
    async def told() -> list[tuple[str, str]]:
        bodies = [json.loads(body) for p, _, body in matching.receiver.received if p == path]
        return [(b["type"], b["data"]["match"]["status"]) for b in bodies if b["data"]["match"]["id"] == match["id"]]

    await eventually(told)
    await asyncio.sleep(0.5)  # nothing more: the second view published nothing
    assert await told() == [("match.viewed", "viewed")]


async def test_bad_needs_get_422_naming_the_field(directory: Directory, matching: Matching) -> None:
    actors = await setting(directory, matching)
    owner = matching.token(Role.COLLECTIVITY, actors["authority"]["id"])
    cases = {
        "themes": need_body(themes=["astrologie"]),
        "deadline": need_body(deadline=(datetime.now(UTC) - timedelta(days=1)).isoformat()),
        "commune_code": need_body(commune_code="99999"),
        "radius_km": need_body(perimeter={"radius_km": 5000}),
        "territories": need_body(perimeter={"territories": ["DEP-999"]}),
        "service_types": need_body(service_types=["magie"]),
    }
    async with matching.client() as http:
        for name, body in cases.items():
            response = await http.post("/v1/needs", json=body, headers=owner)
            assert response.status_code == 422, (name, response.text)
            assert name in json.dumps(response.json()), (name, response.text)
        as_actor = await http.post(
            "/v1/needs", json=need_body(), headers=matching.token(Role.ACTOR, actors["near"]["id"])
        )
    assert as_actor.status_code == 403


async def register_hook(http: Any, matching: Matching, path: str, partner: dict[str, str]) -> dict[str, Any]:
    """An endpoint on the test receiver for `need.published`, registered by `partner`."""
    created = await http.post(
        "/v1/webhooks",
        json={"url": matching.receiver.url + path, "event_types": ["need.published"]},
        headers=partner,
    )
    assert created.status_code == 201, created.text
    hook: dict[str, Any] = created.json()
    return hook


async def test_webhook_rules_no_retry_on_400_and_private_targets_refused(
    own_matching: tuple[Directory, Matching],
) -> None:
    _, matching = own_matching  # its deliveries queue behind no other test's
    path = f"/bad-{uuid.uuid4().hex[:6]}"
    matching.receiver.scripts[path] = [400]
    partner = matching.token(Role.PARTNER, subject=f"partner-{uuid.uuid4().hex[:6]}")
    async with matching.client() as http:
        hook = await register_hook(http, matching, path, partner)
        other = await http.get(f"/v1/webhooks/{hook['id']}", headers=matching.token(Role.PARTNER, subject="someone"))
        assert other.status_code == 404
        conn = await asyncpg.connect(matching.database_url)
        try:
            await conn.execute(
                "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload) VALUES ($1, $2, 'e1', 'need.published', '{}')",
                "msg_test_" + path.strip("/"),
                uuid.UUID(hook["id"]),
            )

            async def settled() -> str | None:
                status: str | None = await conn.fetchval(
                    "SELECT status FROM webhook_deliveries WHERE id = $1 AND status <> 'pending'",
                    "msg_test_" + path.strip("/"),
                )
                return status

            assert await eventually(settled) == "failed"
        finally:
            await conn.close()
        await asyncio.sleep(0.3)
        assert sum(matching.receiver.ids(path).values()) == 1
        attempts = await http.get(f"/v1/webhook-deliveries/msg_test_{path.strip('/')}/attempts", headers=partner)
        assert [a["status_code"] for a in attempts.json()] == [400]
    with pytest.raises(TargetRefused):
        await check_target("http://localhost:9/hook", allow_private=False)
    with pytest.raises(TargetRefused):
        await check_target("http://169.254.169.254/latest", allow_private=False)
    await check_target("http://localhost:9/hook", allow_private=True)


async def test_a_rotated_secret_keeps_signing_beside_the_new_one_for_a_day(
    own_matching: tuple[Directory, Matching],
) -> None:
    _, matching = own_matching  # its deliveries queue behind no other test's
    path = f"/rotated-{uuid.uuid4().hex[:6]}"
    partner = matching.token(Role.PARTNER, subject=f"partner-{uuid.uuid4().hex[:6]}")
    async with matching.client() as http:
        hook = await register_hook(http, matching, path, partner)
        rotated = await http.post(f"/v1/webhooks/{hook['id']}/rotate-secret", headers=partner)
        assert rotated.status_code == 200, rotated.text
    old, new = hook["secret"], rotated.json()["secret"]
    assert old != new

    conn = await asyncpg.connect(matching.database_url)

    async def deliver(tag: str) -> tuple[dict[str, str], bytes]:
        await conn.execute(
            "INSERT INTO webhook_deliveries (id, endpoint_id, event_id, event_type, payload) VALUES ($1, $2, $3, 'need.published', '{\"n\": 1}')",
            f"msg_{tag}{path.strip('/')}",
            uuid.UUID(hook["id"]),
            tag,
        )

        async def received() -> tuple[dict[str, str], bytes] | None:
            for got_path, headers, body in matching.receiver.received:
                if got_path == path and headers["webhook-id"] == f"msg_{tag}{path.strip('/')}":
                    return headers, body
            return None

        return await eventually(received)

    try:
        headers, body = await deliver("during")
        assert len(headers["webhook-signature"].split(" ")) == 2
        assert Webhook(new).verify(body, headers) == {"n": 1}
        assert Webhook(old).verify(body, headers) == {"n": 1}  # the receiver has not switched yet

        await conn.execute(
            "UPDATE webhook_endpoints SET previous_secret_expires_at = now() - interval '1 second' WHERE id = $1",
            uuid.UUID(hook["id"]),
        )
        headers, body = await deliver("after")
        assert len(headers["webhook-signature"].split(" ")) == 1
        assert Webhook(new).verify(body, headers) == {"n": 1}
        with pytest.raises(WebhookVerificationError):
            Webhook(old).verify(body, headers)
    finally:
        await conn.close()
