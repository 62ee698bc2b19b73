"""Fixtures that run the directory service for real: its own database, uvicorn on a free port, its relay."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import uvicorn

from services.common.app import SERVICE_KEEP_ALIVE_S
from services.common.auth import Role
from services.common.db import ensure_database, migrate
from services.common.embedded import free_port
from services.common.kafka import ensure_topics
from services.common.outbox import OutboxRelay
from services.common.settings import Settings, with_database
from services.launch.registry import service_app
from tests.integration.identities import forwarded


@dataclass
class Directory:
    url: str
    settings: Settings
    database_url: str
    admin: dict[str, str]

    def token(self, role: Role, actor_id: str | None = None, scopes: tuple[str, ...] = ()) -> dict[str, str]:
        return forwarded(self.settings, role, actor_id, scopes=scopes)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10)


async def serve(app: Any, port: int | None = None) -> tuple[uvicorn.Server, asyncio.Task[None], int]:
    """Run an ASGI app with uvicorn on a free port (or the one given) until the server has started."""
    port = port or free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_config=None,
            lifespan="on",
            timeout_keep_alive=SERVICE_KEEP_ALIVE_S,  # as `maillage serve` runs a service
        )
    )
    task = asyncio.create_task(server.serve())
    while not server.started:
        await asyncio.sleep(0.02)
    return server, task, port


@contextlib.asynccontextmanager
async def running_directory(settings: Settings, postgres_url: str) -> AsyncIterator[Directory]:
    """The directory API over real HTTP, on its own fresh database, with its outbox relay running."""
    database_url = with_database(postgres_url, f"maillage_directory_test_{uuid.uuid4().hex[:8]}")
    await ensure_database(database_url)
    await migrate(database_url, ["services.common", "services.directory"])
    await ensure_topics(settings)
    own = settings.model_copy(update={"directory_database_url": database_url})
    app = service_app("directory", "api", own)
    server, serving, port = await serve(app)
    relay = OutboxRelay("directory", database_url, own)
    stop = asyncio.Event()
    relaying = asyncio.create_task(relay.run(stop))
    admin = forwarded(own, Role.ADMIN)
    try:
        yield Directory(f"http://127.0.0.1:{port}", own, database_url, admin)
    finally:
        stop.set()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.gather(serving, relaying), 20)


@pytest.fixture(scope="session")
async def directory(settings: Settings, postgres_url: str) -> AsyncIterator[Directory]:
    """The directory every test shares (one per session)."""
    async with running_directory(settings, postgres_url) as running:
        yield running
