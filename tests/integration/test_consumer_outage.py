"""A consumer outlives an outage longer than its commit timeout: it reconnects and resumes, its task never ends."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.common.consumer import COMMIT_TIMEOUT_S, IdempotentConsumer
from services.common.embedded import EmbeddedBroker, free_port
from services.common.envelope import CloudEvent
from services.common.kafka import ensure_topics
from services.common.settings import Settings
from tests.integration.kafka_tools import eventually

EFFECT = "org.maillage.test.outage"


@pytest.fixture
async def broker() -> AsyncIterator[EmbeddedBroker]:
    """A broker of its own: this test stops it."""
    own = EmbeddedBroker(free_port())
    own.start()
    try:
        yield own
    finally:
        own.stop()


async def test_a_consumer_survives_a_broker_down_longer_than_its_commit_timeout(
    settings: Settings, pool: asyncpg.Pool, broker: EmbeddedBroker
) -> None:
    own = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap})
    topic = f"test.outage.{uuid.uuid4().hex[:8]}"
    await ensure_topics(own, [(topic, 3), (topic + ".dlq", 1)])
    seen: list[str] = []

    async def record(conn: asyncpg.Connection, event: CloudEvent, payload: object) -> None:
        seen.append(event.id)

    consumer = IdempotentConsumer(f"test-outage-{topic}", [topic], {EFFECT: record}, pool, own)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))

    async def send(producer: AIOKafkaProducer) -> str:
        event = CloudEvent(type=EFFECT, source="/maillage/test", data={})
        await producer.send_and_wait(topic, value=event.kafka_value(), key=b"k", headers=event.kafka_headers())
        return event.id

    try:
        await asyncio.wait_for(consumer.ready.wait(), 30)
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            first = await send(producer)
            assert await eventually(lambda: asyncio.sleep(0, result=first in seen), 20)
        finally:
            await producer.stop()

        broker.stop()
        # Past the commit and committed-offset timeouts: the consumer notices, drops its client and
        # retries; closing a client whose fetches are failing used to end the consumer's task.
        await asyncio.sleep(COMMIT_TIMEOUT_S + 3)
        assert not task.done(), "the consumer ended during the outage"
        broker.start()  # the same port, empty (memory storage): topics come back with the next writer
        await ensure_topics(own, [(topic, 3), (topic + ".dlq", 1)])
        producer = AIOKafkaProducer(bootstrap_servers=broker.bootstrap)
        await producer.start()
        try:
            after = await send(producer)
            assert await eventually(lambda: asyncio.sleep(0, result=after in seen), 45), "no resumption"
        finally:
            await producer.stop()
        assert not task.done()
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
