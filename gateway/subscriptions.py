"""`matchFound` and `matchUpdated` fed by Kafka: each gateway replica reads the whole match topic and hands each
match event to the subscribers that may see it."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

from aiokafka.errors import KafkaError

from services.common.auth import Principal, Role
from services.common.envelope import MalformedMessage, from_kafka
from services.common.kafka import new_consumer, stop_consumer
from services.common.settings import Settings
from services.contracts.events import (
    MatchFound,
    MatchResponded,
    MatchSelected,
    MatchV1,
    MatchViewed,
    MatchWithdrawn,
)
from services.contracts.topics import MATCH

logger = logging.getLogger("maillage.gateway.subscriptions")

QUEUE_SIZE = 1000

# What each subscription follows. A match's first sight is `match.found`; its later states are its actor's first
# view of it, its answer, its selection, and its withdrawal when the need closes. All are keyed by need, so they
# arrive in the order they happened.
FOUND = frozenset({MatchFound.ce_type})
UPDATED = frozenset({MatchViewed.ce_type, MatchResponded.ce_type, MatchSelected.ce_type, MatchWithdrawn.ce_type})
MatchEvent = MatchFound | MatchViewed | MatchResponded | MatchSelected | MatchWithdrawn
PAYLOADS: dict[str, type[MatchEvent]] = {
    payload.ce_type: payload for payload in (MatchFound, MatchViewed, MatchResponded, MatchSelected, MatchWithdrawn)
}


@dataclass(eq=False)
class Subscriber:
    """One subscription: what it may see, which event types it follows, and the matches waiting for it."""

    principal: Principal
    need_id: str | None
    types: frozenset[str] = FOUND
    queue: asyncio.Queue[MatchV1] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    seen: set[str] = field(default_factory=set)

    def wants(self, event_type: str, event_id: str, match: MatchV1) -> bool:
        if event_type not in self.types:
            return False
        if self.need_id is not None and match.need_id != self.need_id:
            return False
        if self._key(event_type, event_id, match) in self.seen:
            return False  # a record read twice (a rebalance, a reconnection) is delivered once
        role = self.principal.role
        if role is Role.COLLECTIVITY:
            return match.owner_id == self.principal.actor_id
        if role is Role.ACTOR:
            return match.actor_id == self.principal.actor_id
        return role in (Role.ADMIN, Role.PARTNER)

    @staticmethod
    def _key(event_type: str, event_id: str, match: MatchV1) -> str:
        # A match is found once; it changes many times, each change its own event.
        return match.id if event_type == MatchFound.ce_type else event_id

    def offer(self, event_type: str, event_id: str, match: MatchV1) -> None:
        self.seen.add(self._key(event_type, event_id, match))
        try:
            self.queue.put_nowait(match)
        except asyncio.QueueFull:
            logger.warning("subscriber of %s too slow: match %s dropped", self.principal.subject, match.id)


class MatchFeed:
    """Reads the match topic from its end without a consumer group, so that every replica sees every match."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.subscribers: set[Subscriber] = set()
        self.ready = asyncio.Event()

    @contextlib.asynccontextmanager
    async def subscribe(
        self, principal: Principal, need_id: str | None, types: frozenset[str] = FOUND
    ) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(principal, need_id, types)
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    def dispatch(self, match: MatchV1, event_type: str = MatchFound.ce_type, event_id: str = "") -> None:
        for subscriber in list(self.subscribers):
            if subscriber.wants(event_type, event_id, match):
                subscriber.offer(event_type, event_id, match)

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop`; a lost broker is retried (the topic may have been recreated)."""
        while not stop.is_set():
            consumer = new_consumer(self.settings, MATCH, group_id=None, auto_offset_reset="latest")
            try:
                await consumer.start()
                self.ready.set()
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    for records in batches.values():
                        for record in records:
                            self._handle(record.headers, record.value)
            except KafkaError as exc:
                logger.warning("match feed lost the broker (%s); reconnecting", exc)
                await asyncio.sleep(1.0)
            finally:
                with contextlib.suppress(Exception):
                    await stop_consumer(consumer)  # not consumer.stop(): its stray CancelledError would end the feed

    def _handle(self, headers: object, value: bytes | None) -> None:
        try:
            event = from_kafka(headers, value)  # type: ignore[arg-type]
        except MalformedMessage:
            return  # the services' consumers dead-letter it; the feed only reads
        payload_type = PAYLOADS.get(event.type)
        if payload_type is None:
            return
        try:
            payload = payload_type.model_validate(event.data)
        except ValueError:
            return
        self.dispatch(payload.match, event.type, event.id)
