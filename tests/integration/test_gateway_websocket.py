"""GraphQL over the WebSocket behind the same guard as HTTP: revocation and expiry end a subscription, every operation
is rate-limited, sized, nested no deeper than allowed and timed, and each connection and credential is capped."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import asyncpg
import httpx
import pytest
import websockets

from services.common.auth import Role
from services.common.settings import Settings
from tests.integration.gateway_fixtures import Gateway, GraphQLSocket, gateway_database, running_gateway
from tests.integration.identities import credential_token
from tests.integration.matching_fixtures import Matching
from tests.integration.test_gateway import ISSUE, MATCH_FOUND, codes, publish_need, register
from tests.integration.test_matching import in_replica

# Lorient: no other test module places actors or needs there, so a match here is one of this module's.
LORIENT = {"communeCode": "56121", "location": {"lat": 47.7483, "lon": -3.3700}}
THEMES = "{ themes { code } }"


@pytest.fixture(scope="module")
async def lorient(gateway: Gateway, matching: Matching) -> dict[str, Any]:
    """A local authority and an actor that each of its needs matches."""
    tag = uuid.uuid4().hex[:6]
    authority = await register(
        gateway, f"Ville de Lorient {tag}", kind="local_authority", legalForm="Commune", activities=[], **LORIENT
    )
    actor = await register(gateway, f"Ressourcerie du Scorff {tag}", **LORIENT)
    await in_replica(matching, authority["id"], actor["id"])
    return {"authority": authority, "actor": actor}


async def issue(gateway: Gateway, role: str, actor_id: str | None = None) -> tuple[str, str]:
    """A credential recorded in the gateway's database: its bearer header and its id."""
    data = await gateway.ok(
        ISSUE,
        {"input": {"name": f"ws {role} {uuid.uuid4().hex[:4]}", "role": role.upper(), "actorId": actor_id}},
        gateway.admin,
    )
    return "Bearer " + data["issueCredential"]["token"], data["issueCredential"]["credential"]["id"]


def nested(depth: int) -> Any:
    value: Any = "fond"
    for _ in range(depth):
        value = [value]
    return value


async def still_open(socket: GraphQLSocket) -> None:
    await socket.send({"type": "ping"})
    assert (await socket.receive())["type"] == "pong"


# --- a subscription ends when its credential does ------------------------------------------------------------

REVOCATIONS = ("on this replica", "on another replica", "in the database", "in the database, unheard")


@pytest.mark.parametrize("where", REVOCATIONS)
async def test_a_subscription_ends_with_4403_within_10_s_of_its_credential_being_revoked(
    gateway: Gateway, gateway_settings: Settings, lorient: dict[str, Any], where: str
) -> None:
    authority, actor = lorient["authority"]["id"], lorient["actor"]["id"]
    token, credential_id = await issue(gateway, "collectivity", authority)
    still_valid = gateway.bearer(Role.COLLECTIVITY, authority)
    async with contextlib.AsyncExitStack() as stack:
        subscribed_on = gateway
        if where == "on another replica":
            subscribed_on = await stack.enter_async_context(running_gateway(gateway_settings))
        socket = await stack.enter_async_context(subscribed_on.socket(token))
        await socket.start("1", MATCH_FOUND, {"needId": None})
        await asyncio.sleep(0.2)  # the subscription is registered once the server read the message
        if where == "on this replica":
            await publish_need(gateway, still_valid, **LORIENT)
            while (found := await socket.answer("1", timeout_s=15))["data"]["matchFound"]["actorId"] != actor:
                pass
            assert not found.get("errors"), found
        if where.startswith("in the database"):
            conn = await asyncpg.connect(gateway_settings.database_url_for("gateway"))
            try:
                if where.endswith("unheard"):
                    # Triggers off in this session: no notification, as when the replicas' LISTEN is down.
                    await conn.execute("SET session_replication_role = replica")
                await conn.execute("UPDATE credentials SET revoked_at = now() WHERE id = $1", uuid.UUID(credential_id))
            finally:
                await conn.close()
        else:
            await gateway.ok(
                "mutation($id: ID!) { revokeCredential(id: $id) { revokedAt } }", {"id": credential_id}, gateway.admin
            )
        revoked_at = asyncio.get_running_loop().time()
        late: dict[str, Any] = {"id": None}
        if not where.endswith("unheard"):  # unheard, the replica may take its check period to learn of it
            late = await publish_need(gateway, still_valid, title="Après la révocation", **LORIENT)
        received = await socket.until_closed(timeout_s=10)
        assert asyncio.get_running_loop().time() - revoked_at <= 10
        assert socket.close_code == 4403, (socket.close_code, socket.close_reason)
        assert "revoked" in (socket.close_reason or "")
        late_matches = [
            m for m in received if m["type"] == "next" and m["payload"]["data"]["matchFound"]["needId"] == late["id"]
        ]
        assert not late_matches, "no match of a need published after the revocation"


async def test_a_short_lived_tokens_subscription_ends_with_4401_when_the_token_expires(
    gateway: Gateway, lorient: dict[str, Any]
) -> None:
    token = "Bearer " + credential_token(
        gateway.settings, Role.COLLECTIVITY, lorient["authority"]["id"], token_ttl=timedelta(seconds=3)
    )
    async with gateway.socket(token) as socket:
        started = asyncio.get_running_loop().time()
        await socket.start("1", MATCH_FOUND, {"needId": None})
        await socket.until_closed(timeout_s=8)
        lasted = asyncio.get_running_loop().time() - started
    assert socket.close_code == 4401, (socket.close_code, socket.close_reason)
    assert 1.0 <= lasted <= 5.0, f"closed after {lasted:.1f} s, at the token's expiry"


async def test_a_replica_that_cannot_read_credentials_ends_their_connections_with_1013(
    gateway_settings: Settings, postgres_url: str
) -> None:
    database_url = await gateway_database(postgres_url)
    name = database_url.rsplit("/", 1)[1].split("?")[0]
    async with running_gateway(
        gateway_settings, gateway_database_url=database_url, gateway_connection_check_s=0.5
    ) as own:
        token, _ = await issue(own, "partner")
        server = await asyncpg.connect(postgres_url)
        try:
            async with own.socket(token) as revocable, own.socket(None) as anonymous:
                await server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await server.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
                await revocable.until_closed(timeout_s=10)
                assert revocable.close_code == 1013, (revocable.close_code, revocable.close_reason)
                await still_open(anonymous)  # no credential to read again
        finally:
            await server.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true')
            await server.close()


# --- one guard for every operation ---------------------------------------------------------------------------


async def test_websocket_operations_share_the_callers_rate_with_http(gateway_settings: Settings) -> None:
    async with running_gateway(gateway_settings, gateway_rate_limit_per_minute=60, gateway_rate_limit_burst=3) as slow:
        token = slow.bearer(Role.PARTNER, subject="partner:eager-ws")
        assert not codes(await slow.gql(THEMES, None, token))
        assert not codes(await slow.gql(THEMES, None, token))
        async with slow.socket(token) as socket:
            await socket.start("1", THEMES)
            assert not codes(await socket.answer("1"))
            await socket.start("2", 'mutation { revokeCredential(id: "00000000-0000-0000-0000-000000000000") { id } }')
            refused = await socket.answer("2")
            assert codes(refused) == ["RATE_LIMITED"], refused
            assert refused["errors"][0]["extensions"]["retryAfter"] > 0
            await still_open(socket)
        async with slow.socket(slow.bearer(Role.PARTNER, subject="partner:calm-ws")) as calm:
            await calm.start("1", THEMES)
            assert not codes(await calm.answer("1")), "the limit is per credential"


async def test_a_websocket_message_over_the_body_limit_is_refused(gateway: Gateway) -> None:
    async with gateway.socket(None) as socket:
        await socket.start("1", THEMES, {"x": "y" * (gateway.settings.gateway_max_body_bytes + 1)})
        received = await socket.until_closed(timeout_s=5)
    assert not received, "the operation did not run"
    assert socket.close_code == 1009, (socket.close_code, socket.close_reason)
    assert str(gateway.settings.gateway_max_body_bytes) in (socket.close_reason or "")


async def test_a_websocket_operation_over_the_time_limit_is_stopped(gateway_settings: Settings) -> None:
    async with (
        running_gateway(gateway_settings, gateway_request_timeout_s=0.001) as hurried,
        hurried.socket(None) as socket,
    ):
        await socket.start("1", "{ actors(first: 50) { edges { node { name events { title } } } } }")
        late = await socket.answer("1")
        assert codes(late) == ["UNAVAILABLE"], late
        assert "stopped" in late["errors"][0]["message"]
        await still_open(socket)


async def test_an_invalid_document_over_the_websocket_is_bad_input_and_the_connection_lives(gateway: Gateway) -> None:
    async with gateway.socket(None) as socket:
        await socket.start("1", "{ themes { " + "code " * (gateway.settings.gateway_max_tokens + 1) + "} }")
        over_tokens = await socket.answer("1")
        assert codes(over_tokens) == ["BAD_USER_INPUT"] and "tokens" in over_tokens["errors"][0]["message"]
        await socket.start("2", "{ themes { code ")
        syntax = await socket.answer("2")
        assert codes(syntax) == ["BAD_USER_INPUT"] and "Syntax Error" in syntax["errors"][0]["message"]
        await still_open(socket)


async def test_subscriptions_operations_and_connections_are_capped(gateway_settings: Settings) -> None:
    subscription = "subscription { matchFound { id } }"
    async with running_gateway(
        gateway_settings, gateway_max_subscriptions_per_connection=2, gateway_max_connections_per_credential=2
    ) as capped:
        token = capped.bearer(Role.PARTNER, subject="partner:greedy-ws")
        async with capped.socket(token) as first, capped.socket(token):
            for operation_id in ("1", "2", "3"):
                await first.start(operation_id, subscription)
            refused = await first.answer("3")
            assert codes(refused) == ["RATE_LIMITED"], refused
            assert refused["errors"][0]["extensions"]["rule"] == "max_subscriptions_per_connection"
            await first.start("4", THEMES)
            assert not codes(await first.answer("4")), "queries still run beside the subscriptions"
            await first.send({"type": "complete", "id": "1"})
            await first.start("5", subscription)
            await first.start("6", THEMES)
            before_6 = []
            while (message := await first.receive())["id"] != "6":
                before_6.append(message)
            assert not [m for m in before_6 if m["id"] == "5"], "a completed subscription frees its place"

            async with capped.socket(token, acknowledged=False) as third:
                await third.until_closed(timeout_s=5)
            assert third.close_code == 4429, (third.close_code, third.close_reason)
            async with capped.socket(capped.bearer(Role.PARTNER, subject="partner:other-ws")) as other:
                await still_open(other)
        async with capped.socket(token) as again:
            await still_open(again)  # a closed connection frees its place
    async with (
        running_gateway(gateway_settings, gateway_max_operations_per_connection=2) as narrow,
        narrow.socket(narrow.bearer(Role.PARTNER, subject="partner:busy-ws")) as socket,
    ):
        await socket.start("1", subscription)
        await socket.start("2", subscription)
        await socket.start("3", THEMES)
        refused = await socket.answer("3")
        assert codes(refused) == ["RATE_LIMITED"], refused
        assert refused["errors"][0]["extensions"]["rule"] == "max_operations_per_connection"


# --- nesting ---------------------------------------------------------------------------------------------------


def deep_request(depth: int) -> str:
    """A request body whose variables nest `depth` arrays, written by hand (no JSON encoder goes that deep)."""
    return '{"query": "{ themes { code } }", "variables": {"x": ' + "[" * depth + "]" * depth + "}}"


@pytest.fixture
def depths(gateway: Gateway) -> Iterator[tuple[int, int]]:
    """Just over the setting (parsed, then refused) and far beyond any JSON parser's own limit."""
    yield getattr(gateway.settings, "gateway_max_input_depth", 99) + 1, 5000


async def test_deeply_nested_variables_are_bad_input_over_http(gateway: Gateway, depths: tuple[int, int]) -> None:
    over, far = depths
    answer = await gateway.gql(THEMES, {"x": nested(over)}, status=400)
    assert codes(answer) == ["BAD_USER_INPUT"], answer
    assert answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "variables", "rule": "depth"}
    async with httpx.AsyncClient() as http:
        response = await http.post(
            gateway.url + "/graphql", content=deep_request(far), headers={"Content-Type": "application/json"}
        )
        query_string = await http.get(gateway.url + "/graphql", params={"query": THEMES, "variables": "[" * far})
    assert response.status_code == 400, response.text
    assert response.json()["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "body", "rule": "depth"}
    assert query_string.status_code == 400, query_string.text
    assert query_string.json()["errors"][0]["extensions"]["rule"] == "depth"


async def test_deeply_nested_variables_are_bad_input_over_the_websocket(
    gateway: Gateway, depths: tuple[int, int]
) -> None:
    over, far = depths
    async with gateway.socket(None) as socket:
        await socket.start("1", THEMES, {"x": nested(over)})
        refused = await socket.answer("1")
        assert codes(refused) == ["BAD_USER_INPUT"], refused
        assert refused["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "variables", "rule": "depth"}
        await still_open(socket)
        await socket.ws.send('{"id": "2", "type": "subscribe", "payload": ' + deep_request(far) + "}")
        await socket.until_closed(timeout_s=5)
    assert socket.close_code == 4400, (socket.close_code, socket.close_reason)
    assert "nested" in (socket.close_reason or "")


async def test_graphql_over_the_websocket_only_speaks_graphql_transport_ws(gateway: Gateway) -> None:
    """The older `graphql-ws` protocol would run operations outside the guard: it is not spoken."""
    ws_url = gateway.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(ws_url, subprotocols=[websockets.Subprotocol("graphql-ws")]) as ws:
        with pytest.raises(websockets.ConnectionClosed):
            await ws.send('{"type": "connection_init", "payload": {}}')
            await asyncio.wait_for(ws.recv(), 5)
    assert ws.close_code == 4406
