"""GraphQL over the WebSocket (graphql-transport-ws) behind the guard HTTP requests pass: each operation is sized,
nested, rated and timed like a request; a connection holds a bounded number of operations and subscriptions, a
credential a bounded number of connections; and a connection ends when its credential is revoked (close code 4403)
or its token expires (4401)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections import Counter
from collections.abc import AsyncGenerator, Mapping
from typing import Any, Protocol, cast

import asyncpg
import jwt
from graphql import GraphQLError, GraphQLFormattedError, OperationType, get_operation_ast, parse
from starlette.websockets import WebSocketDisconnect, WebSocketState
from strawberry.asgi import ASGIWebSocketAdapter
from strawberry.http.exceptions import NonJsonMessageReceived, NonTextMessageReceived
from strawberry.subscriptions.protocols.graphql_transport_ws.handlers import (
    BaseGraphQLTransportWSHandler,
    Operation,
)
from strawberry.subscriptions.protocols.graphql_transport_ws.types import (
    ConnectionInitMessage,
    ErrorMessage,
    Message,
    SubscribeMessage,
)

from gateway.auth import CredentialCache, rate_key
from gateway.context import Gateway, GatewayContext
from gateway.guard import (
    NestedTooDeeply,
    Refusal,
    nested_too_deeply,
    over_depth,
    over_rate,
    over_size,
    parse_json_text,
    timed_out,
)
from services.common.settings import Settings
from services.contracts.errors import ErrorCode

logger = logging.getLogger("maillage.gateway.websocket")

MESSAGE_TOO_BIG = 1009  # RFC 6455: a message too big to process
INVALID_MESSAGE = 4400  # graphql-transport-ws: a message the server cannot process
TOKEN_EXPIRED = 4401
CREDENTIAL_REVOKED = 4403
TOO_MANY = 4429
TRY_AGAIN_LATER = 1013  # RFC 6455


class ConnectionRefused(Exception):
    """A connection refused at `connection_init`, closed with `code`."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


class _GatewayView(Protocol):
    shared: dict[str, Any]


def _gateway(view: object) -> Gateway:
    return cast(Gateway, cast(_GatewayView, view).shared["gateway"])


def _connections(view: object) -> OpenConnections:
    return cast(OpenConnections, cast(_GatewayView, view).shared["connections"])


class GuardedWebSocketAdapter(ASGIWebSocketAdapter):
    """Strawberry's adapter, reading no message over `gateway_max_body_bytes` (closed with 1009) and none nested
    deeper than JSON is parsed (closed with 4400): neither has an operation id that an `error` could answer."""

    async def iter_json(self, *, ignore_parsing_errors: bool = False) -> AsyncGenerator[object, None]:
        settings = _gateway(self.view).settings
        try:
            while self.ws.application_state != WebSocketState.DISCONNECTED:
                text = await self.ws.receive_text()
                refusal = over_size(settings, len(text) if text.isascii() else len(text.encode()), "message")
                if refusal is not None:
                    await self.close(MESSAGE_TOO_BIG, refusal.message)
                    return
                try:
                    message = parse_json_text(text, settings.gateway_max_input_depth)
                except NestedTooDeeply:
                    await self.close(INVALID_MESSAGE, nested_too_deeply(settings, "message").message)
                    return
                except ValueError as exc:
                    if ignore_parsing_errors:
                        continue
                    raise NonJsonMessageReceived from exc
                yield message
        except KeyError as exc:
            raise NonTextMessageReceived from exc
        except WebSocketDisconnect:
            pass


@functools.lru_cache(maxsize=128)
def operation_type(query: str, operation_name: str | None, max_tokens: int) -> OperationType | None:
    """The type of the operation a document runs (None: it has no such operation, which strawberry answers);
    raises `GraphQLError` for a document that does not parse or is over the token limit."""
    operation = get_operation_ast(parse(query, max_tokens=max_tokens, no_location=True), operation_name)
    return operation.operation if operation is not None else None


def token_expiry(authorization: str | None) -> float | None:
    """When the bearer token of an authenticated connection expires (epoch seconds)."""
    if authorization is None:
        return None
    token = authorization.strip().partition(" ")[2].strip()
    claims = jwt.decode(token, options={"verify_signature": False})  # verified by `authenticate` just before
    return float(claims["exp"])


class GuardedTransportWSHandler(BaseGraphQLTransportWSHandler[GatewayContext, None]):
    """Strawberry's graphql-transport-ws handler, under the guard (see the module's docstring)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gateway = _gateway(self.view)
        self.subscriptions: set[str] = set()  # ids of the running operations that are subscriptions
        self.credential_id: uuid.UUID | None = None
        self.expires_at: float | None = None
        self.ended = False
        self.expiry: asyncio.Task[None] | None = None
        self.connections = _connections(self.view)
        self.connections.enter(self)

    @property
    def client_address(self) -> str | None:
        request = self.context.request
        return request.client.host if request is not None and request.client is not None else None

    async def handle_message(self, message: Message) -> None:
        if not self.ended:  # what the client sends once the server closes is not read
            await super().handle_message(message)

    async def handle_connection_init(self, message: ConnectionInitMessage) -> None:
        try:
            await super().handle_connection_init(message)  # the view's `on_ws_connect` authenticates and admits
        except ConnectionRefused as refused:
            await self.websocket.close(refused.code, refused.reason)

    async def handle_subscribe(self, message: SubscribeMessage) -> None:
        payload = message.get("payload")
        if not self.connection_acknowledged or message.get("id") in self.operations:
            await super().handle_subscribe(message)  # the protocol's own answers (4401, 4409)
            return
        if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
            await self.handle_invalid_message("subscribe: a payload with a query is required")
            return
        try:
            subscription = self.is_subscription(payload)
        except GraphQLError as exc:
            # As over HTTP: an error of the operation, not the end of the connection (strawberry closes it for a
            # syntax error, and lets the token limit's through as an unexpected one).
            invalid: GraphQLFormattedError = {**exc.formatted, "extensions": {"code": ErrorCode.BAD_USER_INPUT}}
            await self.send_message(ErrorMessage(id=message["id"], type="error", payload=[invalid]))
            return
        refusal = self.refusal(payload, subscription)
        if refusal is not None:
            await self.send_message(ErrorMessage(id=message["id"], type="error", payload=[refusal.error()]))
            return
        if subscription:
            self.subscriptions.add(message["id"])
        await super().handle_subscribe(message)

    def is_subscription(self, payload: Mapping[str, object]) -> bool:
        name = payload.get("operationName")
        max_tokens = self.gateway.settings.gateway_max_tokens
        kind = operation_type(str(payload["query"]), name if isinstance(name, str) else None, max_tokens)
        return kind is OperationType.SUBSCRIPTION

    def refusal(self, payload: Mapping[str, object], subscription: bool) -> Refusal | None:
        """Why this operation may not run: its nesting, this connection's caps, its caller's rate (counted last, so
        that an operation refused for another reason costs the caller nothing)."""
        settings = self.gateway.settings
        nested = over_depth(settings, payload)
        if nested is not None:
            return nested
        self.subscriptions &= self.operations.keys()
        if len(self.operations) >= settings.gateway_max_operations_per_connection:
            return connection_cap(
                "operations", "max_operations_per_connection", settings.gateway_max_operations_per_connection
            )
        if subscription and len(self.subscriptions) >= settings.gateway_max_subscriptions_per_connection:
            return connection_cap(
                "subscriptions", "max_subscriptions_per_connection", settings.gateway_max_subscriptions_per_connection
            )
        return over_rate(self.gateway.limiter, self.context.caller, self.client_address)

    async def run_operation(self, operation: Operation[GatewayContext, None]) -> None:
        if operation.id in self.subscriptions:
            await super().run_operation(operation)  # lasts as long as the caller wants, and its credential lives
            return
        try:
            async with asyncio.timeout(self.gateway.settings.gateway_request_timeout_s):
                await super().run_operation(operation)
        except TimeoutError:
            if self.operations.get(operation.id) is operation:
                stopped = timed_out(self.gateway.settings).error()
                await operation.send_operation_message(ErrorMessage(id=operation.id, type="error", payload=[stopped]))

    async def send_message(self, message: Message) -> None:
        if self.ended:
            return  # a match on its way when the credential ended stays unsent
        if message["type"] == "next" and self.expires_at is not None and time.time() >= self.expires_at:
            return  # the token expired: its timer, about to run, closes the connection
        await super().send_message(message)

    def admitted(self, credential_id: uuid.UUID | None, expires_at: float | None) -> None:
        """Authenticated and admitted: the connection ends when its token expires."""
        self.credential_id = credential_id
        self.expires_at = expires_at
        if expires_at is not None:
            self.expiry = asyncio.create_task(self._end_at(expires_at), name="websocket-expiry")

    async def _end_at(self, expires_at: float) -> None:
        await asyncio.sleep(max(0.0, expires_at - time.time()))
        await self.end(TOKEN_EXPIRED, "token expired")

    async def end(self, code: int, reason: str) -> None:
        """Stop every operation, then close: nothing is sent after the credential ended."""
        if self.ended:
            return
        self.ended = True
        for operation_id in list(self.operations):
            await self.cleanup_operation(operation_id)
        with contextlib.suppress(RuntimeError, WebSocketDisconnect):  # the client may be gone already
            await self.websocket.close(code, reason)

    async def shutdown(self) -> None:
        if self.expiry is not None:
            self.expiry.cancel()
        self.connections.leave(self)
        await super().shutdown()


def connection_cap(what: str, rule: str, limit: int) -> Refusal:
    return Refusal(429, f"at most {limit} {what} at once on one connection", ErrorCode.RATE_LIMITED, {"rule": rule})


class OpenConnections:
    """The replica's graphql-transport-ws connections: how many each credential holds, and which to end when a
    credential is revoked — heard from PostgreSQL at once, and read again every `gateway_connection_check_s` in case
    a notification was missed (the listening connection was down)."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool, credentials: CredentialCache) -> None:
        self.settings = settings
        self.pool = pool
        self.handlers: dict[GatewayContext, GuardedTransportWSHandler] = {}
        self.keys: dict[GuardedTransportWSHandler, str] = {}
        self.per_key: Counter[str] = Counter()
        self.by_credential: dict[uuid.UUID, set[GuardedTransportWSHandler]] = {}
        self.checks: set[asyncio.Task[bool]] = set()
        credentials.listeners.append(self.credential_changed)

    def enter(self, handler: GuardedTransportWSHandler) -> None:
        self.handlers[handler.context] = handler

    def admit(self, context: GatewayContext, authorization: str | None) -> None:
        """Count an authenticated connection against its credential's cap; raises `ConnectionRefused` over it."""
        handler = self.handlers.get(context)
        if handler is None:
            return  # not a graphql-transport-ws connection: the view speaks no other protocol
        key = rate_key(context.caller, handler.client_address)
        limit = self.settings.gateway_max_connections_per_credential
        if self.per_key[key] >= limit:
            raise ConnectionRefused(TOO_MANY, f"at most {limit} connections at once for one credential")
        self.per_key[key] += 1
        self.keys[handler] = key
        credential_id = None
        principal = context.principal
        if principal is not None and principal.token_id is not None:
            with contextlib.suppress(ValueError):  # a jti that is not a UUID names no credential
                credential_id = uuid.UUID(principal.token_id)
        if credential_id is not None:
            self.by_credential.setdefault(credential_id, set()).add(handler)
        handler.admitted(credential_id, token_expiry(authorization) if principal is not None else None)

    def leave(self, handler: GuardedTransportWSHandler) -> None:
        self.handlers.pop(handler.context, None)
        key = self.keys.pop(handler, None)
        if key is not None:
            self.per_key[key] -= 1
            if self.per_key[key] <= 0:
                del self.per_key[key]
        if handler.credential_id is not None:
            holders = self.by_credential.get(handler.credential_id, set())
            holders.discard(handler)
            if not holders:
                self.by_credential.pop(handler.credential_id, None)

    def credential_changed(self, credential_id: uuid.UUID | None) -> None:
        """A change heard from PostgreSQL: read the credential again, if a connection holds it."""
        changed = set(self.by_credential) if credential_id is None else {credential_id} & self.by_credential.keys()
        if changed:
            task = asyncio.create_task(self.check(changed), name="websocket-credentials")
            self.checks.add(task)
            task.add_done_callback(self.checks.discard)

    async def check(self, credential_ids: set[uuid.UUID]) -> bool:
        """End the connections of those credentials that are revoked; False when the database could not say."""
        try:
            async with asyncio.timeout(self.settings.gateway_connection_check_s):
                rows = await self.pool.fetch(
                    "SELECT id FROM credentials WHERE id = ANY($1::uuid[]) AND revoked_at IS NULL",
                    list(credential_ids),
                )
        except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            logger.warning("the credentials of open WebSocket connections could not be read again: %s", exc)
            return False
        # A credential whose row is gone is refused by `authenticate` as a revoked one is: its connections end too.
        for credential_id in credential_ids - {row["id"] for row in rows}:
            for handler in list(self.by_credential.get(credential_id, ())):
                await handler.end(CREDENTIAL_REVOKED, "credential revoked")
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        """Read every open connection's credential again every `gateway_connection_check_s`, until `stop`.

        A connection whose credential could not be read for two periods is ended too (1013, try again later): this
        replica could not tell a revoked one, and a new connection is refused while the database is down.
        """
        period = self.settings.gateway_connection_check_s
        confirmed = time.monotonic()
        try:
            while not stop.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)
                if stop.is_set():
                    break
                if not self.by_credential or await self.check(set(self.by_credential)):
                    confirmed = time.monotonic()
                elif time.monotonic() - confirmed > 2 * period:
                    for holders in list(self.by_credential.values()):
                        for handler in list(holders):
                            await handler.end(TRY_AGAIN_LATER, "credential cannot be checked: try again later")
        finally:
            for task in self.checks:
                task.cancel()
