"""Refilling a service's actor replica from the directory's snapshot API, page by page."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import httpx

from services.common.auth import service_headers
from services.common.db import create_pool
from services.common.settings import Settings
from services.contracts.events import ActorV1


@dataclass
class RebuildReport:
    read: int = 0
    applied: int = 0  # newer than the replica's copy (or missing from it)
    watermark: str | None = None  # the directory's state is complete up to this time; the topic does the rest


async def snapshot_pages(
    settings: Settings, service: str, *, since: datetime | None = None, page_size: int = 500
) -> AsyncIterator[tuple[list[ActorV1], str]]:
    """Every actor of the directory (or those changed since a time), with the snapshot's watermark."""
    params: dict[str, str | int] = {"limit": page_size}
    if since is not None:
        params["updated_since"] = since.isoformat()
    async with httpx.AsyncClient(base_url=settings.directory_url, timeout=30) as http:
        while True:
            # Minted per page: a rebuild of a large directory outlives one identity.
            response = await http.get("/v1/actors/snapshot", params=params, headers=service_headers(settings, service))
            response.raise_for_status()
            page = response.json()
            yield [ActorV1.model_validate(item) for item in page["items"]], page["watermark"]
            if not page["next"]:
                return
            params["after"] = page["next"]


async def rebuild(
    settings: Settings,
    service: str,
    apply: Callable[[asyncpg.Connection, ActorV1, Settings], Awaitable[bool]],
    *,
    since: datetime | None = None,
) -> RebuildReport:
    """Apply every actor of the snapshot with the service's `apply` (newer versions only), a transaction per page."""
    report = RebuildReport()
    pool = await create_pool(settings.database_url_for(service), min_size=1, max_size=2)
    try:
        async for actors, watermark in snapshot_pages(settings, service, since=since):
            async with pool.acquire() as conn, conn.transaction():
                for actor in actors:
                    report.applied += bool(await apply(conn, actor, settings))
            report.read += len(actors)
            report.watermark = report.watermark or watermark
    finally:
        await pool.close()
    return report
