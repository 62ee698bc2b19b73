"""Test helpers that read topics and wait for conditions against the real broker and database."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition

from services.common.kafka import ensure_topics
from services.common.settings import Settings


async def new_topic(settings: Settings, partitions: int = 3, *, dlq: bool = True) -> str:
    name = f"test.{uuid.uuid4().hex[:10]}"
    topics = [(name, partitions)] + ([(name + ".dlq", 1)] if dlq else [])
    await ensure_topics(settings, topics)
    return name


async def read_topic(
    settings: Settings, topic: str, *, expect: int, timeout_s: float = 20.0, idle_s: float = 0.0
) -> list[ConsumerRecord[bytes, bytes]]:
    """Read a topic from the start without a consumer group until `expect` records (or timeout).

    With `idle_s`, keep reading that long after reaching `expect`, to catch extra records.
    """
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap, group_id=None, enable_auto_commit=False, fetch_max_wait_ms=50
    )
    await consumer.start()
    records: list[ConsumerRecord[bytes, bytes]] = []
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] = set()
        while not partitions and time.monotonic() < deadline:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(topic) or set()
            if not partitions:
                await asyncio.sleep(0.1)
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        reached_at: float | None = None
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=100, max_records=5000)
            for part in batch.values():
                records.extend(part)
            if len(records) >= expect:
                reached_at = reached_at or time.monotonic()
                if time.monotonic() - reached_at >= idle_s:
                    break
        return records
    finally:
        await consumer.stop()


def header(record: ConsumerRecord[bytes, bytes], name: str) -> str | None:
    for key, value in record.headers or ():
        if key == name:
            return bytes(value).decode()
    return None


async def eventually(check: Callable[[], Awaitable[bool]], timeout_s: float = 20.0, interval_s: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(interval_s)
    return await check()
