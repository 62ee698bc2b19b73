"""A broker outage, end to end of one hop: the consumer reconnects and resumes; a relay refills a broker that lost its data."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
from aiokafka import AIOKafkaProducer

from services.common.consumer import COMMIT_TIMEOUT_S, IdempotentConsumer
from services.common.db import connect, ensure_database, migrate
from services.common.embedded import EmbeddedBroker
from services.common.envelope import CloudEvent
from services.common.kafka import ensure_topics
from services.common.outbox import OutboxRelay, enqueue
from services.common.settings import Settings, with_database
from tests.integration.kafka_tools import eventually, header, read_topic

EFFECT = "org.maillage.test.outage"


async def test_a_consumer_survives_a_broker_down_longer_than_its_commit_timeout(
    settings: Settings, pool: asyncpg.Pool, own_broker: EmbeddedBroker
) -> None:
    own = settings.model_copy(update={"kafka_bootstrap": own_broker.bootstrap, "kafka_idempotent_producer": False})
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
        producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap)
        await producer.start()
        try:
            first = await send(producer)
            assert await eventually(lambda: asyncio.sleep(0, result=first in seen), 20)
        finally:
            await producer.stop()

        own_broker.stop()
        # Past the commit and committed-offset timeouts: the consumer notices, drops its client and
        # retries; closing a client whose fetches are failing used to end the consumer's task.
        await asyncio.sleep(COMMIT_TIMEOUT_S + 3)
        assert not task.done(), "the consumer ended during the outage"
        own_broker.start()  # the same port, empty (memory storage): topics come back with the next writer
        await ensure_topics(own, [(topic, 3), (topic + ".dlq", 1)])
        producer = AIOKafkaProducer(bootstrap_servers=own_broker.bootstrap)
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


async def test_a_relay_that_sees_the_broker_lost_its_log_publishes_the_lost_rows_again(
    settings: Settings, postgres_url: str, own_broker: EmbeddedBroker
) -> None:
    """Rows acknowledged before a restart of the embedded broker are gone from it; the relay notices and re-sends."""
    database_url = with_database(postgres_url, f"maillage_refill_{uuid.uuid4().hex[:8]}")
    await ensure_database(database_url)
    await migrate(database_url, ["services.common"])
    own = settings.model_copy(
        update={
            "kafka_bootstrap": own_broker.bootstrap,
            "kafka_idempotent_producer": False,
            "outbox_poll_interval_s": 0.2,
        }
    )
    topic = f"test.refill.{uuid.uuid4().hex[:8]}"
    await ensure_topics(own, [(topic, 1)])
    conn = await connect(database_url)  # with the JSON codecs
    relay = OutboxRelay("refill", database_url, own)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    async def emit(n: int) -> str:
        async with conn.transaction():
            event = await enqueue(conn, service="refill", topic=topic, key="k", ce_type=EFFECT, data={"n": n})
        return event.id

    async def all_sent() -> bool:
        return not await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")

    try:
        before = [await emit(n) for n in range(5)]
        assert await eventually(all_sent, 20)
        own_broker.stop()
        own_broker.start()  # empty: the five acknowledged rows are lost to any consumer that had not read them
        await ensure_topics(own, [(topic, 1)])
        after = await emit(5)
        records = await read_topic(own, topic, expect=6, timeout_s=30)
        assert {header(r, "ce_id") for r in records} == {*before, after}
        assert await eventually(all_sent, 10)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await conn.close()
