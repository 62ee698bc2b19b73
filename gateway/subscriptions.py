"""`matchFound` fed by Kafka: each gateway replica reads the whole match topic and hands matches to its subscribers."""

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
from services.contracts.events import MatchFound, MatchV1
from services.contracts.topics import MATCH

logger = logging.getLogger("maillage.gateway.subscriptions")

QUEUE_SIZE = 1000


@dataclass(eq=False)
class Subscriber:
    """One `matchFound` subscription: what it may see and the matches waiting for it."""

    principal: Principal
    need_id: str | None
    queue: asyncio.Queue[MatchV1] = field(default_factory=lambda: asyncio.Queue(QUEUE_SIZE))
    seen: set[str] = field(default_factory=set)

    def wants(self, match: MatchV1) -> bool:
        if self.need_id is not None and match.need_id != self.need_id:
            return False
        if match.id in self.seen:
            return False  # a record read twice (a rebalance, a reconnection) is delivered once
        role = self.principal.role
        if role is Role.COLLECTIVITY:
            return match.owner_id == self.principal.actor_id
        if role is Role.ACTOR:
            return match.actor_id == self.principal.actor_id
        return role in (Role.ADMIN, Role.PARTNER)

    def offer(self, match: MatchV1) -> None:
        self.seen.add(match.id)
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
    async def subscribe(self, principal: Principal, need_id: str | None) -> AsyncIterator[Subscriber]:
        subscriber = Subscriber(principal, need_id)
        self.subscribers.add(subscriber)
        try:
            yield subscriber
        finally:
            self.subscribers.discard(subscriber)

    def dispatch(self, match: MatchV1) -> None:
        for subscriber in list(self.subscribers):
            if subscriber.wants(match):
                subscriber.offer(match)

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
        if event.type != MatchFound.ce_type:
            return
        try:
            payload = MatchFound.model_validate(event.data)
        except ValueError:
            return
        self.dispatch(payload.match)
