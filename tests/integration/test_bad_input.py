"""Bad input over the real stack is the caller's error, never a 500: tokens of every shape are unauthenticated on a
connection that stays usable, bodies that are no JSON text are bad requests, and refusals name the field the
caller sent (`input.deadline`), cross-field rules included."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import websockets

from services.common.auth import INTERNAL_KID, MAX_TOKEN_CHARS
from services.common.settings import Settings
from tests.integration.directory_fixtures import Directory
from tests.integration.gateway_fixtures import Gateway
from tests.unit.test_token_shapes import compact

pytestmark = pytest.mark.asyncio


def shapes(settings: Settings) -> dict[str, str]:
    """Tokens whose one defect is their shape: signed with the stack's own keys."""
    public = settings.signing_keys()[settings.jwt_active_kid]
    now = int(datetime.now(UTC).timestamp())
    claims: dict[str, Any] = {"iss": settings.jwt_issuer, "aud": settings.jwt_audience, "sub": "admin:x"}
    claims |= {"role": "admin", "iat": now, "exp": now + 300}
    kid = settings.jwt_active_kid
    return {
        "kid 1": compact({"alg": "HS256", "kid": 1}, claims, public),
        'kid ["x"]': compact({"alg": "HS256", "kid": ["x"]}, claims, public),
        "crit": compact({"alg": "HS256", "kid": kid, "crit": ["exp"]}, claims, public),
        "forwarded crit": compact(
            {"alg": "HS256", "kid": INTERNAL_KID, "crit": ["exp"]}, claims, settings.internal_key
        ),
        "header not an object": compact(["HS256", kid], claims, public),
        "header not UTF-8": compact(b"\xff\xfe", claims, public),
        "payload not an object": compact({"alg": "HS256", "kid": kid}, [claims], public),
        "exp not a number": compact({"alg": "HS256", "kid": kid}, claims | {"exp": "demain"}, public),
        "huge": compact({"alg": "HS256", "kid": kid, "pad": "x" * MAX_TOKEN_CHARS}, claims, public),
        "not ASCII": "é" * 40,
    }


def one_connection() -> httpx.AsyncClient:
    """A client with a single keep-alive connection: every request after a refusal reuses it."""
    return httpx.AsyncClient(timeout=10, limits=httpx.Limits(max_connections=1))


def local_port(response: httpx.Response) -> int:
    return int(response.extensions["network_stream"].get_extra_info("socket").getsockname()[1])


async def test_a_token_of_any_shape_is_unauthenticated_and_the_connection_stays_usable(
    gateway: Gateway, directory: Directory
) -> None:
    async with one_connection() as to_gateway, one_connection() as to_service:
        gateway_ports, service_ports = set(), set()
        for name, token in shapes(gateway.settings).items():
            header = token.encode("utf-8")  # what a client puts on the wire; read back as latin-1
            refused = await to_gateway.post(
                gateway.url + "/graphql",
                json={"query": "{ me { role } }"},
                headers={b"Authorization": b"Bearer " + header},
            )
            assert refused.status_code == 401, (name, refused.text)
            assert refused.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", name
            answered = await to_gateway.post(gateway.url + "/graphql", json={"query": "{ themes { code } }"})
            assert answered.status_code == 200 and not answered.json().get("errors"), (name, answered.text)
            gateway_ports |= {local_port(refused), local_port(answered)}
            for sent in ({b"X-Maillage-Principal": header}, {b"Authorization": b"Bearer " + header}):
                service = await to_service.get(directory.url + "/v1/actors", headers=sent)
                assert service.status_code == 401, (name, service.text)
                assert service.json()["code"] == "UNAUTHENTICATED", name
                service_ports.add(local_port(service))
        listed = await to_service.get(directory.url + "/v1/actors", headers=directory.admin)
        assert listed.status_code == 200, listed.text
        service_ports.add(local_port(listed))
    assert len(gateway_ports) == len(service_ports) == 1, "one connection to each: no refusal closed it"


async def test_a_subscription_with_a_token_of_a_wrong_shape_is_refused(gateway: Gateway) -> None:
    url = gateway.url.replace("http://", "ws://") + "/graphql"
    for name, token in shapes(gateway.settings).items():
        async with websockets.connect(url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]) as ws:
            await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": "Bearer " + token}}))
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403, name


async def test_a_body_that_is_no_json_text_is_a_bad_request(gateway: Gateway) -> None:
    mutation = "mutation($input: RegisterActorInput!) { registerActor(input: $input) { id } }"
    lone_surrogate = json.dumps(
        {"query": mutation, "variables": {"input": {"name": "Asso \ud800", "kind": "association", "communeCode": "1"}}}
    )
    bodies = {
        "not UTF-8": b'{"query": "{ themes { code } }", "variables": {"x": "\xff"}}',
        "a lone surrogate": lone_surrogate.encode(),
        "a number past a double": b'{"query": "{ themes { code } }", "variables": {"x": 1e400}}',
    }
    async with one_connection() as http:
        for name, body in bodies.items():
            response = await http.post(
                gateway.url + "/graphql",
                content=body,
                headers={"Content-Type": "application/json", "Authorization": gateway.admin},
            )
            assert response.status_code == 400, (name, response.text)
        answered = await http.post(gateway.url + "/graphql", json={"query": "{ themes { code } }"})
    assert answered.status_code == 200


def refusal(answer: dict[str, Any]) -> tuple[str, str, str]:
    (error,) = answer["errors"]
    extensions = error["extensions"]
    return extensions["code"], extensions.get("field"), extensions.get("rule")


ISSUE = "mutation($input: IssueCredentialInput!) { issueCredential(input: $input) { token } }"
PUBLISH_NEED = "mutation($input: PublishNeedInput!) { publishNeed(input: $input) { id } }"
PUBLISH_EVENT = "mutation($input: PublishEventInput!) { publishEvent(input: $input) { id } }"
REGISTER_ACTOR = "mutation($input: RegisterActorInput!) { registerActor(input: $input) { id } }"
REGISTER = "mutation($e: ID!, $input: RegistrationInput!) { registerForEvent(eventId: $e, input: $input) { id } }"
RESPOND = "mutation($id: ID!) { respondToMatch(id: $id, response: DECLINED) { id } }"
CLOSE = "mutation($id: ID!, $c: String) { closeNeed(id: $id, status: CLOSED, comment: $c) { id } }"


def need(**overrides: Any) -> dict[str, Any]:
    return {
        "title": "Une ressourcerie",
        "kind": "PARTNERSHIP",
        "themes": ["reemploi"],
        "communeCode": "97611",
        "location": {"lat": -12.78, "lon": 45.23},
        "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
        "ownerId": str(uuid.uuid4()),
    } | overrides


def event(**overrides: Any) -> dict[str, Any]:
    return {
        "title": "Forum",
        "kind": "FORUM",
        "organizerIds": [str(uuid.uuid4())],
        "startsAt": "2031-03-30T09:30:00+02:00",
        "endsAt": "2031-03-30T12:00:00+02:00",
        "onlineUrl": "https://example.org/forum",
        "draft": True,
    } | overrides


def actor(**overrides: Any) -> dict[str, Any]:
    return {"name": "Ressourcerie", "kind": "association", "communeCode": "97611"} | overrides


async def test_refusals_name_the_field_the_caller_sent(gateway: Gateway) -> None:
    admin = gateway.admin
    no_radius = [{"theme": "reemploi", "serviceType": "fourniture_biens", "area": {"kind": "RADIUS"}}]
    cases: dict[str, tuple[str, dict[str, Any], tuple[str, str, str]]] = {
        "a lifetime of two billion days": (
            ISSUE,
            {"input": {"name": "Carte", "role": "PARTNER", "ttlDays": 2_000_000_000}},
            ("BAD_USER_INPUT", "input.ttlDays", "range"),
        ),
        "a credential name with NUL": (
            ISSUE,
            {"input": {"name": "Carte\x00", "role": "PARTNER"}},
            ("BAD_USER_INPUT", "input.name", "text"),
        ),
        "a scope with a line break": (
            ISSUE,
            {"input": {"name": "Carte", "role": "PARTNER", "scopes": ["directory:write\r\n"]}},
            ("BAD_USER_INPUT", "input.scopes", "format"),
        ),
        "budgetMin above budgetMax": (
            PUBLISH_NEED,
            {"input": need(budgetMin=10_000, budgetMax=5_000)},
            ("BAD_USER_INPUT", "input.budgetMax", "budget_range"),
        ),
        "a budget past what is stored": (
            PUBLISH_NEED,
            {"input": need(budgetMax=1e15)},
            ("BAD_USER_INPUT", "input.budgetMax", "less_than_equal"),
        ),
        "a deadline with no UTC": (
            PUBLISH_NEED,
            {"input": need(deadline="9999-12-31T23:59:59-14:00")},
            ("BAD_USER_INPUT", "input.deadline", "range"),
        ),
        "an event ending before it starts": (
            PUBLISH_EVENT,
            {"input": event(endsAt="2031-03-30T08:00:00+02:00")},
            ("BAD_USER_INPUT", "input.endsAt", "after_start"),
        ),
        "an event nowhere": (
            PUBLISH_EVENT,
            {"input": event(onlineUrl=None)},
            ("BAD_USER_INPUT", "input.place", "place_or_url"),
        ),
        "an event before year 1 in UTC": (
            PUBLISH_EVENT,
            {"input": event(startsAt="0001-01-01T00:00:00+14:00")},
            ("BAD_USER_INPUT", "input.startsAt", "range"),
        ),
        "a radius area without its radius": (
            REGISTER_ACTOR,
            {"input": actor(activities=no_radius)},
            ("BAD_USER_INPUT", "input.activities.0.area.radiusKm", "required"),
        ),
        "an actor and a person at once": (
            REGISTER,
            {
                "e": str(uuid.uuid4()),
                "input": {"actorId": str(uuid.uuid4()), "person": {"name": "A", "email": "a@b.fr"}},
            },
            ("BAD_USER_INPUT", "input.actorId", "actor_or_person"),
        ),
        "declining without a word": (
            RESPOND,
            {"id": str(uuid.uuid4())},
            ("BAD_USER_INPUT", "comment", "required"),
        ),
        "a comment too long, outside any input": (
            CLOSE,
            {"id": str(uuid.uuid4()), "c": "x" * 3000},
            ("BAD_USER_INPUT", "comment", "string_too_long"),
        ),
    }
    for name, (mutation, variables, expected) in cases.items():
        answer = await gateway.gql(mutation, variables, admin)
        assert refusal(answer) == expected, (name, answer)
