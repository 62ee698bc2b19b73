"""The idempotent consumer against real PostgreSQL and a real broker: once, in order, poison to the DLQ."""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest
from aiokafka import AIOKafkaProducer

from services.common.consumer import IdempotentConsumer
from services.common.db import create_pool, ensure_database, migrate
from services.common.dlq import list_dead_letters, replay_dead_letters
from services.common.embedded import EmbeddedBroker, free_port
from services.common.envelope import CloudEvent
from services.common.outbox import OutboxRelay, enqueue, replay
from services.common.settings import Settings, with_database
from services.contracts.events import EventPayload, event_type
from tests.integration.kafka_tools import eventually, header, new_topic, read_topic

EFFECT = "org.maillage.test.effect"
POISON = "org.maillage.test.poison"
TYPED = "org.maillage.test.typed"


@event_type(TYPED, "test.typed")
class TypedPayload(EventPayload):
    key: str
    seq: int


async def record_effect(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload | None) -> None:
    await conn.execute(
        "INSERT INTO test_effects (ce_id, key, seq) VALUES ($1, $2, $3)",
        event.id,
        str(event.data.get("key", "")),
        int(event.data.get("seq", 0)),
    )


async def always_fail(conn: asyncpg.Connection, event: CloudEvent, payload: EventPayload | None) -> None:
    raise ValueError("this message can never be applied")


HANDLERS = {EFFECT: record_effect, POISON: always_fail, TYPED: record_effect}


@dataclass
class Running:
    topic: str
    consumer: IdempotentConsumer
    producer: AIOKafkaProducer


@pytest.fixture(scope="module")
async def running(settings: Settings, pool: asyncpg.Pool) -> AsyncIterator[Running]:
    """One long-lived consumer for the module (each group join costs session_timeout / 2)."""
    topic = await new_topic(settings, partitions=3)
    consumer = IdempotentConsumer(f"test-consumer-{topic}", [topic], HANDLERS, pool, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(consumer.run(stop))
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka_bootstrap)
    await producer.start()
    await asyncio.wait_for(consumer.ready.wait(), 30)
    yield Running(topic, consumer, producer)
    await producer.stop()
    stop.set()
    await asyncio.wait_for(task, 30)


async def _send(r: Running, event: CloudEvent, key: str = "k") -> None:
    await r.producer.send_and_wait(r.topic, value=event.kafka_value(), key=key.encode(), headers=event.kafka_headers())


def _event(ce_type: str = EFFECT, **data: object) -> CloudEvent:
    return CloudEvent(type=ce_type, source="/maillage/test", data=dict(data))


async def _effects(pool: asyncpg.Pool, ce_id: str) -> int:
    return int(await pool.fetchval("SELECT count(*) FROM test_effects WHERE ce_id = $1", ce_id))


async def _applied(pool: asyncpg.Pool, ce_id: str) -> bool:
    return await _effects(pool, ce_id) > 0


class TestIdempotence:
    async def test_a_redelivered_event_changes_nothing(self, running, pool):
        event = _event(key="a", seq=1)
        await _send(running, event)
        await _send(running, event)  # the broker or a producer retry delivers it again
        marker = _event(key="a", seq=2)
        await _send(running, marker)
        assert await eventually(lambda: _applied(pool, marker.id))
        assert await _effects(pool, event.id) == 1

    async def test_unknown_event_types_and_fields_are_ignored(self, running, pool):
        await _send(running, _event("org.maillage.future.thing", key="x"))
        known = _event(key="b", seq=1, field_from_the_future=True)
        await _send(running, known)
        assert await eventually(lambda: _applied(pool, known.id))

    async def test_contract_payloads_are_validated(self, running, pool, settings):
        good = _event(TYPED, key="t", seq=7)
        bad = _event(TYPED, key="t", seq="not a number")
        await _send(running, bad)
        await _send(running, good)
        assert await eventually(lambda: _applied(pool, good.id))
        assert await _effects(pool, bad.id) == 0
        letters = await read_topic(settings, running.topic + ".dlq", expect=1, timeout_s=10)
        assert any(header(r, "ce_id") == bad.id and "seq" in (header(r, "dlq_error") or "") for r in letters)


class TestDeadLetters:
    async def test_a_malformed_message_goes_to_the_dlq_and_the_next_one_is_processed(self, running, pool, settings):
        await running.producer.send_and_wait(
            running.topic, value=b"{not json", key=b"k", headers=[("ce_id", b"broken-1")]
        )
        after = _event(key="c", seq=1)
        await _send(running, after)
        assert await eventually(lambda: _applied(pool, after.id))
        letters = await read_topic(settings, running.topic + ".dlq", expect=1, timeout_s=10, idle_s=1)
        broken = [r for r in letters if r.value == b"{not json"]
        assert len(broken) == 1
        assert "missing CloudEvents header" in (header(broken[0], "dlq_error") or "")
        assert header(broken[0], "dlq_original_topic") == running.topic

    async def test_a_handler_that_keeps_failing_is_retried_then_dead_lettered(self, running, pool, settings):
        poison = _event(POISON, key="p")
        await _send(running, poison)
        after = _event(key="d", seq=1)
        await _send(running, after)
        assert await eventually(lambda: _applied(pool, after.id))
        letters = await read_topic(settings, running.topic + ".dlq", expect=1, timeout_s=10, idle_s=1)
        mine = [r for r in letters if header(r, "ce_id") == poison.id]
        assert len(mine) == 1
        assert "never be applied" in (header(mine[0], "dlq_error") or "")
        # Its failed attempts left no effect and no processed mark behind.
        assert not await pool.fetchval("SELECT count(*) FROM processed_events WHERE ce_id = $1", poison.id)

    async def test_dlq_list_shows_the_error(self, running, settings):
        letters = await list_dead_letters(settings, topic=running.topic)
        assert letters
        assert all(letter["error"] and letter["original_topic"] == running.topic for letter in letters)

    async def test_dlq_replay_sends_each_letter_back_once(self, running, settings):
        letters = await list_dead_letters(settings, topic=running.topic)
        poisoned = [letter["ce_id"] for letter in letters if letter["ce_type"] == POISON]
        assert poisoned
        sent = await replay_dead_letters(settings, topic=running.topic)
        assert sent == len(letters)
        records = await read_topic(settings, running.topic, expect=0, timeout_s=6, idle_s=2)
        assert sum(header(r, "ce_id") == poisoned[0] for r in records) == 2
        assert not any(header(r, "dlq_error") for r in records), "DLQ headers are stripped"


class TestReplayDownstream:
    async def test_replaying_the_outbox_changes_nothing_downstream(self, running, pool, settings, test_database_url):
        relay = OutboxRelay("directory", test_database_url, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(relay.run(stop))
        try:
            ids = []
            for seq in range(3):
                async with pool.acquire() as conn, conn.transaction():
                    event = await enqueue(
                        conn,
                        service="directory",
                        topic=running.topic,
                        key="r",
                        ce_type=EFFECT,
                        data={"key": "r", "seq": seq},
                    )
                    ids.append(event.id)
            for ce_id in ids:
                assert await eventually(functools.partial(_applied, pool, ce_id))

            async def all_sent() -> bool:
                # The relay marks rows sent after the broker's acknowledgement, which a fast consumer may beat.
                query = "SELECT count(*) FROM outbox WHERE ce_id = ANY($1::uuid[]) AND sent_at IS NOT NULL"
                return bool(await pool.fetchval(query, ids) == len(ids))

            assert await eventually(all_sent)
            async with pool.acquire() as conn:
                since = datetime.now(UTC) - timedelta(minutes=1)
                assert await replay(conn, since=since, topic=running.topic) >= 3
            records = await read_topic(settings, running.topic, expect=0, timeout_s=8, idle_s=3)
            assert sum(header(r, "ce_id") == ids[0] for r in records) == 2, "published twice"
            marker = _event(key="r", seq=99)
            await _send(running, marker)
            assert await eventually(lambda: _applied(pool, marker.id))
            assert [await _effects(pool, ce_id) for ce_id in ids] == [1, 1, 1]
        finally:
            stop.set()
            await asyncio.wait_for(task, 10)


class TestBrokerOutage:
    async def test_events_written_while_the_broker_is_down_all_arrive_and_apply_once(
        self, settings: Settings, postgres_url: str
    ):
        """Stop the broker, keep writing, start it again (topics and offsets lost, as Tansu does)."""
        url = with_database(postgres_url, f"maillage_outage_{uuid.uuid4().hex[:8]}")
        await ensure_database(url)
        await migrate(url, ["services.common"])
        pool = await create_pool(url)
        await pool.execute(
            "CREATE TABLE test_effects (ce_id text, key text, seq int, applied_at timestamptz DEFAULT now())"
        )
        broker = EmbeddedBroker(free_port())
        broker.start()
        # A Tansu whatever the run's broker, and Tansu refuses the idempotent producer.
        own = settings.model_copy(update={"kafka_bootstrap": broker.bootstrap, "kafka_idempotent_producer": False})
        topic = await new_topic(own, partitions=3)
        relay = OutboxRelay("outage", url, own)
        consumer = IdempotentConsumer("test-outage", [topic], HANDLERS, pool, own)
        stop = asyncio.Event()
        tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(consumer.run(stop))]

        async def write(n: int, offset: int) -> None:
            for i in range(n):
                async with pool.acquire() as conn, conn.transaction():
                    await enqueue(
                        conn,
                        service="outage",
                        topic=topic,
                        key=f"k{i % 7}",
                        ce_type=EFFECT,
                        data={"key": f"k{i % 7}", "seq": offset + i},
                    )

        async def applied(n: int) -> bool:
            return int(await pool.fetchval("SELECT count(DISTINCT ce_id) FROM test_effects")) >= n

        try:
            await asyncio.wait_for(consumer.ready.wait(), 30)
            await write(50, 0)
            assert await eventually(lambda: applied(50), 30)

            broker.stop()
            await write(50, 50)
            waiting = await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            assert waiting == 50, "rows wait while the broker is down"

            broker.start()
            assert await eventually(lambda: applied(100), 90), "every event arrives after the restart"
            await asyncio.sleep(1.0)
            rows = await pool.fetch("SELECT ce_id, count(*) AS n FROM test_effects GROUP BY ce_id")
            assert len(rows) == 100
            assert all(row["n"] == 1 for row in rows), "each effect happened once"
            assert not await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
        finally:
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 30)
            await pool.close()
            broker.stop()
