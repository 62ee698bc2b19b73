"""The GraphQL additions the web console's screens use, against the real stack: `matchUpdated`, a need's match
counts, partial need edits, match inboxes by status, and the commune, territory and vocabulary pickers."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from services.common.auth import Role
from services.common.settings import Settings
from tests.integration.gateway_fixtures import Gateway
from tests.integration.matching_fixtures import Matching
from tests.integration.test_gateway import PUBLISH_NEED, codes, counting_gateway, need_input, register
from tests.integration.test_gateway_websocket import issue
from tests.integration.test_matching import eventually, in_replica

# Quimper: no other test module places actors or needs there, so these needs' matches are these actors only.
QUIMPER = {"communeCode": "29232", "location": {"lat": 47.9960, "lon": -4.1024}}

MATCH_UPDATED = """
subscription($needId: ID!) {
  matchUpdated(needId: $needId) { id needId actorId status responseComment createdAt updatedAt actor { name } }
}
"""
RESPOND = """mutation($id: ID!, $response: MatchResponse!, $comment: String) {
  respondToMatch(id: $id, response: $response, comment: $comment) { id status } }"""
VIEW = "mutation($id: ID!) { markMatchViewed(id: $id) { id status } }"
SELECT = 'mutation($id: ID!) { selectMatch(id: $id, comment: "Retenue") { id status } }'
CLOSE = 'mutation($id: ID!) { closeNeed(id: $id, status: FULFILLED, comment: "Pourvu") { id status } }'
NEED_MATCHES = "query($id: ID!) { need(id: $id) { matches { id actorId status } } }"


@pytest.fixture(scope="module")
async def quimper(gateway: Gateway, matching: Matching) -> dict[str, Any]:
    """Two local authorities and two actors of Quimper, known to matching, with their bearer tokens."""
    tag = uuid.uuid4().hex[:6]
    authority = await register(
        gateway, f"Ville de Quimper {tag}", kind="local_authority", legalForm="Commune", activities=[], **QUIMPER
    )
    other = await register(
        gateway, f"Quimper Agglo {tag}", kind="local_authority", legalForm="Commune", activities=[], **QUIMPER
    )
    first = await register(gateway, f"Ressourcerie de l'Odet {tag}", **QUIMPER)
    second = await register(gateway, f"Recyclerie du Steir {tag}", **QUIMPER)
    await in_replica(matching, authority["id"], other["id"], first["id"], second["id"])
    return {
        "authority": authority,
        "first": first,
        "second": second,
        "as_authority": gateway.bearer(Role.COLLECTIVITY, authority["id"]),
        "as_other": gateway.bearer(Role.COLLECTIVITY, other["id"]),
        "as_first": gateway.bearer(Role.ACTOR, first["id"]),
        "as_second": gateway.bearer(Role.ACTOR, second["id"]),
    }


async def matched_need(gateway: Gateway, world: dict[str, Any], **overrides: Any) -> tuple[str, dict[str, str]]:
    """A need of the Quimper authority and its match ids by actor, once both actors were matched."""
    data = await gateway.ok(PUBLISH_NEED, {"input": need_input(**QUIMPER, **overrides)}, world["as_authority"])
    need_id = str(data["publishNeed"]["id"])
    wanted = {world["first"]["id"], world["second"]["id"]}

    async def both() -> dict[str, str] | None:
        found = await gateway.ok(NEED_MATCHES, {"id": need_id}, world["as_authority"])
        by_actor = {m["actorId"]: m["id"] for m in found["need"]["matches"]}
        return by_actor if wanted <= by_actor.keys() else None

    return need_id, await eventually(both)


async def updates(queue: asyncio.Queue[dict[str, Any]], count: int, timeout_s: float = 10.0) -> list[dict[str, Any]]:
    """The next `count` matches a `matchUpdated` subscription delivers."""
    received = []
    for _ in range(count):
        message = await asyncio.wait_for(queue.get(), timeout_s)
        assert message["type"] == "next", message
        assert not message["payload"].get("errors"), message
        received.append(message["payload"]["data"]["matchUpdated"])
    return received


@contextlib.asynccontextmanager
async def refused_subscription(
    gateway: Gateway, need_id: str, authorization: str
) -> AsyncIterator[list[dict[str, Any]]]:
    """The errors a `matchUpdated` subscription is answered with (it must be refused)."""
    async with gateway.subscription(MATCH_UPDATED, {"needId": need_id}, authorization) as refused:
        message = await asyncio.wait_for(refused.get(), 10)
    assert message["type"] in ("error", "next"), message
    errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors")
    assert errors, message
    yield list(errors)


# --- matchUpdated ----------------------------------------------------------------------------------------------


async def test_an_authority_follows_its_needs_matches_changing_in_order_and_an_actor_only_its_own(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    need_id, match_of = await matched_need(gateway, quimper)
    first_match, second_match = match_of[quimper["first"]["id"]], match_of[quimper["second"]["id"]]
    async with (
        gateway.subscription(MATCH_UPDATED, {"needId": need_id}, quimper["as_authority"]) as authority_sees,
        gateway.subscription(MATCH_UPDATED, {"needId": need_id}, quimper["as_first"]) as first_sees,
    ):
        comment = "Nous pouvons collecter dès mars"
        await gateway.ok(VIEW, {"id": first_match}, quimper["as_first"])
        await gateway.ok(VIEW, {"id": first_match}, quimper["as_first"])  # seen again: no second change
        await gateway.ok(
            RESPOND, {"id": first_match, "response": "INTERESTED", "comment": comment}, quimper["as_first"]
        )
        await gateway.ok(SELECT, {"id": first_match}, quimper["as_authority"])
        await gateway.ok(CLOSE, {"id": need_id}, quimper["as_authority"])  # the second actor's match is withdrawn

        seen = await updates(authority_sees, 4)
        assert [(m["id"], m["status"]) for m in seen] == [
            (first_match, "viewed"),
            (first_match, "interested"),
            (first_match, "selected"),
            (second_match, "withdrawn"),
        ]
        assert seen[0]["responseComment"] is None
        assert seen[1]["responseComment"] == comment
        assert seen[0]["actor"]["name"] == quimper["first"]["name"]
        assert all(m["needId"] == need_id for m in seen)
        assert datetime.fromisoformat(seen[0]["createdAt"]) <= datetime.fromisoformat(seen[0]["updatedAt"])
        assert datetime.fromisoformat(seen[0]["updatedAt"]) <= datetime.fromisoformat(seen[1]["updatedAt"])
        assert datetime.fromisoformat(seen[1]["updatedAt"]) <= datetime.fromisoformat(seen[2]["updatedAt"])

        # The actor sees its own match change, not the other actor's withdrawal.
        own = await updates(first_sees, 3)
        assert [(m["id"], m["status"]) for m in own] == [
            (first_match, "viewed"),
            (first_match, "interested"),
            (first_match, "selected"),
        ]
        with pytest.raises(TimeoutError):
            await updates(first_sees, 1, timeout_s=1.0)


async def test_following_another_authoritys_need_or_an_unknown_one_is_refused(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    data = await gateway.ok(PUBLISH_NEED, {"input": need_input(**QUIMPER)}, quimper["as_authority"])
    async with refused_subscription(gateway, data["publishNeed"]["id"], quimper["as_other"]) as errors:
        assert errors[0]["extensions"]["code"] == "FORBIDDEN"
    async with refused_subscription(gateway, str(uuid.uuid4()), quimper["as_authority"]) as errors:
        assert errors[0]["extensions"]["code"] == "NOT_FOUND"
    async with refused_subscription(gateway, data["publishNeed"]["id"], "") as errors:
        assert errors[0]["extensions"]["code"] == "UNAUTHENTICATED"


async def test_a_match_updated_subscription_ends_with_4403_when_its_credential_is_revoked(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    token, credential_id = await issue(gateway, "collectivity", quimper["authority"]["id"])
    data = await gateway.ok(PUBLISH_NEED, {"input": need_input(**QUIMPER)}, quimper["as_authority"])
    async with gateway.socket(token) as socket:
        await socket.start("1", MATCH_UPDATED, {"needId": data["publishNeed"]["id"]})
        await asyncio.sleep(0.2)  # the subscription is registered once the server read the message
        await gateway.ok(
            "mutation($id: ID!) { revokeCredential(id: $id) { revokedAt } }", {"id": credential_id}, gateway.admin
        )
        await socket.until_closed(timeout_s=10)
        assert socket.close_code == 4403, (socket.close_code, socket.close_reason)


# --- an authority's needs at a glance, an actor's inbox ------------------------------------------------------

COUNTS = """query($owner: ID!, $since: DateTime) { needs(first: 10, filter: {ownerId: $owner}) { edges { node {
  id status matchCounts(answeredSince: $since) { total notified viewed interested declined selected withdrawn
  answeredSince } } } } }"""


async def test_match_counts_of_a_whole_list_of_needs_cost_one_call(
    gateway_settings: Settings, gateway: Gateway, matching: Matching, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:6]
    authority = await register(
        gateway, f"Quimper Est {tag}", kind="local_authority", legalForm="Commune", activities=[], **QUIMPER
    )
    actors = [await register(gateway, f"Atelier vélo {i} {tag}", **QUIMPER) for i in range(2)]
    await in_replica(matching, authority["id"], *[a["id"] for a in actors])
    as_authority = gateway.bearer(Role.COLLECTIVITY, authority["id"])
    world = {"as_authority": as_authority, "first": actors[0], "second": actors[1]}
    answered, untouched = await matched_need(gateway, world), await matched_need(gateway, world, title="Autre")
    before = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
    await gateway.ok(
        RESPOND,
        {"id": answered[1][actors[0]["id"]], "response": "INTERESTED"},
        gateway.bearer(Role.ACTOR, actors[0]["id"]),
    )
    as_second = gateway.bearer(Role.ACTOR, actors[1]["id"])
    await gateway.ok(VIEW, {"id": answered[1][actors[1]["id"]]}, as_second)
    async with counting_gateway(gateway_settings, monkeypatch) as (counting, transport):
        data = await counting.ok(COUNTS, {"owner": authority["id"], "since": before}, as_authority)
        calls = Counter(transport.calls)
        later = await counting.ok(
            COUNTS, {"owner": authority["id"], "since": datetime.now(UTC).isoformat()}, as_authority
        )
        without = await counting.ok(COUNTS, {"owner": authority["id"], "since": None}, as_authority)
    counts = {e["node"]["id"]: e["node"]["matchCounts"] for e in data["needs"]["edges"]}
    # Other tests' Quimper actors may be matched too: the counts are checked against the needs' own lists.
    for need_id in (answered[0], untouched[0]):
        listed = (await gateway.ok(NEED_MATCHES, {"id": need_id}, as_authority))["need"]["matches"]
        by_status = Counter(m["status"] for m in listed)
        assert counts[need_id]["total"] == len(listed) >= 2
        for status in ("notified", "viewed", "interested", "declined", "selected", "withdrawn"):
            assert counts[need_id][status] == by_status[status], (need_id, status, counts[need_id], by_status)
    assert (counts[answered[0]]["viewed"], counts[answered[0]]["interested"]) == (1, 1)
    assert counts[answered[0]]["answeredSince"] == 1
    assert counts[untouched[0]]["notified"] == counts[untouched[0]]["total"]
    assert counts[untouched[0]]["answeredSince"] == 0
    assert {e["node"]["id"]: e["node"]["matchCounts"]["answeredSince"] for e in later["needs"]["edges"]} == {
        answered[0]: 0,
        untouched[0]: 0,
    }
    assert all(e["node"]["matchCounts"]["answeredSince"] is None for e in without["needs"]["edges"])
    matching_port = httpx.URL(matching.url).port
    assert calls == Counter({f"GET {matching_port}": 1, f"POST {matching_port}": 1}), (
        f"the needs, then one batch of counts for all of them; got {calls}"
    )


async def test_another_authoritys_match_counts_are_refused_and_a_naive_instant_is_bad_input(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    data = await gateway.ok(PUBLISH_NEED, {"input": need_input(**QUIMPER)}, quimper["as_authority"])
    query = "query($id: ID!, $since: DateTime) { need(id: $id) { id matchCounts(answeredSince: $since) { total } } }"
    refused = await gateway.gql(query, {"id": data["publishNeed"]["id"]}, quimper["as_other"])
    assert codes(refused) == ["FORBIDDEN"]
    assert refused["data"]["need"] == {"id": data["publishNeed"]["id"], "matchCounts": None}
    naive = await gateway.gql(
        query, {"id": data["publishNeed"]["id"], "since": "2026-01-01T10:00:00"}, quimper["as_authority"]
    )
    assert codes(naive) == ["BAD_USER_INPUT"]
    assert naive["errors"][0]["extensions"]["field"] == "answeredSince"


async def test_an_actors_inbox_lists_its_matches_in_the_statuses_asked(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    declined_need, declined = await matched_need(gateway, quimper, title="Un atelier de réparation")
    open_need, still_open = await matched_need(gateway, quimper, title="Une collecte de quartier")
    mine = quimper["second"]["id"]
    reason = "Pas de bénévoles disponibles en mars"
    await gateway.ok(RESPOND, {"id": declined[mine], "response": "DECLINED", "comment": reason}, quimper["as_second"])
    inbox = """query($id: ID!, $statuses: [MatchStatus!]) { actor(id: $id) {
      matches(first: 50, statuses: $statuses) { id status responseComment need { id title } } } }"""
    pending = await gateway.ok(inbox, {"id": mine, "statuses": ["NOTIFIED", "VIEWED"]}, quimper["as_second"])
    pending_ids = {m["id"] for m in pending["actor"]["matches"]}
    assert still_open[mine] in pending_ids and declined[mine] not in pending_ids
    assert all(m["status"] in ("notified", "viewed") for m in pending["actor"]["matches"])
    answered = await gateway.ok(inbox, {"id": mine, "statuses": ["DECLINED"]}, quimper["as_second"])
    assert [(m["id"], m["responseComment"], m["need"]["id"]) for m in answered["actor"]["matches"]] == [
        (declined[mine], reason, declined_need)
    ]
    everything = await gateway.ok(inbox, {"id": mine, "statuses": None}, quimper["as_second"])
    assert {declined[mine], still_open[mine]} <= {m["id"] for m in everything["actor"]["matches"]}
    # The need's page filters its matches the same way.
    need_page = await gateway.ok(
        "query($id: ID!) { need(id: $id) { matches(statuses: [DECLINED]) { id } } }",
        {"id": declined_need},
        quimper["as_authority"],
    )
    assert need_page["need"]["matches"] == [{"id": declined[mine]}]
    empty = await gateway.gql(inbox, {"id": mine, "statuses": []}, quimper["as_second"])
    assert codes(empty) == ["BAD_USER_INPUT"] and empty["errors"][0]["extensions"]["field"] == "statuses"
    someone_elses = await gateway.gql(inbox, {"id": mine, "statuses": None}, quimper["as_first"])
    assert codes(someone_elses) == ["FORBIDDEN"]
    assert open_need  # published and matched above


# --- editing a need ----------------------------------------------------------------------------------------------

UPDATE_NEED = """mutation($id: ID!, $input: UpdateNeedInput!) { updateNeed(id: $id, input: $input) {
  id version title description themes budgetMin budgetMax perimeter { territories radiusKm } deadline status } }"""


async def test_update_need_changes_the_given_fields_only_and_says_what_is_stale_or_wrong(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    published = await gateway.ok(
        PUBLISH_NEED,
        {"input": need_input(**QUIMPER, budgetMin=1000, perimeter={"territories": ["EPCI-200068120"]})},
        quimper["as_authority"],
    )
    need_id = published["publishNeed"]["id"]
    before = (
        await gateway.ok(
            "query($id: ID!) { need(id: $id) { version description deadline } }",
            {"id": need_id},
            quimper["as_authority"],
        )
    )["need"]
    changed = (
        await gateway.ok(
            UPDATE_NEED,
            {
                "id": need_id,
                "input": {
                    "title": "Un lieu de réemploi à Kerfeunteun",
                    "budgetMax": 5000,
                    "version": before["version"],
                },
            },
            quimper["as_authority"],
        )
    )["updateNeed"]
    assert changed["title"] == "Un lieu de réemploi à Kerfeunteun"
    assert changed["version"] == before["version"] + 1
    assert (changed["budgetMin"], changed["budgetMax"]) == (1000, 5000)
    assert changed["description"] == before["description"] and changed["deadline"] == before["deadline"]
    assert changed["perimeter"] == {"territories": ["EPCI-200068120"], "radiusKm": None}
    # A page names the need's commune and its perimeter's territories without a search.
    named = await gateway.ok(
        "query($id: ID!) { need(id: $id) { communeName perimeter { places { code kind name } } } }",
        {"id": need_id},
        quimper["as_authority"],
    )
    assert named["need"] == {
        "communeName": "Quimper",
        "perimeter": {
            "places": [{"code": "EPCI-200068120", "kind": "EPCI", "name": "CA Quimper Bretagne Occidentale"}]
        },
    }

    stale = await gateway.gql(
        UPDATE_NEED,
        {"id": need_id, "input": {"title": "Trop tard", "version": before["version"]}},
        quimper["as_authority"],
    )
    assert codes(stale) == ["CONFLICT"] and stale["errors"][0]["extensions"]["field"] == "version"
    # A rule across fields sees the stored value: a maximum below the stored minimum.
    below = await gateway.gql(UPDATE_NEED, {"id": need_id, "input": {"budgetMax": 10}}, quimper["as_authority"])
    assert codes(below) == ["BAD_USER_INPUT"]
    assert below["errors"][0]["extensions"]["field"] == "input.budgetMax"
    unknown = await gateway.gql(
        UPDATE_NEED, {"id": need_id, "input": {"themes": ["pas_un_theme"]}}, quimper["as_authority"]
    )
    assert codes(unknown) == ["BAD_USER_INPUT"] and unknown["errors"][0]["extensions"]["field"] == "input.themes"
    empty = await gateway.gql(UPDATE_NEED, {"id": need_id, "input": {}}, quimper["as_authority"])
    assert codes(empty) == ["BAD_USER_INPUT"] and empty["errors"][0]["extensions"]["field"] == "input"
    not_theirs = await gateway.gql(UPDATE_NEED, {"id": need_id, "input": {"title": "Pris"}}, quimper["as_other"])
    assert codes(not_theirs) == ["FORBIDDEN"]
    after = await gateway.ok(
        "query($id: ID!) { need(id: $id) { version title budgetMax } }", {"id": need_id}, quimper["as_authority"]
    )
    assert after["need"] == {"version": before["version"] + 1, "title": changed["title"], "budgetMax": 5000}

    await gateway.ok(CLOSE, {"id": need_id}, quimper["as_authority"])
    closed = await gateway.gql(UPDATE_NEED, {"id": need_id, "input": {"title": "Rouvert"}}, quimper["as_authority"])
    assert codes(closed) == ["CONFLICT"]


async def test_update_need_removes_a_value_given_as_null_keeps_one_left_out_and_refuses_a_null_required_field(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    published = await gateway.ok(
        PUBLISH_NEED,
        {
            "input": need_input(
                **QUIMPER,
                budgetMin=1000,
                budgetMax=5000,
                eligibleKinds=["association"],
                perimeter={"territories": ["EPCI-200068120"], "radiusKm": 20},
            )
        },
        quimper["as_authority"],
    )
    need_id = published["publishNeed"]["id"]
    fields = "version title description budgetMin budgetMax eligibleKinds perimeter { territories radiusKm }"
    read = "query($id: ID!) { need(id: $id) { " + fields + " } }"
    before = (await gateway.ok(read, {"id": need_id}, quimper["as_authority"]))["need"]
    assert (before["budgetMin"], before["budgetMax"], before["perimeter"]["radiusKm"]) == (1000, 5000, 20)

    # A null removes: budgetMax is gone, budgetMin (left out) is kept; the description and the kinds become empty.
    cleared = await gateway.ok(
        "mutation($id: ID!, $input: UpdateNeedInput!) { updateNeed(id: $id, input: $input) { " + fields + " } }",
        {
            "id": need_id,
            "input": {
                "budgetMax": None,
                "description": None,
                "eligibleKinds": None,
                "perimeter": {"territories": ["EPCI-200068120"], "radiusKm": None},
                "version": before["version"],
            },
        },
        quimper["as_authority"],
    )
    assert cleared["updateNeed"] == {
        **before,
        "version": before["version"] + 1,
        "description": "",
        "budgetMax": None,
        "eligibleKinds": [],
        "perimeter": {"territories": ["EPCI-200068120"], "radiusKm": None},
    }
    stored = (await gateway.ok(read, {"id": need_id}, quimper["as_authority"]))["need"]
    assert stored == cleared["updateNeed"]

    # A required field takes a value: its null is the caller's error, naming it, and the need stays as it was.
    for name in ("title", "deadline", "perimeter", "themes"):
        refused = await gateway.gql(
            UPDATE_NEED, {"id": need_id, "input": {name: None, "budgetMin": None}}, quimper["as_authority"]
        )
        assert refused["errors"][0]["extensions"] == {
            "code": "BAD_USER_INPUT",
            "field": f"input.{name}",
            "rule": "required",
        }, name
    assert (await gateway.ok(read, {"id": need_id}, quimper["as_authority"]))["need"] == stored
    # A null version is no version: the edit applies to the current one.
    untitled = await gateway.ok(
        UPDATE_NEED, {"id": need_id, "input": {"budgetMin": None, "version": None}}, quimper["as_authority"]
    )
    assert (untitled["updateNeed"]["budgetMin"], untitled["updateNeed"]["version"]) == (None, stored["version"] + 1)


# --- pickers -------------------------------------------------------------------------------------------------------


async def test_communes_and_territories_are_found_by_name_with_their_codes(
    gateway: Gateway, quimper: dict[str, Any]
) -> None:
    auth = quimper["as_first"]
    communes = await gateway.ok(
        '{ communes(search: "besan", first: 3) { code name departement postalCodes territories } }', None, auth
    )
    assert communes["communes"][0] == {
        "code": "25056",
        "name": "Besançon",
        "departement": "25",
        "postalCodes": ["25000"],
        "territories": ["COM-25056", "EPCI-242500361", "DEP-25", "REG-27"],
    }
    # A word inside the name, accents and hyphens ignored.
    inside = await gateway.ok('{ communes(search: "etienne", first: 5) { name } }', None, auth)
    assert "Saint-Étienne" in [c["name"] for c in inside["communes"]]
    named = await gateway.ok(
        '{ territories(search: "doubs", kinds: [DEP, EPCI], first: 5) { code kind name population } }', None, auth
    )
    assert named["territories"][0] == {
        "code": "DEP-25",
        "kind": "DEP",
        "name": "Doubs",
        "population": pytest.approx(547163, rel=0.2),
    }
    assert all(t["kind"] in ("DEP", "EPCI") for t in named["territories"])
    assert any(
        t["code"] == "EPCI-242500361"
        for t in (await gateway.ok('{ territories(search: "grand besan") { code } }', None, auth))["territories"]
    )

    for document, field, rule in (
        ('{ communes(search: "b") { code } }', "search", "min_length"),
        ('{ communes(search: "besan", first: 500) { code } }', "first", "max_page_size"),
        ('{ territories(search: "doubs", kinds: []) { code } }', "kinds", "not_empty"),
    ):
        answer = await gateway.gql(document, None, auth)
        assert codes(answer) == ["BAD_USER_INPUT"], answer
        assert (answer["errors"][0]["extensions"]["field"], answer["errors"][0]["extensions"]["rule"]) == (field, rule)
    # Reference data, public like the themes.
    anonymous = await gateway.ok('{ communes(search: "quimp", first: 1) { code } }')
    assert anonymous["communes"] == [{"code": "29232"}]


async def test_the_vocabularies_a_form_picks_from(gateway: Gateway) -> None:
    data = await gateway.ok("{ serviceTypes { code label } actorKinds { code label description } themes { code } }")
    service_types = {t["code"]: t["label"] for t in data["serviceTypes"]}
    assert "fourniture_biens" in service_types and all(service_types.values())
    kinds = {k["code"]: k["label"] for k in data["actorKinds"]}
    assert kinds["local_authority"] == "Collectivité territoriale" and "association" in kinds
    assert len(data["themes"]) > 10
