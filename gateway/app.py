"""The gateway's ASGI app: GraphQL (HTTP and WebSocket) behind its guard, iCalendar feeds, probes and metrics."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote

import asyncpg
import httpx
import orjson
from fastapi import FastAPI, Request, Response
from fastapi.responses import JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema import BaseSchema
from strawberry.types import ExecutionResult

from gateway.auth import Caller, CredentialCache, RateLimiter, authenticate, rate_key
from gateway.clients import ServiceClients
from gateway.schema import create_schema
from gateway.subscriptions import MatchFeed
from gateway.types.common import GatewayContext
from services.common.app import CorrelationMiddleware, install_observability, readiness
from services.common.db import create_pool, database_reachable
from services.common.errors import MaillageError, install_error_handlers
from services.common.settings import Settings

GRAPHQL_PATH = "/graphql"


@dataclass
class Gateway:
    """What every request shares: settings, the services' client, the credential store, the match feed."""

    settings: Settings
    clients: ServiceClients
    pool: asyncpg.Pool
    feed: MatchFeed
    limiter: RateLimiter
    credentials: CredentialCache = field(default_factory=CredentialCache)


def graphql_error(status: int, message: str, code: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """A refusal before execution, in the GraphQL response shape."""
    return JSONResponse({"errors": [{"message": message, "extensions": {"code": code}}]}, status, headers=headers)


class GraphQLGuard:
    """`/graphql` goes to strawberry's ASGI app, and an HTTP request first passes the guard: body size, the caller
    (revocation checked), the caller's rate, and the time limit. Everything else goes to FastAPI's routes.

    GraphQL is not a FastAPI route: its routing and dependency injection cost 0.2-0.5 ms of the gateway's CPU per
    request on the partner query (bench/gateway.py), for nothing GraphQL uses.
    """

    def __init__(self, app: ASGIApp, state: dict[str, Any], graphql: ASGIApp) -> None:
        self.app = app
        self.state = state
        self.graphql = graphql

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] != GRAPHQL_PATH:
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket" or scope["method"] == "OPTIONS":
            await self.graphql(scope, receive, send)  # a WebSocket authenticates in `connection_init`
            return
        gateway: Gateway = self.state["gateway"]
        settings = gateway.settings
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        limit = settings.gateway_max_body_bytes
        declared = headers.get("content-length")

        def too_large() -> JSONResponse:
            return graphql_error(413, f"request body over {limit} bytes", "BAD_USER_INPUT")

        if declared is not None and declared.isdigit() and int(declared) > limit:
            await too_large()(scope, receive, send)
            return
        try:
            caller = await authenticate(settings, gateway.pool, headers.get("authorization"), gateway.credentials)
        except MaillageError as exc:
            await graphql_error(401, exc.detail, "UNAUTHENTICATED", {"WWW-Authenticate": "Bearer"})(
                scope, receive, send
            )
            return
        if caller is None or not caller.principal.is_admin:
            client = scope.get("client")
            key = rate_key(caller, client[0] if client else None)
            wait = gateway.limiter.retry_after(key, caller.rate_limit_per_minute if caller else None)
            if wait is not None:
                await graphql_error(
                    429,
                    f"rate limit reached: retry in {wait:.1f} s",
                    "RATE_LIMITED",
                    {"Retry-After": str(max(1, round(wait)))},
                )(scope, receive, send)
                return
        scope.setdefault("state", {})["caller"] = caller

        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyTooLarge
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(settings.gateway_request_timeout_s):
                await self.graphql(scope, bounded_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await too_large()(scope, receive, send)
        except TimeoutError:
            if not started:
                await graphql_error(
                    504,
                    f"the request took over {settings.gateway_request_timeout_s:g} s and was stopped",
                    "UNAVAILABLE",
                )(scope, receive, send)


class BodyTooLarge(Exception):
    pass


class MaillageGraphQL(GraphQL[GatewayContext, None]):
    """Strawberry's ASGI app; a WebSocket caller authenticates in `connection_init` ({"Authorization": "Bearer …"})."""

    def __init__(self, schema: BaseSchema, shared: dict[str, Any], **options: Any) -> None:
        super().__init__(schema, **options)
        self.shared = shared

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> GatewayContext:
        # The guard authenticated an HTTP request; a WebSocket authenticates in `connection_init`.
        caller: Caller | None = request.scope.get("state", {}).get("caller")
        context = GatewayContext(self.shared["gateway"], caller)
        context.request = request
        return context

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    def decode_json(self, data: str | bytes) -> object:
        # orjson refuses what json.loads lets through to a 500 or to the services: bytes that are not UTF-8 and
        # lone surrogates (\ud800). Its JSONDecodeError is json's, which strawberry answers with a 400.
        return orjson.loads(data)

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        errors: list[dict[str, object]] = response.get("errors") or []  # type: ignore[assignment]
        for item in errors:
            # Errors raised while parsing (the token limit) bypass the schema's extensions: code them here.
            extensions = item.setdefault("extensions", {})
            if isinstance(extensions, dict):
                extensions.setdefault("code", "BAD_USER_INPUT")
        return response

    async def on_ws_connect(self, context: GatewayContext) -> dict[str, object] | None:
        params = context.connection_params or {}
        authorization = params.get("Authorization") or params.get("authorization")
        if authorization is None and context.request is not None:
            authorization = context.request.headers.get("authorization")
        if authorization is None:
            return None
        try:
            gateway = context.gateway
            context.caller = await authenticate(gateway.settings, gateway.pool, str(authorization), gateway.credentials)
        except MaillageError as exc:
            raise ConnectionRejectionError({"message": exc.detail, "code": "UNAUTHENTICATED"}) from None
        context.fresh_loaders()
        return None


def create_gateway_app(settings: Settings) -> FastAPI:
    shared: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            settings.database_url_for("gateway"), min_size=settings.db_pool_min, max_size=settings.db_pool_max
        )
        clients = ServiceClients(settings)
        feed = MatchFeed(settings)
        credentials = CredentialCache()
        stop = asyncio.Event()
        background = [
            asyncio.create_task(feed.run(stop), name="match-feed"),
            asyncio.create_task(credentials.watch(settings.database_url_for("gateway"), stop), name="credentials"),
        ]
        shared["gateway"] = Gateway(
            settings,
            clients,
            pool,
            feed,
            RateLimiter(settings.gateway_rate_limit_per_minute, settings.gateway_rate_limit_burst),
            credentials,
        )
        try:
            yield
        finally:
            stop.set()
            for task in background:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*background)
            await clients.aclose()
            await pool.close()

    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    app = FastAPI(title="Maillage gateway", version="0.1.0", lifespan=lifespan)
    app.state.settings = settings
    install_error_handlers(app)
    install_observability(app, "gateway")

    @app.get("/readyz", include_in_schema=False)
    async def _readyz() -> JSONResponse:
        started = "gateway" in shared
        return readiness({"started": started, "database": started and await database_reachable(shared["gateway"].pool)})

    feeds = {
        "events": "/v1/events/{id}.ics",
        "organizers": "/v1/feeds/organizers/{id}.ics",
        "territories": "/v1/feeds/territories/{id}.ics",
        "themes": "/v1/feeds/themes/{id}.ics",
    }

    @app.get("/ical/{kind}/{name}.ics", summary="iCalendar feeds at stable public URLs (from the events service)")
    async def _ical(kind: str, name: str, request: Request) -> Response:
        gateway: Gateway = shared["gateway"]
        if kind not in feeds:
            return JSONResponse({"detail": f"no feed kind {kind}; one of {sorted(feeds)}"}, 404)
        try:
            upstream = await gateway.clients.request(
                "events",
                "GET",
                feeds[kind].format(id=quote(name, safe="")),
                principal=None,
                headers={k: v for k, v in request.headers.items() if k == "if-none-match"},
            )
        except httpx.HTTPError:  # the events service is down: say so plainly
            return JSONResponse({"detail": "the events service is unavailable"}, 503, headers={"Retry-After": "5"})
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "etag", "cache-control")}
        return Response(upstream.content, upstream.status_code, headers=passed)

    graphql = MaillageGraphQL(
        create_schema(settings),
        shared,
        graphql_ide="graphiql",
        allowed_origins=origins,
        multipart_uploads_enabled=False,
    )
    app.add_middleware(GraphQLGuard, state=shared, graphql=CorrelationMiddleware(graphql, "gateway", GRAPHQL_PATH))
    if origins:  # outermost, so that refusals carry the CORS headers too
        app.add_middleware(
            CORSMiddleware,
            allow_origins=origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Authorization", "Content-Type"],
            max_age=600,
        )
    return app
