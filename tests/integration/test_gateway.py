"""The GraphQL gateway against the real services: the cooperation story, authorisation, loaders, limits, outages."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import pytest

from bench.gateway import PARTNER_QUERY
from bench.gateway import VARIABLES as BENCH_VARIABLES
from gateway import clients as gateway_clients
from services.common.auth import Role
from services.common.settings import Settings
from services.launch.registry import service_app
from tests.integration.directory_fixtures import Directory, serve
from tests.integration.events_fixtures import Events
from tests.integration.gateway_fixtures import Gateway, running_gateway
from tests.integration.matching_fixtures import Matching, fresh_database
from tests.integration.test_matching import eventually, in_replica

# Rennes: where `register` and `publish_need` place actors and needs unless told otherwise. The actors that every
# test registers there (réemploi, same score) fill a Rennes need's top K (20, ties broken by id): a test that waits
# for its own actor's match places the actor and the need at one of the places below instead. They are in
# Ille-et-Vilaine and more than 30 km (the actors' reach) from Rennes and from each other, and the whole suite
# places fewer than K actors at each.
RENNES = {"communeCode": "35238", "location": {"lat": 48.1113, "lon": -1.6800}}
SAINT_MALO = {"communeCode": "35288", "location": {"lat": 48.6493, "lon": -2.0257}}
FOUGERES = {"communeCode": "35115", "location": {"lat": 48.3524, "lon": -1.1989}}
REDON = {"communeCode": "35236", "location": {"lat": 47.6514, "lon": -2.0843}}
ONLINE = "https://visio.example.org/atelier"

REGISTER_ACTOR = """
mutation($input: RegisterActorInput!) { registerActor(input: $input) { id name kind departement version } }
"""
ISSUE = """
mutation($input: IssueCredentialInput!) {
  issueCredential(input: $input) { token credential { id role actorId } }
}
"""
PUBLISH_NEED = """
mutation($input: PublishNeedInput!) { publishNeed(input: $input) { id status ownerId collectivity { name } } }
"""
MATCH_FOUND = """
subscription($needId: ID) {
  matchFound(needId: $needId) { id needId actorId score status reasons { code text } actor { name } need { title } }
}
"""


def actor_input(name: str, **overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "name": name,
        "kind": "association",
        **RENNES,
        "themes": ["reemploi"],
        "serviceTypes": ["fourniture_biens"],
        "activities": [
            {"theme": "reemploi", "serviceType": "fourniture_biens", "area": {"kind": "RADIUS", "radiusKm": 30}}
        ],
        "description": "Ressourcerie : collecte, tri et revente d'objets de seconde main.",
        "contact": {"email": f"{uuid.uuid4().hex[:6]}@example.org"},
    }
    values.update(overrides)
    return values


def need_input(**overrides: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "title": "Un lieu de réemploi au Blosne",
        "kind": "PARTNERSHIP",
        "description": "Collecte et revente d'objets de seconde main, réemploi",
        "themes": ["reemploi"],
        "serviceTypes": ["fourniture_biens"],
        **RENNES,
        "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }
    values.update(overrides)
    return values


async def register(gateway: Gateway, name: str, **overrides: Any) -> dict[str, Any]:
    data = await gateway.ok(REGISTER_ACTOR, {"input": actor_input(name, **overrides)}, gateway.admin)
    return dict(data["registerActor"])


async def publish_need(gateway: Gateway, authorization: str, **overrides: Any) -> dict[str, Any]:
    """Publish a need; matching learns of a just-registered authority from the broker, so wait for it."""

    async def attempt() -> dict[str, Any] | None:
        answer = await gateway.gql(PUBLISH_NEED, {"input": need_input(**overrides)}, authorization)
        if answer.get("errors"):
            assert answer["errors"][0]["extensions"].get("rule") == "exists", answer["errors"]
            return None
        return dict(answer["data"]["publishNeed"])

    return await eventually(attempt)


async def publish_event(gateway: Gateway, organizer_id: str, **overrides: Any) -> dict[str, Any]:
    """Publish an event as an admin; the events service learns of a just-registered organizer from the broker."""
    starts = datetime.now(UTC) + timedelta(days=20)
    values: dict[str, Any] = {
        "title": "Atelier réparation",
        "kind": "WORKSHOP",
        "organizerIds": [organizer_id],
        "startsAt": starts.isoformat(),
        "endsAt": (starts + timedelta(hours=2)).isoformat(),
        "capacity": 30,
        **overrides,
    }

    async def attempt() -> dict[str, Any] | None:
        answer = await gateway.gql(
            "mutation($input: PublishEventInput!) { publishEvent(input: $input) { id status } }",
            {"input": values},
            gateway.admin,
        )
        if answer.get("errors"):
            assert answer["errors"][0]["extensions"].get("rule") == "exists", answer["errors"]
            return None
        return dict(answer["data"]["publishEvent"])

    return await eventually(attempt)


async def credential(gateway: Gateway, role: str, actor_id: str | None = None) -> str:
    data = await gateway.ok(
        ISSUE,
        {"input": {"name": f"test {role} {uuid.uuid4().hex[:4]}", "role": role.upper(), "actorId": actor_id}},
        gateway.admin,
    )
    return "Bearer " + str(data["issueCredential"]["token"])


async def next_match(queue: asyncio.Queue[dict[str, Any]], actor_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
    """The first match the subscription delivers for `actor_id` (others are skipped)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        remaining = deadline - asyncio.get_running_loop().time()
        assert remaining > 0, f"no match for {actor_id} within {timeout_s} s"
        message = await asyncio.wait_for(queue.get(), remaining)
        assert message["type"] == "next", message
        assert not message["payload"].get("errors"), message
        found = message["payload"]["data"]["matchFound"]
        if found["actorId"] == actor_id:
            return dict(found)


def codes(answer: dict[str, Any]) -> list[str]:
    return [error["extensions"]["code"] for error in answer.get("errors") or []]


# --- the cooperation story --------------------------------------------------------------------------------


async def test_the_cooperation_story_through_graphql_only(gateway: Gateway) -> None:
    tag = uuid.uuid4().hex[:6]
    authority = await register(
        gateway,
        f"Ville de Rennes {tag}",
        kind="local_authority",
        legalForm="Commune",
        themes=[],
        serviceTypes=[],
        activities=[],
    )
    assert authority["departement"] == "35"
    ressourcerie = await register(gateway, f"Ressourcerie malouine {tag}", **SAINT_MALO)
    as_authority = await credential(gateway, "collectivity", authority["id"])
    as_ressourcerie = await credential(gateway, "actor", ressourcerie["id"])
    me = await gateway.ok("{ me { role actorId } }", None, as_authority)
    assert me["me"] == {"role": "collectivity", "actorId": authority["id"]}

    async with gateway.subscription(MATCH_FOUND, {"needId": None}, as_authority) as matches:
        need = await publish_need(gateway, as_authority, **SAINT_MALO)
        assert need["status"] == "published" and need["ownerId"] == authority["id"]
        assert need["collectivity"]["name"] == authority["name"]

        found = await next_match(matches, ressourcerie["id"])
        assert found["needId"] == need["id"]
        assert found["actor"]["name"] == ressourcerie["name"]
        assert found["need"]["title"].startswith("Un lieu de réemploi")
        assert {reason["code"] for reason in found["reasons"]} >= {"themes"}

        # The actor sees the need it was matched to and answers.
        mine = await gateway.ok(
            "query($id: ID!) { actor(id: $id) { matches { id status need { title } } } }",
            {"id": ressourcerie["id"]},
            as_ressourcerie,
        )
        assert found["id"] in [m["id"] for m in mine["actor"]["matches"]]
        viewed = await gateway.ok(
            "mutation($id: ID!) { markMatchViewed(id: $id) { status } }", {"id": found["id"]}, as_ressourcerie
        )
        assert viewed["markMatchViewed"]["status"] == "viewed"
        answered = await gateway.ok(
            """mutation($id: ID!) { respondToMatch(id: $id, response: INTERESTED, comment: "Avec plaisir") {
                 status responseComment } }""",
            {"id": found["id"]},
            as_ressourcerie,
        )
        assert answered["respondToMatch"] == {"status": "interested", "responseComment": "Avec plaisir"}

        # The authority sees the answer and selects the actor.
        seen = await gateway.ok(
            "query($id: ID!) { need(id: $id) { matches { id status actor { name } } } }",
            {"id": need["id"]},
            as_authority,
        )
        [interested] = [m for m in seen["need"]["matches"] if m["id"] == found["id"]]
        assert interested["status"] == "interested" and interested["actor"]["name"] == ressourcerie["name"]
        selected = await gateway.ok(
            'mutation($id: ID!) { selectMatch(id: $id, comment: "Retenue") { status } }',
            {"id": found["id"]},
            as_authority,
        )
        assert selected["selectMatch"]["status"] == "selected"

        # An actor registered afterwards is matched to the open need too.
        latecomer = await register(gateway, f"Recyclerie de Saint-Servan {tag}", **SAINT_MALO)
        late = await next_match(matches, latecomer["id"], timeout_s=15)
        assert late["needId"] == need["id"]


async def test_a_subscription_only_delivers_what_the_caller_may_see(gateway: Gateway) -> None:
    tag = uuid.uuid4().hex[:6]
    mine = await register(gateway, f"Commune A {tag}", kind="local_authority", legalForm="Commune", activities=[])
    other = await register(gateway, f"Commune B {tag}", kind="local_authority", legalForm="Commune", activities=[])
    actor = await register(gateway, f"Ressourcerie partagée {tag}", **REDON)
    bystander = await register(gateway, f"Ressourcerie voisine {tag}", **REDON)
    as_mine, as_other = (
        await credential(gateway, "collectivity", mine["id"]),
        await credential(gateway, "collectivity", other["id"]),
    )
    as_bystander = await credential(gateway, "actor", bystander["id"])
    async with (
        gateway.subscription(MATCH_FOUND, {"needId": None}, as_mine) as mines,
        gateway.subscription(MATCH_FOUND, {"needId": None}, as_other) as others,
        gateway.subscription(MATCH_FOUND, {"needId": None}, as_bystander) as bystanders,
    ):
        await publish_need(gateway, as_mine, title="Réemploi pour la commune A", **REDON)
        # The owner hears of the match: the silence of the two others below is not for want of one.
        assert (await next_match(mines, actor["id"]))["actorId"] == actor["id"]
        with pytest.raises(TimeoutError):
            await next_match(others, actor["id"], timeout_s=3)
        with pytest.raises((TimeoutError, AssertionError)):
            await next_match(bystanders, actor["id"], timeout_s=0.5)
    # Following another authority's need is refused outright.
    need_of_mine = await publish_need(gateway, as_mine)
    async with gateway.subscription(MATCH_FOUND, {"needId": need_of_mine["id"]}, as_other) as refused:
        message = await asyncio.wait_for(refused.get(), 10)
    assert message["type"] in ("error", "next")
    errors = message["payload"] if message["type"] == "error" else message["payload"].get("errors")
    assert errors and errors[0]["extensions"]["code"] == "FORBIDDEN"


# --- authorisation matrix ------------------------------------------------------------------------------------

ROLES = ("anonymous", "partner", "collectivity", "other_collectivity", "actor", "other_actor", "admin")
ALLOWED = "allowed"


@pytest.fixture(scope="module")
async def world(gateway: Gateway, directory: Directory, matching: Matching) -> dict[str, Any]:
    """Two authorities, two actors, a need of the first matched to the first actor, an event and tokens."""
    tag = uuid.uuid4().hex[:6]
    authority = await register(gateway, f"Mairie M {tag}", kind="local_authority", legalForm="Commune", activities=[])
    other_authority = await register(
        gateway, f"Mairie N {tag}", kind="local_authority", legalForm="Commune", activities=[]
    )
    actor = await register(gateway, f"Atelier M {tag}")
    other_actor = await register(gateway, f"Atelier N {tag}")
    await in_replica(matching, authority["id"], other_authority["id"], actor["id"], other_actor["id"])
    tokens = {
        "anonymous": None,
        "partner": gateway.bearer(Role.PARTNER, subject=f"partner:{tag}"),
        "collectivity": gateway.bearer(Role.COLLECTIVITY, authority["id"]),
        "other_collectivity": gateway.bearer(Role.COLLECTIVITY, other_authority["id"]),
        "actor": gateway.bearer(Role.ACTOR, actor["id"]),
        "other_actor": gateway.bearer(Role.ACTOR, other_actor["id"]),
        "admin": gateway.admin,
    }
    need = (await gateway.ok(PUBLISH_NEED, {"input": need_input()}, tokens["collectivity"]))["publishNeed"]

    async def matched() -> str | None:
        data = await gateway.ok(
            "query($id: ID!) { need(id: $id) { matches { id actorId } } }", {"id": need["id"]}, gateway.admin
        )
        ids = [m["id"] for m in data["need"]["matches"] if m["actorId"] == actor["id"]]
        return ids[0] if ids else None

    match_id = await eventually(matched)
    starts = datetime.now(UTC) + timedelta(days=20)
    event = await gateway.ok(
        """mutation($input: PublishEventInput!) { publishEvent(input: $input) { id } }""",
        {
            "input": {
                "title": f"Forum du réemploi {tag}",
                "kind": "FORUM",
                "organizerIds": [actor["id"]],
                "startsAt": starts.isoformat(),
                "endsAt": (starts + timedelta(hours=3)).isoformat(),
                "place": {"address": "Place de la Mairie", **RENNES},
                "capacity": 50,
            }
        },
        tokens["actor"],
    )
    registration = await gateway.ok(
        """mutation($e: ID!, $input: RegistrationInput!) { registerForEvent(eventId: $e, input: $input) { id } }""",
        {"e": event["publishEvent"]["id"], "input": {"actorId": other_actor["id"]}},
        tokens["other_actor"],
    )
    # Targets the matrix may end: an actor no token acts for, and another event of the first actor.
    archivable = await register(gateway, f"Atelier archivable {tag}")
    cancellable = await publish_event(gateway, actor["id"], title=f"Atelier annulable {tag}", onlineUrl=ONLINE)
    return {
        "tokens": tokens,
        "authority": authority,
        "actor": actor,
        "other_actor": other_actor,
        "need": need,
        "match": match_id,
        "event": event["publishEvent"]["id"],
        "registration": registration["registerForEvent"]["id"],
        "archivable": archivable["id"],
        "cancellable": cancellable["id"],
    }


def matrix() -> list[tuple[str, str, str, dict[str, str]]]:
    """(mutation, GraphQL document, variables template, expected code per role)."""
    anyone_signed_in = {role: ALLOWED for role in ROLES} | {"anonymous": "UNAUTHENTICATED"}

    def only(*roles: str) -> dict[str, str]:
        return {role: ALLOWED if role in roles else "FORBIDDEN" for role in ROLES} | {"anonymous": "UNAUTHENTICATED"}

    return [
        (
            "registerActor",
            'mutation { registerActor(input: {name: "Matrice", kind: "association", communeCode: "35238"}) { id } }',
            "",
            only("admin"),
        ),
        (
            "updateActor",
            'mutation($a: ID!) { updateActor(id: $a, input: {description: "Mise à jour"}) { id } }',
            "actor",
            only("actor", "admin"),
        ),
        (
            "publishEvent",
            """mutation($a: ID!) { publishEvent(input: {title: "Atelier", kind: WORKSHOP, organizerIds: [$a],
            startsAt: "2030-01-01T10:00:00+01:00", endsAt: "2030-01-01T12:00:00+01:00", onlineUrl: "https://visio.example.org/x",
            draft: true}) { id } }""",
            "actor",
            only("actor", "admin"),
        ),
        (
            "registerForEvent",
            "mutation($e: ID!, $a: ID!) { registerForEvent(eventId: $e, input: {actorId: $a}) { id } }",
            "event+actor",
            only("actor", "admin"),
        ),
        (
            "cancelRegistration",
            "mutation($r: ID!) { cancelRegistration(id: $r) { id } }",
            "registration",
            only("other_actor", "actor", "admin"),
        ),
        (
            "publishNeed",
            "mutation($input: PublishNeedInput!) { publishNeed(input: $input) { id } }",
            "need_input",
            only("collectivity", "other_collectivity", "admin"),
        ),
        (
            "closeNeed",
            "mutation($n: ID!) { closeNeed(id: $n, status: CANCELLED) { id } }",
            "need_other",
            only("collectivity", "admin"),
        ),
        (
            "respondToMatch",
            'mutation($m: ID!) { respondToMatch(id: $m, response: DECLINED, comment: "Pas disponible") { id } }',
            "match",
            only("actor", "admin"),
        ),
        ("markMatchViewed", "mutation($m: ID!) { markMatchViewed(id: $m) { id } }", "match", only("actor", "admin")),
        ("selectMatch", "mutation($m: ID!) { selectMatch(id: $m) { id } }", "match", only("collectivity", "admin")),
        (
            "createWebhook",
            'mutation { createWebhook(input: {url: "http://127.0.0.1:9/hook", eventTypes: ["match.found"]}) { id } }',
            "",
            only("partner", "admin"),
        ),
        (
            "updateWebhook",
            'mutation { updateWebhook(id: "00000000-0000-0000-0000-000000000000", input: {description: "x"}) { id } }',
            "",
            only("partner", "admin"),
        ),
        (
            "issueCredential",
            'mutation { issueCredential(input: {name: "", role: PARTNER}) { token } }',
            "",
            only("admin"),
        ),
        (
            "revokeCredential",
            'mutation { revokeCredential(id: "00000000-0000-0000-0000-000000000000") { id } }',
            "",
            only("admin"),
        ),
        ("me", "{ me { role } }", "", anyone_signed_in),
        # The directory's archive route: admins, the actor itself, partners with directory:write (none here).
        ("archiveActor", "mutation($a: ID!) { archiveActor(id: $a) { id status } }", "archivable", only("admin")),
        # The events service's cancel route: admins and the event's organizers (the first actor); once cancelled,
        # a second allowed call is a CONFLICT, never a refusal.
        (
            "cancelEvent",
            'mutation($e: ID!) { cancelEvent(id: $e, reason: "Salle indisponible") { id status } }',
            "cancellable",
            only("actor", "admin"),
        ),
    ]


@pytest.mark.parametrize("transport", ["http", "websocket"])
@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("name", "document", "variables", "expected"), matrix(), ids=[m[0] for m in matrix()])
async def test_authorisation_matrix(
    gateway: Gateway,
    world: dict[str, Any],
    role: str,
    name: str,
    document: str,
    variables: str,
    expected: dict[str, str],
    transport: str,
) -> None:
    """Each mutation and each role, over HTTP and over the WebSocket: refused ones get UNAUTHENTICATED/FORBIDDEN;
    allowed ones get past authorisation (they may still fail on the rules, e.g. an unknown kind, a CONFLICT on state,
    but never for who is asking)."""
    values: dict[str, Any] = {
        "actor": {"a": world["actor"]["id"]},
        "event+actor": {"e": world["event"], "a": world["actor"]["id"]},
        "registration": {"r": world["registration"]},
        "need_input": {"input": need_input(ownerId=world["authority"]["id"]) if role == "admin" else need_input()},
        "need_other": {"n": world["need"]["id"]},
        "match": {"m": world["match"]},
        "archivable": {"a": world["archivable"]},
        "cancellable": {"e": world["cancellable"]},
        "": {},
    }[variables]
    if name == "closeNeed":
        # Closing must not end the shared need: close a fresh one each time.
        fresh = await gateway.ok(PUBLISH_NEED, {"input": need_input()}, world["tokens"]["collectivity"])
        values = {"n": fresh["publishNeed"]["id"]}
    if transport == "http":
        answer = await gateway.gql(document, values, world["tokens"][role], status=None)
    else:
        answer = await gateway.ws_gql(document, values, world["tokens"][role])
    got = codes(answer)
    if expected[role] == ALLOWED:
        assert not {"UNAUTHENTICATED", "FORBIDDEN"} & set(got), (role, answer)
    else:
        assert got and got[0] == expected[role], (role, answer)


async def test_another_authoritys_need_and_another_actors_match_are_not_readable(
    gateway: Gateway, world: dict[str, Any]
) -> None:
    tokens = world["tokens"]
    query = "query($n: ID!) { need(id: $n) { title matches { id } } }"
    answer = await gateway.gql(query, {"n": world["need"]["id"]}, tokens["other_collectivity"])
    assert answer["data"]["need"]["title"], "a need itself is public to signed-in callers"
    assert codes(answer) == ["FORBIDDEN"] and answer["data"]["need"]["matches"] is None
    other = await gateway.gql("query($m: ID!) { match(id: $m) { id } }", {"m": world["match"]}, tokens["other_actor"])
    assert other["data"]["match"] is None, "another actor's match is not found"
    own = await gateway.ok("query($m: ID!) { match(id: $m) { id } }", {"m": world["match"]}, tokens["actor"])
    assert own["match"]["id"] == world["match"]


async def test_an_actor_archived_through_graphql_is_no_longer_listed_nor_matched(
    gateway: Gateway, matching: Matching
) -> None:
    tag = uuid.uuid4().hex[:6]
    limoges = {"communeCode": "87085", "location": {"lat": 45.8336, "lon": 1.2611}}
    authority = await register(
        gateway, f"Limoges {tag}", kind="local_authority", legalForm="Commune", activities=[], **limoges
    )
    kept = await register(gateway, f"Ressourcerie limousine {tag}", **limoges)
    leaving = await register(gateway, f"Ressourcerie qui ferme {tag}", **limoges)
    await in_replica(matching, authority["id"], kept["id"], leaving["id"])
    archived = await gateway.ok(
        "mutation($a: ID!) { archiveActor(id: $a) { id status version } }", {"a": leaving["id"]}, gateway.admin
    )
    assert archived["archiveActor"] == {"id": leaving["id"], "status": "archived", "version": leaving["version"] + 1}
    listed = await gateway.ok('{ actors(first: 50, filter: {territory: ["COM-87085"]}) { edges { node { id } } } }')
    assert {e["node"]["id"] for e in listed["actors"]["edges"]} == {authority["id"], kept["id"]}

    conn = await asyncpg.connect(matching.database_url)
    try:

        async def replicated() -> bool:
            status = await conn.fetchval("SELECT status FROM actors WHERE id = $1", uuid.UUID(leaving["id"]))
            return bool(status == "archived")

        await eventually(replicated)
    finally:
        await conn.close()
    as_authority = gateway.bearer(Role.COLLECTIVITY, authority["id"])
    need = await publish_need(gateway, as_authority, **limoges)

    async def matched() -> set[str] | None:
        data = await gateway.ok(
            "query($n: ID!) { need(id: $n) { matches { actorId } } }", {"n": need["id"]}, as_authority
        )
        found = {m["actorId"] for m in data["need"]["matches"]}
        return found if kept["id"] in found else None

    assert leaving["id"] not in await eventually(matched)


async def test_an_event_cancelled_through_graphql_cancels_its_registrations(gateway: Gateway) -> None:
    organizer = await register(gateway, f"Tiers-lieu organisateur {uuid.uuid4().hex[:6]}")
    event = await publish_event(gateway, organizer["id"], onlineUrl=ONLINE)
    await gateway.ok(
        'mutation($e: ID!) { registerForEvent(eventId: $e, input: {person: {name: "Ana", email: "ana@example.org"}}) '
        "{ id } }",
        {"e": event["id"]},
        gateway.admin,
    )
    cancelled = await gateway.ok(
        """mutation($e: ID!) { cancelEvent(id: $e, reason: "Salle indisponible") {
             status cancelReason registrations { status } } }""",
        {"e": event["id"]},
        gateway.bearer(Role.ACTOR, organizer["id"]),
    )
    assert cancelled["cancelEvent"] == {
        "status": "cancelled",
        "cancelReason": "Salle indisponible",
        "registrations": [{"status": "cancelled"}],
    }
    again = await gateway.gql("mutation($e: ID!) { cancelEvent(id: $e) { id } }", {"e": event["id"]}, gateway.admin)
    assert codes(again) == ["CONFLICT"]


async def test_each_key_of_a_batched_edge_keeps_the_rules_of_its_single_route(
    gateway: Gateway, world: dict[str, Any]
) -> None:
    # Same level, same batch: the actor's own matches and the event it organizes are answered; another actor's
    # matches and another authority's need's are refused, each field alone.
    query = """query($n: ID!, $a: ID!, $o: ID!, $e: ID!) {
      need(id: $n) { title matches { id } }
      mine: actor(id: $a) { matches(first: 1) { id } }
      other: actor(id: $o) { name matches { id } }
      event(id: $e) { registrations { actorId } }
    }"""
    variables = {
        "n": world["need"]["id"],
        "a": world["actor"]["id"],
        "o": world["other_actor"]["id"],
        "e": world["event"],
    }
    answer = await gateway.gql(query, variables, world["tokens"]["actor"])
    refused = {tuple(e["path"]): e["extensions"]["code"] for e in answer["errors"]}
    assert refused == {("need", "matches"): "FORBIDDEN", ("other", "matches"): "FORBIDDEN"}, answer["errors"]
    data = answer["data"]
    assert data["need"]["title"] and data["other"]["name"], "only the refused fields are null"
    assert len(data["mine"]["matches"]) == 1, "its best match only (first: 1)"
    assert {"actorId": world["other_actor"]["id"]} in data["event"]["registrations"]
    registrant = await gateway.gql(
        "query($e: ID!) { event(id: $e) { registrations { id } } }",
        {"e": world["event"]},
        world["tokens"]["other_actor"],
    )
    assert codes(registrant) == ["FORBIDDEN"], "an event's registrations are for its organizers and admins"


# --- loaders -------------------------------------------------------------------------------------------------


class CountingTransport(httpx.AsyncBaseTransport):
    """Counts the gateway's calls per service port."""

    def __init__(self) -> None:
        self.inner = httpx.AsyncHTTPTransport()
        self.calls: Counter[str] = Counter()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.calls[f"{request.method} {request.url.port}"] += 1
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextlib.asynccontextmanager
async def counting_gateway(
    gateway_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Gateway, CountingTransport]]:
    """A gateway whose calls to the services are counted."""
    transport = CountingTransport()
    real = gateway_clients.ServiceClients.__init__

    def counted(self: gateway_clients.ServiceClients, settings: Settings, **_: Any) -> None:
        real(self, settings, transport=transport)

    monkeypatch.setattr(gateway_clients.ServiceClients, "__init__", counted)
    async with running_gateway(gateway_settings) as counting:
        yield counting, transport


async def test_fifty_matches_with_their_actors_and_needs_cost_one_call_per_edge(
    gateway_settings: Settings, directory: Directory, matching: Matching, monkeypatch: pytest.MonkeyPatch
) -> None:
    tag = uuid.uuid4().hex[:6]
    nantes = {"communeCode": "44109", "location": {"lat": 47.2184, "lon": -1.5536}}
    async with counting_gateway(gateway_settings, monkeypatch) as (counting, transport):
        authority = await register(
            counting, f"Nantes {tag}", kind="local_authority", legalForm="Commune", activities=[], **nantes
        )
        actors = [await register(counting, f"Ressourcerie nantaise {i} {tag}", **nantes) for i in range(20)]
        await in_replica(matching, authority["id"], *[a["id"] for a in actors])
        as_authority = counting.bearer(Role.COLLECTIVITY, authority["id"])
        need_ids = [
            (await counting.ok(PUBLISH_NEED, {"input": need_input(title=f"Besoin {i}", **nantes)}, as_authority))[
                "publishNeed"
            ]["id"]
            for i in range(3)
        ]

        async def all_matched() -> list[str] | None:
            ids: list[str] = []
            for need_id in need_ids:
                data = await counting.ok(
                    "query($n: ID!) { need(id: $n) { matches { id } } }", {"n": need_id}, as_authority
                )
                ids += [m["id"] for m in data["need"]["matches"]]
            return ids if len(ids) >= 50 else None

        match_ids = (await eventually(all_matched))[:50]
        transport.calls.clear()
        data = await counting.ok(
            "query($ids: [ID!]!) { matches(ids: $ids) { id score actor { id name } need { id title } } }",
            {"ids": match_ids},
            as_authority,
        )
    assert [m["id"] for m in data["matches"]] == match_ids
    assert all(m["actor"]["name"] and m["need"]["title"] for m in data["matches"])
    directory_port, matching_port = httpx.URL(directory.url).port, httpx.URL(matching.url).port
    assert transport.calls == Counter({f"POST {matching_port}": 2, f"POST {directory_port}": 1}), (
        f"one batch of matches, one of needs, one of actors; got {transport.calls}"
    )


async def test_the_matches_and_registrations_of_a_whole_level_cost_one_call_per_service(
    gateway_settings: Settings,
    directory: Directory,
    events: Events,
    matching: Matching,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    tag = uuid.uuid4().hex[:6]
    toulouse = {"communeCode": "31555", "location": {"lat": 43.6047, "lon": 1.4442}}
    async with counting_gateway(gateway_settings, monkeypatch) as (counting, transport):
        authority = await register(
            counting, f"Toulouse {tag}", kind="local_authority", legalForm="Commune", activities=[], **toulouse
        )
        actors = [await register(counting, f"Ressourcerie toulousaine {i} {tag}", **toulouse) for i in range(8)]
        await in_replica(matching, authority["id"], *[a["id"] for a in actors])
        as_authority = counting.bearer(Role.COLLECTIVITY, authority["id"])
        for i in range(3):
            await counting.ok(PUBLISH_NEED, {"input": need_input(title=f"Besoin {i}", **toulouse)}, as_authority)
        for organizer in actors[:3]:
            event = await publish_event(counting, organizer["id"], place={"address": "Capitole", **toulouse})
            for person in ("Ana", "Baptiste"):
                await counting.ok(
                    """mutation($e: ID!, $p: PersonInput!) { registerForEvent(eventId: $e, input: {person: $p}) {
                         id } }""",
                    {"e": event["id"], "p": {"name": person, "email": f"{person.lower()}.{tag}@example.org"}},
                    counting.admin,
                )
        needs_query = """query($owner: ID!) { needs(first: 3, filter: {ownerId: $owner}) { edges { node {
                           matches { score actor { name matches { id } } } } } } }"""

        async def all_matched() -> dict[str, Any] | None:
            data = await counting.ok(needs_query, {"owner": authority["id"]}, counting.admin)
            edges = data["needs"]["edges"]
            return data if len(edges) == 3 and all(len(e["node"]["matches"]) >= 8 for e in edges) else None

        await eventually(all_matched)
        transport.calls.clear()
        data = await counting.ok(needs_query, {"owner": authority["id"]}, counting.admin)
        matches_calls = Counter(transport.calls)
        transport.calls.clear()
        registrations = await counting.ok(
            """{ actors(first: 30, filter: {territory: ["COM-31555"]}) { edges { node {
                   events { registrations { personName } } } } } }""",
            None,
            counting.admin,
        )
        registrations_calls = Counter(transport.calls)
    assert all(m["actor"]["matches"] for e in data["needs"]["edges"] for m in e["node"]["matches"])
    listed = [e["node"]["events"] for e in registrations["actors"]["edges"] if e["node"]["events"]]
    assert len(listed) == 3 and all(len(events[0]["registrations"]) == 2 for events in listed)
    directory_port, events_port = httpx.URL(directory.url).port, httpx.URL(events.url).port
    matching_port = httpx.URL(matching.url).port
    assert matches_calls == Counter(
        {f"GET {matching_port}": 1, f"POST {matching_port}": 2, f"POST {directory_port}": 1}
    ), f"the needs, one batch of their matches, one of the actors, one of the actors' matches; got {matches_calls}"
    assert registrations_calls == Counter({f"GET {directory_port}": 1, f"POST {events_port}": 2}), (
        f"the actors, one batch of their events, one of the events' registrations; got {registrations_calls}"
    )


# --- limits and protection -----------------------------------------------------------------------------------


async def test_depth_alias_token_and_page_limits_are_clear_errors(gateway: Gateway) -> None:
    nested = "organizers { events { " * 6 + "id" + " } }" * 6
    deep = await gateway.gql("{ events { edges { node { " + nested + " } } } }", status=200)
    assert codes(deep) == ["BAD_USER_INPUT"] and "depth" in deep["errors"][0]["message"]
    aliases = " ".join(f"t{i}: themes {{ code }}" for i in range(40))
    many = await gateway.gql("{ " + aliases + " }")
    assert codes(many) == ["BAD_USER_INPUT"] and "alias" in many["errors"][0]["message"].lower()
    tokens = await gateway.gql("{ themes { " + "code " * 3000 + "} }")
    assert codes(tokens) == ["BAD_USER_INPUT"] and "token" in tokens["errors"][0]["message"].lower()
    page = await gateway.gql("{ actors(first: 500) { edges { cursor } } }")
    assert codes(page) == ["BAD_USER_INPUT"]
    assert page["errors"][0]["extensions"]["field"] == "first"
    syntax = await gateway.gql("{ actors(first: ) }", status=None)
    assert codes(syntax) == ["BAD_USER_INPUT"]


async def test_a_query_over_the_cost_limit_is_refused_and_the_benchs_partner_query_is_not(gateway: Gateway) -> None:
    partner = gateway.bearer(Role.PARTNER, subject="partner:cost")
    assert gateway.settings.gateway_max_cost == Settings(_env_file=None).gateway_max_cost, "the default limit"
    passed = await gateway.ok(PARTNER_QUERY, BENCH_VARIABLES, partner)
    assert "actors" in passed
    costly = "query($n: Int!) { actors(first: $n) { edges { node { matches(first: $n) { id } } } } }"
    refused = await gateway.gql(costly, {"n": 100}, partner)
    assert refused.get("data") is None and codes(refused) == ["BAD_USER_INPUT"]
    assert refused["errors"][0]["extensions"] == {
        "code": "BAD_USER_INPUT",
        "field": "actors.edges.node.matches",
        "rule": "cost",
        "limit": gateway.settings.gateway_max_cost,
        "cost": 100 + 100 * 100,
    }
    assert not codes(await gateway.gql(costly, {"n": 50}, partner)), "50 + 50 * 50 is within the limit"
    spread = """query { ...Lists } fragment Lists on Query {
                  actors(first: 100) { edges { node { ... on Actor { events(first: 100) { id } } } } } }"""
    refused_through_fragments = await gateway.gql(spread, None, partner)
    assert refused_through_fragments["errors"][0]["extensions"]["cost"] == 100 + 100 * 100


async def test_a_too_large_body_is_refused_before_parsing(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            gateway.url + "/graphql", json={"query": "{ themes { code } }", "variables": {"x": "y" * 200_000}}
        )
    assert response.status_code == 413
    assert response.json()["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


async def test_bad_input_names_the_field_and_keeps_what_was_stored(gateway: Gateway) -> None:
    answer = await gateway.gql(
        REGISTER_ACTOR, {"input": actor_input("Ressourcerie inconnue", kind="inconnu")}, gateway.admin
    )
    assert codes(answer) == ["BAD_USER_INPUT"]
    assert answer["errors"][0]["extensions"]["field"] == "input.kind"
    created = await register(gateway, f"Ressourcerie stable {uuid.uuid4().hex[:6]}")
    refused = await gateway.gql(
        'mutation($a: ID!) { updateActor(id: $a, input: {communeCode: "99999"}) { id } }',
        {"a": created["id"]},
        gateway.admin,
    )
    assert codes(refused) == ["BAD_USER_INPUT"] and refused["errors"][0]["extensions"]["field"] == "input.communeCode"
    stale = await gateway.gql(
        'mutation($a: ID!) { updateActor(id: $a, input: {version: 7, name: "Autre"}) { id } }',
        {"a": created["id"]},
        gateway.admin,
    )
    assert codes(stale) == ["CONFLICT"]
    again = await gateway.ok("query($a: ID!) { actor(id: $a) { name version communeCode } }", {"a": created["id"]})
    assert again["actor"] == {"name": created["name"], "version": 1, "communeCode": "35238"}


async def test_update_actor_changes_the_given_fields_only_and_says_what_is_stale(gateway: Gateway) -> None:
    created = await register(gateway, f"Ressourcerie partielle {uuid.uuid4().hex[:6]}")
    query = "mutation($a: ID!, $i: UpdateActorInput!) { updateActor(id: $a, input: $i) { name description version } }"
    changed = await gateway.ok(
        query, {"a": created["id"], "i": {"description": "Atelier vélo", "version": 1}}, gateway.admin
    )
    assert changed["updateActor"] == {"name": created["name"], "description": "Atelier vélo", "version": 2}
    stale = await gateway.gql(query, {"a": created["id"], "i": {"name": "Autre", "version": 1}}, gateway.admin)
    assert stale["errors"][0]["extensions"] == {"code": "CONFLICT", "field": "version", "rule": "stale"}
    assert stale["errors"][0]["message"].startswith(f"actor {created['id']} is at version 2, not 1")
    empty = await gateway.gql(query, {"a": created["id"], "i": {"version": 2}}, gateway.admin)
    assert empty["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "input", "rule": "not_empty"}
    again = await gateway.ok("query($a: ID!) { actor(id: $a) { name version kind } }", {"a": created["id"]})
    assert again["actor"] == {"name": created["name"], "version": 2, "kind": "association"}


async def test_update_actor_removes_a_value_given_as_null_and_refuses_a_null_required_field(gateway: Gateway) -> None:
    created = await register(
        gateway,
        f"Ressourcerie effaçable {uuid.uuid4().hex[:6]}",
        website="https://effacable.example.org/",
        qpvCode="QN03506M",
        networks=["cress-bretagne"],
    )
    fields = "name description website qpvCode networks themes version"
    query = "mutation($a: ID!, $i: UpdateActorInput!) { updateActor(id: $a, input: $i) { " + fields + " } }"
    read = "query($a: ID!) { actor(id: $a) { " + fields + " } }"
    before = (await gateway.ok(read, {"a": created["id"]}, gateway.admin))["actor"]
    assert (before["website"], before["qpvCode"]) == ("https://effacable.example.org/", "QN03506M")
    cleared = await gateway.ok(
        query,
        {"a": created["id"], "i": {"website": None, "qpvCode": None, "description": None, "networks": None}},
        gateway.admin,
    )
    assert cleared["updateActor"] == {
        **before,
        "description": "",
        "website": None,
        "qpvCode": None,
        "networks": [],
        "version": before["version"] + 1,
    }
    for name in ("name", "kind", "communeCode"):
        refused = await gateway.gql(query, {"a": created["id"], "i": {name: None, "themes": []}}, gateway.admin)
        assert refused["errors"][0]["extensions"] == {
            "code": "BAD_USER_INPUT",
            "field": f"input.{name}",
            "rule": "required",
        }, name
    after = await gateway.ok(read, {"a": created["id"]}, gateway.admin)
    assert after["actor"] == cleared["updateActor"]


async def test_a_revoked_credential_stops_working_at_once_on_every_replica(
    gateway: Gateway, gateway_settings: Settings
) -> None:
    issued = await gateway.ok(ISSUE, {"input": {"name": "Carte CRESS", "role": "PARTNER"}}, gateway.admin)
    token = "Bearer " + issued["issueCredential"]["token"]
    async with running_gateway(gateway_settings) as replica:
        assert (await replica.ok("{ me { role } }", None, token))["me"]["role"] == "partner"
        revoked = await gateway.ok(
            "mutation($id: ID!) { revokeCredential(id: $id) { revokedAt } }",
            {"id": issued["issueCredential"]["credential"]["id"]},
            gateway.admin,
        )
        assert revoked["revokeCredential"]["revokedAt"]
        for where in (gateway, replica):
            refused = await where.gql("{ me { role } }", None, token, status=401)
            assert codes(refused) == ["UNAUTHENTICATED"] and "revoked" in refused["errors"][0]["message"]
    listed = await gateway.ok("{ credentials(includeRevoked: true) { id revokedAt } }", None, gateway.admin)
    assert issued["issueCredential"]["credential"]["id"] in [c["id"] for c in listed["credentials"]]


async def test_rate_limits_and_timeouts_are_graphql_errors(gateway_settings: Settings) -> None:
    async with running_gateway(gateway_settings, gateway_rate_limit_per_minute=60, gateway_rate_limit_burst=3) as slow:
        token = slow.bearer(Role.PARTNER, subject="partner:eager")
        answers = [await slow.gql("{ themes { code } }", None, token, status=None) for _ in range(4)]
        assert [codes(a) for a in answers[:3]] == [[], [], []]
        assert codes(answers[3]) == ["RATE_LIMITED"]
        other = await slow.gql("{ themes { code } }", None, slow.bearer(Role.PARTNER, subject="partner:calm"))
        assert not codes(other), "the limit is per credential"
    async with running_gateway(gateway_settings, gateway_request_timeout_s=0.001) as hurried:
        late = await hurried.gql("{ actors(first: 50) { edges { node { name events { title } } } } }", status=504)
        assert codes(late) == ["UNAVAILABLE"]


async def test_cors_lets_the_configured_browser_apps_in(gateway_settings: Settings) -> None:
    async with (
        running_gateway(gateway_settings, cors_origins="https://carte.cress.example") as browser,
        httpx.AsyncClient() as http,
    ):
        allowed = await http.options(
            browser.url + "/graphql",
            headers={
                "Origin": "https://carte.cress.example",
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization,content-type",
            },
        )
        other = await http.options(
            browser.url + "/graphql",
            headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
        )
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == "https://carte.cress.example"
    assert "access-control-allow-origin" not in other.headers


# --- a service stopped mid-test ---------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def own_events_service(settings: Settings, postgres_url: str, directory: Directory) -> AsyncIterator[Any]:
    database_url = await fresh_database(postgres_url, "events")
    own = settings.model_copy(update={"events_database_url": database_url, "directory_url": directory.url})
    server, serving, port = await serve(service_app("events", "api", own))
    try:
        yield server, f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 30)


async def test_a_stopped_service_makes_its_fields_unavailable_and_the_rest_still_answers(
    gateway_settings: Settings, postgres_url: str, directory: Directory
) -> None:
    query = """{ actors(first: 3, filter: {themes: ["reemploi"]}) { edges { node { name events { title } } } }
                 themes { code } }"""
    async with (
        own_events_service(gateway_settings, postgres_url, directory) as (server, url),
        running_gateway(gateway_settings, events_url=url) as partial,
    ):
        before = await partial.ok(query)
        assert before["actors"]["edges"] and all(e["node"]["events"] == [] for e in before["actors"]["edges"])
        server.should_exit = True
        await asyncio.sleep(0.5)
        after = await partial.gql(query)
        assert after["data"]["themes"], "the directory's and the gateway's own fields still answer"
        assert [e["node"]["name"] for e in after["data"]["actors"]["edges"]] == [
            e["node"]["name"] for e in before["actors"]["edges"]
        ]
        assert all(e["node"]["events"] is None for e in after["data"]["actors"]["edges"])
        assert set(codes(after)) == {"UNAVAILABLE"}
        assert after["errors"][0]["path"][-1] == "events"
        assert "Traceback" not in str(after)


async def test_graphiql_and_ical_feeds_are_served(gateway: Gateway, events: Events) -> None:
    async with httpx.AsyncClient() as http:
        page = await http.get(gateway.url + "/graphql", headers={"Accept": "text/html"})
        feed = await http.get(gateway.url + "/ical/themes/reemploi.ics")
        missing = await http.get(gateway.url + "/ical/nope/x.ics")
    assert page.status_code == 200 and "graphiql" in page.text.lower()
    assert feed.status_code == 200 and feed.text.startswith("BEGIN:VCALENDAR")
    assert feed.headers["content-type"].startswith("text/calendar")
    assert missing.status_code == 404


async def test_a_graphql_request_keeps_its_correlation_id_and_is_counted_under_its_route(gateway: Gateway) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            gateway.url + "/graphql", json={"query": "{ themes { code } }"}, headers={"X-Correlation-ID": "corr-gql-1"}
        )
        refused = await http.post(
            gateway.url + "/graphql", json={"query": "{ themes { code } }"}, headers={"Authorization": "Bearer nope"}
        )
        metrics = (await http.get(gateway.metrics_url)).text
    assert answer.status_code == 200 and answer.json()["data"]["themes"]
    assert answer.headers["x-correlation-id"] == "corr-gql-1"
    assert refused.status_code == 401
    assert (
        'maillage_http_request_seconds_count{method="POST",route="/graphql",service="gateway",status="200"}' in metrics
    )


async def test_the_cli_issues_lists_and_revokes_credentials(
    gateway: Gateway, gateway_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from services.common import settings as settings_module
    from services.launch import cli

    monkeypatch.setattr(settings_module, "get_settings", lambda: gateway_settings)
    monkeypatch.setattr(cli, "get_settings", lambda: gateway_settings)
    runner = CliRunner()

    def invoke(*args: str) -> str:
        # The CLI runs its own event loop: give it a thread, away from the test's loop.
        result = runner.invoke(cli.app, list(args))
        assert result.exit_code == 0, result.output
        return str(result.stdout)

    issued = await asyncio.to_thread(invoke, "credentials", "issue", "--name", "Portail de la ville", "--ttl", "30d")
    token = "Bearer " + issued.strip().splitlines()[-1]
    assert (await gateway.ok("{ me { role } }", None, token))["me"]["role"] == "partner"
    listed = await asyncio.to_thread(invoke, "credentials", "list")
    [line] = [line for line in listed.splitlines() if "Portail de la ville" in line]
    await asyncio.to_thread(invoke, "credentials", "revoke", line.split()[0])
    refused = await gateway.gql("{ me { role } }", None, token, status=401)
    assert codes(refused) == ["UNAUTHENTICATED"]
