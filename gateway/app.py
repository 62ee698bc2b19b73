"""The gateway's ASGI app: GraphQL (HTTP and WebSocket) behind its guard, iCalendar feeds, the pages of links, probes.

Its metrics are served on an internal port of their own (MAILLAGE_GATEWAY_METRICS_PORT), never on the public one.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx
import orjson
from cross_web import AsyncHTTPRequestAdapter
from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.schema import BaseSchema
from strawberry.subscriptions import GRAPHQL_TRANSPORT_WS_PROTOCOL
from strawberry.types import ExecutionResult

from gateway import console, graphiql
from gateway.auth import Caller, CredentialCache, RateLimiter, authenticate
from gateway.clients import FEEDS, ServiceClients
from gateway.context import Gateway, GatewayContext
from gateway.entry import admit
from gateway.guard import (
    NestedTooDeeply,
    Refused,
    nested_too_deeply,
    over_depth,
    over_size,
    parse_json_text,
    text_nesting_depth,
    timed_out,
)
from gateway.links import install_public_pages
from gateway.schema import create_schema
from gateway.subscriptions import MatchFeed
from gateway.websocket import GuardedTransportWSHandler, GuardedWebSocketAdapter, OpenConnections
from services.common.app import CorrelationMiddleware, install_observability, readiness
from services.common.db import create_pool, database_reachable
from services.common.errors import MaillageError, NotFound, Unavailable, install_error_handlers, problem_response
from services.common.observability import serve_metrics
from services.common.settings import Settings
from services.contracts.errors import ErrorCode

GRAPHQL_PATH = "/graphql"


class GraphQLGuard:
    """`/graphql` goes to strawberry's ASGI app, and an HTTP request first passes the guard: body size, the caller
    (revocation checked), the caller's rate, and the time limit (gateway/guard.py: each WebSocket operation passes
    the same checks, in gateway/websocket.py). Everything else goes to FastAPI's routes.

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
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and (too_large := over_size(settings, int(declared))):
            await too_large.response()(scope, receive, send)
            return
        client = scope.get("client")
        try:
            caller = await admit(gateway, headers.get("authorization"), client[0] if client else None)
        except Refused as refused:
            await refused.refusal.response()(scope, receive, send)
            return
        scope.setdefault("state", {})["caller"] = caller

        received = 0

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if too_large := over_size(settings, received):
                raise Refused(too_large)  # answered by MaillageGraphQL, which is reading the body
            return message

        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            async with asyncio.timeout(settings.gateway_request_timeout_s):
                await self.graphql(scope, bounded_receive, tracking_send)
        except TimeoutError:
            if not started:
                await timed_out(settings).response()(scope, receive, send)


class MaillageGraphQL(GraphQL[GatewayContext, None]):
    """Strawberry's ASGI app; a WebSocket caller authenticates in `connection_init` ({"Authorization": "Bearer …"}).

    The WebSocket speaks graphql-transport-ws only, through the guarded handler (the older graphql-ws protocol would
    run operations outside the guard); request bodies are parsed by orjson, their variables' nesting bounded.
    """

    graphql_transport_ws_handler_class = GuardedTransportWSHandler
    websocket_adapter_class = GuardedWebSocketAdapter

    def __init__(self, schema: BaseSchema, shared: dict[str, Any], **options: Any) -> None:
        options.setdefault("subscription_protocols", (GRAPHQL_TRANSPORT_WS_PROTOCOL,))
        # The guarded handler caps operations and subscriptions per connection from the settings.
        super().__init__(schema, max_subscriptions_per_connection=None, **options)
        self.shared = shared

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        except Refused as refused:  # found while parsing the body, before any answer
            await refused.refusal.response()(scope, receive, send)

    @property
    def settings(self) -> Settings:
        gateway: Gateway = self.shared["gateway"]
        return gateway.settings

    def decode_json(self, data: str | bytes) -> object:
        return parse_json_text(data, self.settings.gateway_max_input_depth)

    async def parse_http_body(self, request: AsyncHTTPRequestAdapter) -> GraphQLRequestData | list[GraphQLRequestData]:
        settings = self.settings
        limit = settings.gateway_max_input_depth
        try:
            parsed = await super().parse_http_body(request)
        except NestedTooDeeply:
            where = "body"
            if request.method == "GET":  # which query parameter
                deep = text_nesting_depth(request.query_params.get("variables") or "") > limit
                where = "variables" if deep else "extensions"
            raise Refused(nested_too_deeply(settings, where)) from None
        for item in parsed if isinstance(parsed, list) else [parsed]:
            if refusal := over_depth(settings, {"variables": item.variables, "extensions": item.extensions}):
                raise Refused(refusal)
        return parsed

    async def get_context(self, request: Request | WebSocket, response: Response | WebSocket) -> GatewayContext:
        # The guard authenticated an HTTP request; a WebSocket authenticates in `connection_init`.
        caller: Caller | None = request.scope.get("state", {}).get("caller")
        context = GatewayContext(self.shared["gateway"], caller)
        context.request = request
        return context

    def encode_json(self, data: object) -> bytes:
        return orjson.dumps(data)

    async def render_graphql_ide(self, request: Request) -> HTMLResponse:
        return graphiql.page()  # the gateway's own files, not strawberry's page of CDN scripts

    async def process_result(self, request: Request, result: ExecutionResult) -> GraphQLHTTPResponse:
        response = await super().process_result(request, result)
        errors: list[dict[str, object]] = response.get("errors") or []  # type: ignore[assignment]
        for item in errors:
            # Errors raised while parsing (the token limit) bypass the schema's extensions: code them here.
            extensions = item.setdefault("extensions", {})
            if isinstance(extensions, dict):
                extensions.setdefault("code", ErrorCode.BAD_USER_INPUT)
        return response

    async def on_ws_connect(self, context: GatewayContext) -> dict[str, object] | None:
        params = context.connection_params or {}
        authorization = params.get("Authorization") or params.get("authorization")
        if authorization is None and context.request is not None:
            authorization = context.request.headers.get("authorization")
        connections: OpenConnections = self.shared["connections"]
        if authorization is None:
            connections.admit(context, None)
            return None
        try:
            gateway = context.gateway
            context.caller = await authenticate(gateway.settings, gateway.pool, str(authorization), gateway.credentials)
        except MaillageError as exc:
            # UNAUTHENTICATED, or UNAVAILABLE when the credential could not be checked (its database is down).
            raise ConnectionRejectionError({"message": exc.detail, "code": exc.code}) from None
        context.fresh_loaders()
        connections.admit(context, str(authorization))  # over its credential's cap: closed 4429
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
        # The replica's WebSocket connections: the transport's, beside what resolvers share.
        shared["connections"] = connections = OpenConnections(settings, pool, credentials)
        stop_metrics = serve_metrics(settings.host, settings.gateway_metrics_port)
        background.append(asyncio.create_task(connections.watch(stop), name="websocket-credentials"))
        try:
            yield
        finally:
            await asyncio.to_thread(stop_metrics)  # waits for its thread's poll (0.5 s): not on the loop
            stop.set()
            for task in background:
                task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.gather(*background)
            await clients.aclose()
            await pool.close()

    origins = [origin.strip() for origin in settings.cors_origins.split(",") if origin.strip()]
    # The public port: GraphQL, feeds, probes and the pages of links; no metrics or API docs (the schema is GraphQL's).
    app = FastAPI(
        title="Maillage gateway", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None
    )
    app.state.settings = settings
    install_error_handlers(app)
    install_observability(app, "gateway", metrics_route=False)
    install_public_pages(app, lambda: shared["gateway"].clients)
    graphiql.mount(app)
    schema = create_schema(settings)
    console.mount(app, shared, schema)

    @app.get("/readyz", include_in_schema=False)
    async def _readyz() -> JSONResponse:
        started = "gateway" in shared
        return readiness({"started": started, "database": started and await database_reachable(shared["gateway"].pool)})

    @app.get("/ical/{kind}/{name}.ics", summary="iCalendar feeds at stable public URLs (from the events service)")
    async def _ical(kind: str, name: str, request: Request) -> Response:
        gateway: Gateway = shared["gateway"]
        if kind not in FEEDS:
            raise NotFound(f"no feed kind {kind}; one of {sorted(FEEDS)}")
        try:
            upstream = await gateway.clients.events.feed(
                kind, quote(name, safe=""), {k: v for k, v in request.headers.items() if k == "if-none-match"}
            )
        except httpx.HTTPError:  # the events service is down: say so plainly
            unavailable = Unavailable("the events service is unavailable")
            return problem_response(unavailable, request.url.path, {"Retry-After": "5"})
        passed = {k: v for k, v in upstream.headers.items() if k.lower() in ("content-type", "etag", "cache-control")}
        return Response(upstream.content, upstream.status_code, headers=passed)

    graphql = MaillageGraphQL(
        schema,
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
