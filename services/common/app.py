"""Application factory: the FastAPI app of one service and role, with its pool, workers, probes and metrics."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Annotated, Any, Literal

import asyncpg
from fastapi import APIRouter, Depends, FastAPI, Request, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from services.common.auth import CurrentPrincipal
from services.common.consumer import IdempotentConsumer
from services.common.db import create_pool, database_reachable
from services.common.errors import install_error_handlers
from services.common.kafka import broker_reachable
from services.common.observability import (
    CORRELATION_HEADER,
    HTTP_REQUESTS,
    correlation_id,
    new_correlation_id,
)
from services.common.outbox import OutboxRelay
from services.common.settings import Settings
from services.common.supervisor import Loop, Supervisor
from services.contracts.events import ActorV1

logger = logging.getLogger("maillage.app")

Role = Literal["api", "worker", "all"]

SERVICE_KEEP_ALIVE_S = 30  # how long a service keeps an idle connection from the gateway open

ConsumersFactory = Callable[[asyncpg.Pool, Settings], list[IdempotentConsumer]]
LoopsFactory = Callable[[asyncpg.Pool, Settings], list[Loop]]
ActorApplier = Callable[[asyncpg.Connection, ActorV1, Settings], Awaitable[bool]]


def no_loops(pool: asyncpg.Pool, settings: Settings) -> list[Loop]:
    return []


@dataclass(frozen=True)
class ServiceParts:
    """What a service plugs into its app: handed in by the launcher's registry, never looked up by name here."""

    router: APIRouter  # its REST API (`api` role)
    build_consumers: ConsumersFactory  # its Kafka consumers (`worker` role)
    build_loops: LoopsFactory = no_loops  # its other background loops (senders, schedulers)
    apply_actor: ActorApplier | None = None  # applies one actor to its replica (`maillage rebuild`), if it keeps one
    parallel_query: bool = True  # False: its pool's queries start no parallel workers (db.create_pool)


class Workers(Supervisor):
    """A worker role's background tasks, supervised: the outbox relay, the service's consumers, its other loops."""

    def __init__(
        self,
        relay: OutboxRelay,
        consumers: list[IdempotentConsumer],
        loops: list[Loop] | None = None,
        *,
        settings: Settings,
        on_give_up: Callable[[], None] | None = None,
    ) -> None:
        named: dict[str, Loop] = {"outbox-relay": relay.run}
        named |= {f"consumer-{consumer.name}": consumer.run for consumer in consumers}
        named |= {loop.__name__: loop for loop in loops or []}
        super().__init__(
            named,
            restart_limit=settings.worker_restart_limit,
            restart_window_s=settings.worker_restart_window_s,
            on_give_up=on_give_up,
        )
        self.relay = relay
        self.consumers = consumers


class CorrelationMiddleware:
    """Correlation id in and out, and the request histogram (plain ASGI: no per-request task or stream)."""

    def __init__(self, app: ASGIApp, process: str, route: str | None = None) -> None:
        self.app = app
        self.process = process
        self.route = route  # the route label of an app that is not routed by FastAPI

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cid = Headers(scope=scope).get(CORRELATION_HEADER) or new_correlation_id()
        token = correlation_id.set(cid)
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[CORRELATION_HEADER] = cid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            correlation_id.reset(token)
            route = self.route or getattr(scope.get("route"), "path", "unmatched")
            HTTP_REQUESTS.labels(self.process, scope["method"], route, str(status)).observe(
                time.perf_counter() - started
            )


def install_observability(app: FastAPI, process: str, *, metrics_route: bool = True) -> None:
    """Correlation ids in and out, request metrics, and the `/metrics` endpoint (unless served on another port)."""

    app.add_middleware(CorrelationMiddleware, process=process)

    if metrics_route:

        @app.get("/metrics", include_in_schema=False)
        async def _metrics() -> Response:
            return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/healthz", include_in_schema=False)
    async def _healthz(request: Request) -> JSONResponse:
        # Liveness: a process whose workers gave up is dead even though it answers HTTP.
        workers: Supervisor | None = getattr(request.app.state, "workers", None)
        if workers is not None and not workers.alive():
            body = {"status": "failing", "process": process, "workers": f"gave up on {workers.gave_up_on}"}
            return JSONResponse(body, status_code=503)
        return JSONResponse({"status": "ok", "process": process})


def readiness(checks: dict[str, bool]) -> JSONResponse:
    """The `/readyz` answer of every process: 200 when every check holds, 503 naming the one that fails."""
    ready = all(checks.values())
    return JSONResponse({"ready": ready, "checks": checks}, status_code=200 if ready else 503)


def create_service_app(service: str, role: Role, settings: Settings, parts: ServiceParts) -> FastAPI:
    """One service's app: the REST API (`api`), the relay and consumers (`worker`), or both, from its parts."""
    database_url = settings.database_url_for(service)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        pool = await create_pool(
            database_url,
            min_size=settings.db_pool_min,
            max_size=settings.db_pool_max,
            parallel_query=parts.parallel_query,
        )
        app.state.pool = pool
        workers: Workers | None = None
        if role in ("worker", "all"):
            workers = Workers(
                OutboxRelay(service, database_url, settings),
                parts.build_consumers(pool, settings),
                # Other background loops (senders, schedulers), for services that have some.
                parts.build_loops(pool, settings),
                settings=settings,
                # `maillage serve` sets how the process stops (and then exits 1) when its workers cannot recover.
                on_give_up=lambda: app.state.on_workers_failed(),
            )
            workers.start()
        app.state.workers = workers
        logger.info("%s started with role %s", service, role)
        try:
            yield
        finally:
            if workers is not None:
                await workers.shutdown()
            await pool.close()

    app = FastAPI(
        title=f"Maillage {service}",
        version="0.1.0",
        lifespan=lifespan,
        docs_url="/docs" if role != "worker" else None,
        openapi_url="/openapi.json" if role != "worker" else None,
    )
    app.state.settings = settings
    app.state.service = service
    app.state.workers = None
    app.state.on_workers_failed = lambda: None
    install_error_handlers(app)
    install_observability(app, service)

    @app.get("/readyz", include_in_schema=False)
    async def _readyz(request: Request) -> JSONResponse:
        checks = {
            "database": await database_reachable(request.app.state.pool),
            "broker": await broker_reachable(settings.kafka_bootstrap),
        }
        workers: Workers | None = request.app.state.workers
        if workers is not None:
            checks["workers"] = workers.healthy()
        return readiness(checks)

    if role in ("api", "all"):
        common = APIRouter(prefix="/v1", tags=["identity"])

        @common.get("/me", summary="The verified caller of this request")
        async def _me(principal: CurrentPrincipal) -> dict[str, Any]:
            return {
                "subject": principal.subject,
                "role": principal.role.value,
                "actor_id": principal.actor_id,
                "scopes": sorted(principal.scopes),
            }

        app.include_router(common)
        app.include_router(parts.router)
    return app


def get_pool(request: Request) -> asyncpg.Pool:
    pool: asyncpg.Pool = request.app.state.pool
    return pool


def get_settings_dep(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


DbPool = Annotated[asyncpg.Pool, Depends(get_pool)]
AppSettings = Annotated[Settings, Depends(get_settings_dep)]
