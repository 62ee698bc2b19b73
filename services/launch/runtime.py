"""Running processes: `serve` one service or the gateway under uvicorn, and preparing databases and topics."""

from __future__ import annotations

import asyncio
import gc
import logging

import uvicorn

from services.common.app import SERVICE_KEEP_ALIVE_S, Role
from services.common.db import DatabaseUnavailable, ensure_database, migrate, wait_for_database
from services.common.embedded import PortInUse, port_is_free
from services.common.kafka import ensure_topics, wait_for_broker
from services.common.observability import configure_logging
from services.common.settings import DATABASES, Settings
from services.launch.registry import service_app

logger = logging.getLogger("maillage.runtime")


class ConfigurationError(RuntimeError):
    """A setting that stops startup, with a message saying which variable to set."""


class WorkersFailed(RuntimeError):
    """The process's workers could not recover: it stopped, and exits non-zero so that it is restarted."""


def check_secrets(settings: Settings) -> None:
    try:
        keys = settings.signing_keys()
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    if not keys:
        raise ConfigurationError(
            'MAILLAGE_JWT_KEYS is not set: give it a JSON object {"kid": "secret"} of token '
            "signing keys (`maillage secrets` prints fresh ones; `maillage dev` makes its own)"
        )
    if settings.jwt_active_kid and settings.jwt_active_kid not in keys:
        raise ConfigurationError(
            f"MAILLAGE_JWT_ACTIVE_KID={settings.jwt_active_kid!r} is not a kid of MAILLAGE_JWT_KEYS"
        )
    if not settings.internal_key:
        raise ConfigurationError(
            "MAILLAGE_INTERNAL_KEY is not set: the gateway signs forwarded identities with it "
            "and every service verifies them"
        )


def migration_packages(service: str) -> list[str]:
    if service == "gateway":
        return ["gateway"]  # credentials only: the gateway has no outbox or inbox
    return ["services.common", f"services.{service}"]


async def prepare_databases(settings: Settings, services: tuple[str, ...] = DATABASES) -> dict[str, list[str]]:
    """Create each service's database if missing and apply its migrations."""
    applied: dict[str, list[str]] = {}
    for service in services:
        url = settings.database_url_for(service)
        await ensure_database(url)
        applied[service] = await migrate(url, migration_packages(service))
    return applied


async def prepare_topics(settings: Settings, timeout_s: float = 30.0) -> list[str]:
    await wait_for_broker(settings, timeout_s)
    return await ensure_topics(settings)


def serve(process: str, role: Role, settings: Settings, port: int | None = None) -> None:
    """Run one process until SIGTERM/SIGINT; uvicorn drives the lifespan (workers stop cleanly)."""
    configure_logging(f"{process}-{role}" if process != "gateway" else process, settings.log_level, settings.log_format)
    check_secrets(settings)
    port = port or settings.port_for(process)
    if not port_is_free(settings.host, port):
        raise PortInUse(port, f"{process} HTTP", f"MAILLAGE_{process.upper()}_PORT")
    if process == "gateway" and not port_is_free(settings.host, settings.gateway_metrics_port):
        raise PortInUse(settings.gateway_metrics_port, "gateway metrics", "MAILLAGE_GATEWAY_METRICS_PORT")
    try:  # its database first: a server still starting is waited for, a missing database is said plainly
        asyncio.run(wait_for_database(settings.database_url_for(process)))
    except DatabaseUnavailable as exc:
        raise ConfigurationError(str(exc)) from exc
    if process == "gateway":
        from gateway.app import create_gateway_app

        app = create_gateway_app(settings)
    else:
        app = service_app(process, role, settings)
    tune_garbage_collector()
    # Server.run, not asyncio.run(serve()): it is what installs the configured loop (uvloop).
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        timeout_graceful_shutdown=20,
        # The gateway keeps its pooled connections to a service idle for half this: a server closing an idle
        # connection just as the client reuses it answered "connection closed" (both were 5 s).
        timeout_keep_alive=SERVICE_KEEP_ALIVE_S if process != "gateway" else 5,
        loop="uvloop",
    )
    server = uvicorn.Server(config)
    # Workers that cannot recover stop the server (a graceful shutdown), then the process exits non-zero.
    app.state.on_workers_failed = lambda: setattr(server, "should_exit", True)
    server.run()
    workers = getattr(app.state, "workers", None)
    if workers is not None and workers.gave_up_on is not None:
        raise WorkersFailed(
            f"{process} stopped: its worker loop {workers.gave_up_on} kept ending and could not be recovered "
            "(see the log above); restart the process"
        )


def tune_garbage_collector() -> None:
    """Leave what startup built (modules, schema, app) out of collections and collect young objects less often.

    A request allocates thousands of short-lived objects (JSON, GraphQL results) that die by reference counting;
    with the default threshold (700) the cyclic collector still ran several times per request, each time
    walking every long-lived object too.
    """
    gc.collect()
    gc.freeze()
    gc.set_threshold(20_000, 50, 100)
