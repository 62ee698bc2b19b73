"""The matching service's workers: the matching engine, the notifier (e-mails, webhooks) and their senders."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg

from services.common.consumer import IdempotentConsumer
from services.common.envelope import CloudEvent
from services.common.settings import Settings
from services.contracts import topics
from services.contracts.events import (
    REGISTRY,
    ActorArchived,
    ActorRegistered,
    ActorUpdated,
    EventPayload,
    MatchFound,
    MatchResponded,
    NeedPublished,
    NeedUpdated,
)
from services.matching import emails, service, webhooks

__all__ = ["build_consumers", "build_tasks"]

logger = logging.getLogger("maillage.matching")


def engine_handlers(
    settings: Settings, spare: asyncpg.Pool | None = None
) -> dict[str, Callable[[asyncpg.Connection, CloudEvent, EventPayload | None], Awaitable[None]]]:
    async def on_actor(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload | None) -> None:
        assert isinstance(payload, ActorRegistered | ActorUpdated | ActorArchived)
        await service.apply_actor(conn, payload.actor, settings)

    async def on_need(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload | None) -> None:
        assert isinstance(payload, NeedPublished | NeedUpdated)
        edited = isinstance(payload, NeedUpdated)  # an edit may leave out actors already matched
        await service.match_need(conn, uuid.UUID(payload.need.id), settings, spare, edited=edited)

    return {
        ActorRegistered.ce_type: on_actor,
        ActorUpdated.ce_type: on_actor,
        ActorArchived.ce_type: on_actor,
        NeedPublished.ce_type: on_need,
        NeedUpdated.ce_type: on_need,
    }


def notifier_handlers(
    settings: Settings,
) -> dict[str, Callable[[asyncpg.Connection, CloudEvent, EventPayload | None], Awaitable[None]]]:
    async def notify(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload | None) -> None:
        await webhooks.fan_out(conn, event)
        if isinstance(payload, MatchFound | MatchResponded):
            await emails.record(conn, event, payload.match, settings)

    public = [ce_type for ce_type in REGISTRY if ce_type.startswith("org.maillage.")]
    return dict.fromkeys(public, notify)


def build_consumers(pool: asyncpg.Pool, settings: Settings) -> list[IdempotentConsumer]:
    return [
        IdempotentConsumer(
            "matching-engine", [topics.ACTOR, topics.NEED], engine_handlers(settings, pool), pool, settings
        ),
        IdempotentConsumer(
            "matching-notifier",
            [topics.ACTOR, topics.NEED, topics.MATCH, topics.EVENT, topics.REGISTRATION],
            notifier_handlers(settings),
            pool,
            settings,
        ),
    ]


def build_tasks(pool: asyncpg.Pool, settings: Settings) -> list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]]:
    """Background loops of the worker role besides consumers and relay."""
    database_url = settings.database_url_for("matching")

    async def expire(stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await service.expire_due(pool)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("need expiry: %s", exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), settings.need_expiry_interval_s)

    async def deliver(stop: asyncio.Event) -> None:
        await webhooks.run_deliverer(pool, settings, stop, database_url)

    async def send(stop: asyncio.Event) -> None:
        await emails.run_sender(pool, settings, stop)

    return [expire, deliver, send]
