"""The events service's workers: the organizers' actor replica (from the actor topic) and the e-mail sender."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

import asyncpg

from services.common.consumer import IdempotentConsumer
from services.common.envelope import CloudEvent
from services.common.settings import Settings
from services.contracts import topics
from services.contracts.events import ActorArchived, ActorRegistered, ActorUpdated, ActorV1, EventPayload
from services.events import emails, service


async def apply_actor(conn: asyncpg.Connection, actor: ActorV1, settings: Settings) -> bool:
    """Keep a newer actor state in the replica (an archived organizer flags its events); False when not newer."""
    return await service.record_actor(conn, actor)


def replica_handlers(
    settings: Settings,
) -> dict[str, Callable[[asyncpg.Connection, CloudEvent, EventPayload | None], Awaitable[None]]]:
    async def on_actor(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload | None) -> None:
        assert isinstance(payload, ActorRegistered | ActorUpdated | ActorArchived)
        await apply_actor(conn, payload.actor, settings)

    return {ActorRegistered.ce_type: on_actor, ActorUpdated.ce_type: on_actor, ActorArchived.ce_type: on_actor}


def build_consumers(pool: asyncpg.Pool, settings: Settings) -> list[IdempotentConsumer]:
    return [IdempotentConsumer("events-replica", [topics.ACTOR], replica_handlers(settings), pool, settings)]


def build_tasks(pool: asyncpg.Pool, settings: Settings) -> list[Callable[[asyncio.Event], Coroutine[Any, Any, None]]]:
    """Background loops of the worker role besides consumers and relay."""

    async def send(stop: asyncio.Event) -> None:
        await emails.run_sender(pool, settings, stop)

    return [send]
