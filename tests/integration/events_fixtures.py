"""Fixtures that run the events service for real (API, actor replica, outbox relay, e-mail sender) with an SMTP sink."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from services.common.auth import Role
from services.common.embedded import free_port
from services.common.settings import Settings
from services.launch.registry import service_app
from tests.integration.directory_fixtures import Directory, serve
from tests.integration.identities import forwarded
from tests.integration.matching_fixtures import SmtpSink, fresh_database, smtp_sink


@dataclass
class Events:
    url: str
    settings: Settings
    database_url: str
    admin: dict[str, str]
    smtp: SmtpSink

    def token(self, role: Role, actor_id: str | None = None, subject: str | None = None) -> dict[str, str]:
        return forwarded(self.settings, role, actor_id, subject)

    def client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self.url, timeout=30, limits=httpx.Limits(max_connections=600, max_keepalive_connections=600)
        )


@pytest.fixture(scope="session")
def gateway_port() -> int:
    """The port of the session's gateway, chosen before the services start: their links lead there."""
    return free_port()


@pytest.fixture(scope="session")
async def events(
    settings: Settings, postgres_url: str, directory: Directory, gateway_port: int
) -> AsyncIterator[Events]:
    """Events with role `all` on a fresh database, its actor replica fed by the directory through the broker.

    Its links (e-mails, JSON-LD, feeds) lead to the session's gateway, as in production, even when no test starts it.
    """
    database_url = await fresh_database(postgres_url, "events")
    port = free_port()
    with smtp_sink() as (sink, smtp_port):
        own = settings.model_copy(
            update={
                "events_database_url": database_url,
                "directory_url": directory.url,
                "smtp_port": smtp_port,
                "public_url": f"http://127.0.0.1:{gateway_port}",
                "db_pool_max": 20,
            }
        )
        server, serving, _ = await serve(service_app("events", "all", own), port)
        admin = forwarded(own, Role.ADMIN)
        try:
            yield Events(f"http://127.0.0.1:{port}", own, database_url, admin, sink)
        finally:
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(serving, 30)
