"""The transactional outbox against real PostgreSQL and a real broker: what committed, once, in order."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from services.common.outbox import OutboxRelay, enqueue, purge, replay
from services.common.settings import Settings
from tests.integration.kafka_tools import eventually, header, new_topic, read_topic


@pytest.fixture(scope="module")
async def relay(settings: Settings, test_database_url: str) -> AsyncIterator[OutboxRelay]:
    relay = OutboxRelay("directory", test_database_url, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))

    async def active() -> bool:
        return relay.active

    assert await eventually(active, 10)
    yield relay
    stop.set()
    await asyncio.wait_for(task, 15)


async def _emit(pool: asyncpg.Pool, topic: str, key: str, **data: object) -> str:
    async with pool.acquire() as conn, conn.transaction():
        event = await enqueue(
            conn, service="directory", topic=topic, key=key, ce_type="org.maillage.test.effect", data=dict(data)
        )
    return event.id


class TestWhatCommittedIsPublished:
    async def test_rolled_back_transaction_publishes_nothing(self, settings, pool, relay):
        topic = await new_topic(settings)

        class Abort(Exception):
            pass

        with pytest.raises(Abort):
            async with pool.acquire() as conn, conn.transaction():
                await enqueue(
                    conn,
                    service="directory",
                    topic=topic,
                    key="k",
                    ce_type="org.maillage.test.effect",
                    data={"n": "rolled back"},
                )
                raise Abort
        kept = await _emit(pool, topic, "k", n="committed")

        records = await read_topic(settings, topic, expect=1, idle_s=1.5)
        assert [header(r, "ce_id") for r in records] == [kept]
        assert json.loads(records[0].value) == {"n": "committed"}

    async def test_enqueue_outside_a_transaction_is_refused(self, pool):
        async with pool.acquire() as conn:
            with pytest.raises(RuntimeError, match="inside the transaction"):
                await enqueue(
                    conn, service="directory", topic="t", key="k", ce_type="org.maillage.test.effect", data={}
                )

    async def test_records_carry_the_cloudevents_binary_headers(self, settings, pool, relay):
        topic = await new_topic(settings)
        ce_id = await _emit(pool, topic, "actor-42", x=1)
        [record] = await read_topic(settings, topic, expect=1)
        assert record.key == b"actor-42"
        assert header(record, "ce_id") == ce_id
        assert header(record, "ce_specversion") == "1.0"
        assert header(record, "ce_source") == "/maillage/directory"
        assert header(record, "ce_type") == "org.maillage.test.effect"
        assert header(record, "content-type") == "application/json"
        assert datetime.fromisoformat(header(record, "ce_time") or "").tzinfo is not None

    async def test_ten_thousand_events_from_concurrent_writers_arrive_once_in_order_per_key(
        self, settings, pool, relay
    ):
        topic = await new_topic(settings, partitions=6)
        keys = [f"key-{i}" for i in range(40)]
        async with pool.acquire() as conn:
            await conn.executemany(
                "INSERT INTO test_counters (key, n) VALUES ($1, 0) ON CONFLICT (key) DO UPDATE SET n = 0",
                [(f"{topic}/{k}",) for k in keys],
            )
        writers, per_writer = 8, 1250

        async def writer(seed: int) -> None:
            rng = random.Random(seed)
            for _ in range(per_writer):
                key = rng.choice(keys)
                async with pool.acquire() as conn, conn.transaction():
                    # The state change: the per-key counter; the event carries its new value.
                    seq = await conn.fetchval(
                        "UPDATE test_counters SET n = n + 1 WHERE key = $1 RETURNING n", f"{topic}/{key}"
                    )
                    await enqueue(
                        conn,
                        service="directory",
                        topic=topic,
                        key=key,
                        ce_type="org.maillage.test.effect",
                        data={"key": key, "seq": seq},
                    )

        await asyncio.gather(*(writer(i) for i in range(writers)))
        total = writers * per_writer
        records = await read_topic(settings, topic, expect=total, timeout_s=60, idle_s=1.0)

        ids = [header(r, "ce_id") for r in records]
        assert len(ids) == total, "every committed event arrives"
        assert len(set(ids)) == total, "each exactly once"
        by_key: dict[str, list[int]] = defaultdict(list)
        partition_of: dict[str, set[int]] = defaultdict(set)
        for r in sorted(records, key=lambda r: (r.partition, r.offset)):
            data = json.loads(r.value)
            by_key[data["key"]].append(data["seq"])
            partition_of[data["key"]].add(r.partition)
        for key, seqs in by_key.items():
            assert seqs == list(range(1, len(seqs) + 1)), f"{key} out of order"
            assert len(partition_of[key]) == 1, "one key, one partition"

    async def test_rows_are_marked_sent_only_after_publication(self, settings, pool, relay):
        topic = await new_topic(settings)
        ce_id = await _emit(pool, topic, "k")
        await read_topic(settings, topic, expect=1)

        async def sent() -> bool:
            return bool(
                await pool.fetchval("SELECT sent_at IS NOT NULL FROM outbox WHERE ce_id = $1", uuid.UUID(ce_id))
            )

        assert await eventually(sent, 5)


class TestOneRelayPerService:
    async def test_a_second_relay_stands_by_while_the_first_holds_the_lock(self, settings, test_database_url, relay):
        standby = OutboxRelay("directory", test_database_url, settings)
        stop = asyncio.Event()
        task = asyncio.create_task(standby.run(stop))
        await asyncio.sleep(1.5)
        assert relay.active
        assert not standby.active
        stop.set()
        await asyncio.wait_for(task, 10)


class TestReplayAndRetention:
    async def test_replay_publishes_sent_rows_again_in_order(self, settings, pool, relay):
        topic = await new_topic(settings, partitions=1)
        first = [await _emit(pool, topic, "k", i=i) for i in range(5)]
        await read_topic(settings, topic, expect=5)
        async with pool.acquire() as conn:
            assert await eventually(lambda: _all_sent(pool, topic), 5)
            count = await replay(conn, since=datetime.now(UTC) - timedelta(minutes=5), topic=topic)
        assert count == 5
        records = await read_topic(settings, topic, expect=10)
        assert [header(r, "ce_id") for r in records] == first + first

    async def test_purge_keeps_recent_rows(self, settings, pool, relay):
        topic = await new_topic(settings)
        await _emit(pool, topic, "k")
        await read_topic(settings, topic, expect=1)
        async with pool.acquire() as conn:
            before = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic)
            await purge(conn, settings)
            after = await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic)
            assert before == after == 1
            expired = settings.model_copy(update={"outbox_retention_hours": 0})
            await asyncio.sleep(0.01)
            await purge(conn, expired)
            assert await conn.fetchval("SELECT count(*) FROM outbox WHERE topic = $1", topic) == 0


async def _all_sent(pool: asyncpg.Pool, topic: str) -> bool:
    return not await pool.fetchval("SELECT count(*) FROM outbox WHERE topic = $1 AND sent_at IS NULL", topic)
