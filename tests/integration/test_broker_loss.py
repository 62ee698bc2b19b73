"""A broker that lost its data (a new cluster in its place) gets the retained outbox again from the relay, unasked."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.common.db import connect, ensure_database, migrate
from services.common.kafka import cluster_id, connection_options, ensure_topics
from services.common.outbox import OutboxRelay, enqueue
from services.common.settings import Settings, with_database
from tests.integration.conftest import PrivateBroker
from tests.integration.kafka_tools import eventually, header, read_topic

EFFECT = "org.maillage.test.broker_loss"


@pytest.fixture
async def outbox_db(postgres_url: str) -> AsyncIterator[asyncpg.Connection]:
    """A service database of the test's own: its outbox, its recorded cluster."""
    url = with_database(postgres_url, f"maillage_loss_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    await migrate(url, ["services.common"])
    conn = await connect(url)  # with the JSON codecs
    try:
        yield conn
    finally:
        await conn.close()


async def emit(conn: asyncpg.Connection, topic: str, n: int) -> str:
    async with conn.transaction():
        event = await enqueue(conn, service="loss", topic=topic, key="k", ce_type=EFFECT, data={"n": n})
    return event.id


async def all_sent(conn: asyncpg.Connection) -> bool:
    return not await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")


async def broker_cluster(settings: Settings) -> str:
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        return await cluster_id(admin)
    finally:
        await admin.close()


class Relay:
    def __init__(self, url: str, settings: Settings) -> None:
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(OutboxRelay("loss", url, settings).run(self.stop))

    async def close(self) -> None:
        self.stop.set()
        await asyncio.wait_for(self.task, 30)


async def test_a_running_relay_publishes_its_outbox_again_to_the_new_broker_in_order(
    settings: Settings, postgres_url: str, outbox_db: asyncpg.Connection, private_broker: PrivateBroker
) -> None:
    """Rows acknowledged by the old broker, then one written while it was down, reach the new one in id order."""
    own = private_broker.settings(settings, outbox_poll_interval_s=0.2)
    topic = f"test.loss.{uuid.uuid4().hex[:8]}"  # outside the plan: the relay recreates it on the new broker
    await ensure_topics(own, [(topic, 1)])
    url = with_database(postgres_url, await outbox_db.fetchval("SELECT current_database()"))
    relay = Relay(url, own)
    try:
        before = [await emit(outbox_db, topic, n) for n in range(5)]
        assert await eventually(lambda: all_sent(outbox_db), 30)
        first_cluster = await outbox_db.fetchval("SELECT cluster_id FROM outbox_broker")
        assert first_cluster == await broker_cluster(own)

        private_broker.stop()
        during = await emit(outbox_db, topic, 5)
        private_broker.start(fresh=True)  # the same address, none of the data: another cluster
        assert await broker_cluster(own) != first_cluster

        records = await read_topic(own, topic, expect=6, timeout_s=90, idle_s=1.5)
        assert [header(r, "ce_id") for r in records] == [*before, during]  # no replay command, nothing twice
        assert [r.offset for r in records] == list(range(6))
        assert await eventually(lambda: all_sent(outbox_db), 10)
        assert await outbox_db.fetchval("SELECT cluster_id FROM outbox_broker") == await broker_cluster(own)
    finally:
        await relay.close()


async def test_a_relay_started_after_the_broker_was_replaced_sees_it_from_the_recorded_cluster(
    settings: Settings, postgres_url: str, outbox_db: asyncpg.Connection, private_broker: PrivateBroker
) -> None:
    """No relay saw the loss happen (the worker was down too): the cluster id recorded in the database tells."""
    own = private_broker.settings(settings, outbox_poll_interval_s=0.2)
    topic = f"test.loss.{uuid.uuid4().hex[:8]}"
    await ensure_topics(own, [(topic, 1)])
    url = with_database(postgres_url, await outbox_db.fetchval("SELECT current_database()"))
    relay = Relay(url, own)
    try:
        before = [await emit(outbox_db, topic, n) for n in range(4)]
        assert await eventually(lambda: all_sent(outbox_db), 30)
    finally:
        await relay.close()
    private_broker.stop()
    private_broker.start(fresh=True)
    later = await emit(outbox_db, topic, 4)  # written before the new relay starts: it must come after the others
    relay = Relay(url, own)
    try:
        records = await read_topic(own, topic, expect=5, timeout_s=90, idle_s=1.5)
        assert [header(r, "ce_id") for r in records] == [*before, later]
        assert await eventually(lambda: all_sent(outbox_db), 10)
    finally:
        await relay.close()


async def test_a_relay_on_the_same_cluster_publishes_nothing_again(
    settings: Settings, postgres_url: str, outbox_db: asyncpg.Connection, private_broker: PrivateBroker
) -> None:
    """A relay restarted against the cluster it recorded sends only what is new (the first cluster ever: likewise)."""
    own = private_broker.settings(settings, outbox_poll_interval_s=0.2)
    topic = f"test.loss.{uuid.uuid4().hex[:8]}"
    await ensure_topics(own, [(topic, 1)])
    url = with_database(postgres_url, await outbox_db.fetchval("SELECT current_database()"))
    before = [await emit(outbox_db, topic, n) for n in range(3)]  # written before any cluster was recorded
    for _ in range(2):
        relay = Relay(url, own)
        try:
            assert await eventually(lambda: all_sent(outbox_db), 30)
            await asyncio.sleep(1.5)  # past a cluster check
        finally:
            await relay.close()
    later = await emit(outbox_db, topic, 3)
    relay = Relay(url, own)
    try:
        records = await read_topic(own, topic, expect=4, timeout_s=30, idle_s=1.5)
        assert [header(r, "ce_id") for r in records] == [*before, later]
    finally:
        await relay.close()


async def recreate(settings: Settings, topic: str, partitions: int) -> None:
    """Delete a topic and create it again, empty, on the same cluster (as a volume formatted under the same id)."""
    admin = AIOKafkaAdminClient(**connection_options(settings))
    await admin.start()
    try:
        await admin.delete_topics([topic])

        async def gone() -> bool:
            return topic not in await admin.list_topics()

        assert await eventually(gone, 30)
    finally:
        await admin.close()
    for _ in range(50):  # Apache Kafka finishes a deletion in the background
        try:
            await ensure_topics(settings, [(topic, partitions)])
            return
        except KafkaError:
            await asyncio.sleep(0.2)
    raise AssertionError(f"{topic} could not be created again")


async def test_a_relay_started_after_a_log_was_lost_on_the_same_cluster_publishes_it_again(
    settings: Settings, postgres_url: str, outbox_db: asyncpg.Connection, private_broker: PrivateBroker
) -> None:
    """The cluster id cannot tell (the same cluster); the offsets recorded in the database do, on the first ack."""
    own = private_broker.settings(settings, outbox_poll_interval_s=0.2)
    topic = f"test.loss.{uuid.uuid4().hex[:8]}"
    await ensure_topics(own, [(topic, 1)])
    url = with_database(postgres_url, await outbox_db.fetchval("SELECT current_database()"))
    relay = Relay(url, own)
    try:
        before = [await emit(outbox_db, topic, n) for n in range(4)]
        assert await eventually(lambda: all_sent(outbox_db), 30)
    finally:
        await relay.close()
    assert await outbox_db.fetchval("SELECT last_offset FROM outbox_partitions WHERE topic = $1", topic) == 3
    await recreate(own, topic, 1)
    later = await emit(outbox_db, topic, 4)
    relay = Relay(url, own)
    try:
        records = await read_topic(own, topic, expect=6, timeout_s=60, idle_s=1.5)
        ids = [header(r, "ce_id") for r in records]
        # The new row's acknowledgement (offset 0) gives the loss away: it went first, then everything in order.
        assert ids == [later, *before, later]
        assert await eventually(lambda: all_sent(outbox_db), 10)
    finally:
        await relay.close()
