"""Fixtures that run the GraphQL gateway for real in front of the directory, events and matching services."""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import websockets

from gateway.app import create_gateway_app
from services.common.auth import Role
from services.common.db import ensure_database, migrate
from services.common.embedded import free_port
from services.common.settings import Settings, with_database
from tests.integration.directory_fixtures import Directory, serve
from tests.integration.events_fixtures import Events
from tests.integration.identities import credential_token
from tests.integration.matching_fixtures import Matching


class GraphQLSocket:
    """One graphql-transport-ws connection, for tests that look at each message and at how the server closes it."""

    def __init__(self, ws: websockets.ClientConnection) -> None:
        self.ws = ws

    async def send(self, message: dict[str, Any]) -> None:
        await self.ws.send(json.dumps(message))

    async def start(self, operation_id: str, query: str, variables: dict[str, Any] | None = None) -> None:
        await self.send({"id": operation_id, "type": "subscribe", "payload": {"query": query, "variables": variables}})

    async def receive(self, timeout_s: float = 10.0) -> dict[str, Any]:
        """The next message (raises `websockets.ConnectionClosed` once the server closed)."""
        return dict(json.loads(await asyncio.wait_for(self.ws.recv(), timeout_s)))

    async def answer(self, operation_id: str, timeout_s: float = 10.0) -> dict[str, Any]:
        """The first `next` or `error` of an operation, shaped like an HTTP answer (`data`, `errors`)."""
        while True:
            message = await self.receive(timeout_s)
            if message.get("id") != operation_id or message["type"] not in ("next", "error"):
                continue
            if message["type"] == "error":
                return {"data": None, "errors": message["payload"]}
            return dict(message["payload"])

    async def until_closed(self, timeout_s: float) -> list[dict[str, Any]]:
        """Every message received until the server closes (see `close_code`), within `timeout_s`."""
        received: list[dict[str, Any]] = []
        deadline = asyncio.get_running_loop().time() + timeout_s
        with contextlib.suppress(websockets.ConnectionClosed):
            while True:
                remaining = deadline - asyncio.get_running_loop().time()
                try:
                    received.append(await self.receive(max(remaining, 0.0)))
                except TimeoutError:
                    raise AssertionError(f"still open after {timeout_s} s; received {received}") from None
        return received

    @property
    def close_code(self) -> int | None:
        return self.ws.close_code

    @property
    def close_reason(self) -> str | None:
        return self.ws.close_reason


@dataclass
class Gateway:
    url: str
    settings: Settings

    @property
    def metrics_url(self) -> str:
        """The internal port's metrics (the public one has none)."""
        return f"http://127.0.0.1:{self.settings.gateway_metrics_port}/metrics"

    def bearer(self, role: Role, actor_id: str | None = None, subject: str | None = None) -> str:
        """A fresh credential's token (recorded in the gateway's database, as the gateway requires)."""
        return "Bearer " + credential_token(self.settings, role, actor_id, subject)

    @property
    def admin(self) -> str:
        return self.bearer(Role.ADMIN, subject="admin:test")

    async def gql(
        self,
        query: str,
        variables: dict[str, Any] | None = None,
        authorization: str | None = None,
        *,
        status: int | None = 200,
    ) -> dict[str, Any]:
        """POST a GraphQL request; the whole answer (data and errors)."""
        headers = {"Authorization": authorization} if authorization else {}
        async with httpx.AsyncClient(timeout=30) as http:
            response = await http.post(
                self.url + "/graphql", json={"query": query, "variables": variables or {}}, headers=headers
            )
        if status is not None:
            assert response.status_code == status, response.text
        return dict(response.json())

    async def ok(self, query: str, variables: dict[str, Any] | None = None, authorization: str | None = None) -> Any:
        """The data of a request that must succeed without errors."""
        answer = await self.gql(query, variables, authorization)
        assert not answer.get("errors"), answer["errors"]
        return answer["data"]

    @contextlib.asynccontextmanager
    async def socket(self, authorization: str | None, *, acknowledged: bool = True) -> AsyncIterator[GraphQLSocket]:
        """A graphql-transport-ws connection, initialised with `authorization` (and acknowledged, unless told)."""
        ws_url = self.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]) as ws:
            socket = GraphQLSocket(ws)
            await socket.send(
                {"type": "connection_init", "payload": {"Authorization": authorization} if authorization else {}}
            )
            if acknowledged:
                ack = await socket.receive()
                assert ack["type"] == "connection_ack", ack
            yield socket

    async def ws_gql(
        self, query: str, variables: dict[str, Any] | None = None, authorization: str | None = None
    ) -> dict[str, Any]:
        """One operation over a new WebSocket connection; its answer shaped like an HTTP one (data and errors)."""
        async with self.socket(authorization) as socket:
            await socket.start("1", query, variables)
            return await socket.answer("1")

    @contextlib.asynccontextmanager
    async def subscription(
        self, query: str, variables: dict[str, Any] | None, authorization: str | None
    ) -> AsyncIterator[asyncio.Queue[dict[str, Any]]]:
        """A graphql-transport-ws subscription; its `next` payloads and `error` messages arrive on the queue."""
        received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        ws_url = self.url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(ws_url, subprotocols=[websockets.Subprotocol("graphql-transport-ws")]) as ws:
            payload = {"Authorization": authorization} if authorization else {}
            await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
            ack = json.loads(await ws.recv())
            assert ack["type"] == "connection_ack", ack
            await ws.send(
                json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": variables or {}}})
            )

            async def pump() -> None:
                async for raw in ws:
                    message = json.loads(raw)
                    if message["type"] in ("next", "error", "complete"):
                        await received.put(message)

            pumping = asyncio.create_task(pump())
            await asyncio.sleep(0.2)  # the subscription is registered once the server read the message
            try:
                yield received
            finally:
                pumping.cancel()
                with contextlib.suppress(asyncio.CancelledError, websockets.ConnectionClosed):
                    await pumping


async def gateway_database(postgres_url: str) -> str:
    database_url = with_database(postgres_url, f"maillage_gateway_test_{uuid.uuid4().hex[:8]}")
    await ensure_database(database_url)
    await migrate(database_url, ["gateway"])
    return database_url


@contextlib.asynccontextmanager
async def running_gateway(settings: Settings, port: int | None = None, **overrides: Any) -> AsyncIterator[Gateway]:
    """A gateway on a free port (or `port`) with these settings, its metrics on another free port."""
    own = settings.model_copy(update={"gateway_metrics_port": free_port(), **overrides})
    server, serving, port = await serve(create_gateway_app(own), port)
    try:
        yield Gateway(f"http://127.0.0.1:{port}", own)
    finally:
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(serving, 30)


@pytest.fixture(scope="session")
async def gateway_settings(
    settings: Settings, postgres_url: str, directory: Directory, events: Events, matching: Matching
) -> Settings:
    return settings.model_copy(
        update={
            "gateway_database_url": await gateway_database(postgres_url),
            "directory_url": directory.url,
            "events_url": events.url,
            "matching_url": matching.url,
            "gateway_rate_limit_per_minute": 100_000,
            "gateway_rate_limit_burst": 10_000,
        }
    )


@pytest.fixture(scope="session")
async def gateway(gateway_settings: Settings, gateway_port: int) -> AsyncIterator[Gateway]:
    """The gateway over real HTTP in front of the session's three services, at the address e-mails link to."""
    async with running_gateway(gateway_settings, gateway_port) as running:
        yield running
