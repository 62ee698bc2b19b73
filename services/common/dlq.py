"""Dead-letter topics for admins: list what failed and why, and send messages back once fixed."""

from __future__ import annotations

import contextlib
import time
from typing import Any

from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from services.common.kafka import connection_options, new_consumer, new_producer, stop_consumer
from services.common.settings import Settings
from services.contracts.topics import TOPICS, dead_letter_topic

REPLAY_GROUP = "maillage-dlq-replay"


def _dlq_topics(topic: str | None) -> list[str]:
    if topic is None:
        return [spec.dlq for spec in TOPICS]
    return [topic if topic.endswith(".dlq") else dead_letter_topic(topic)]


async def _partitions(settings: Settings, names: list[str]) -> list[TopicPartition]:
    """The partitions of those of `names` that exist, from a metadata request for all topics.

    Kafka answers a metadata request for no topic with no topic, and aiokafka's consumer starts with such a
    request, so a consumer that subscribed to nothing knows no partition; a request naming the topics would make
    a broker that creates topics on demand (Tansu) create a missing DLQ. A request for all topics (null, in
    Kafka's protocol) reads what exists on every broker and creates nothing.
    """
    admin = AIOKafkaAdminClient(**connection_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        topics = await admin.describe_topics(None)
    finally:
        await admin.close()
    wanted = set(names)
    return [
        TopicPartition(topic["topic"], partition["partition"])
        for topic in topics
        if topic["topic"] in wanted and topic["error_code"] == 0
        for partition in topic["partitions"]
    ]


def _header(headers: Any, name: str) -> str | None:
    for key, value in headers or ():
        if key == name:
            return bytes(value).decode(errors="replace")
    return None


async def list_dead_letters(
    settings: Settings, *, topic: str | None = None, limit: int = 100, idle_ms: int = 1500
) -> list[dict[str, Any]]:
    """Read the dead-letter topics from the start (no consumer group: reading changes nothing)."""
    partitions = sorted(await _partitions(settings, _dlq_topics(topic)))
    if not partitions:
        return []
    consumer = new_consumer(settings, group_id=None)
    await consumer.start()
    letters: list[dict[str, Any]] = []
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        while len(letters) < limit:
            batch = await consumer.getmany(timeout_ms=idle_ms, max_records=limit)
            if not batch:
                break
            for records in batch.values():
                for record in records:
                    letters.append(
                        {
                            "dlq_topic": record.topic,
                            "offset": record.offset,
                            "original_topic": _header(record.headers, "dlq_original_topic"),
                            "original_offset": _header(record.headers, "dlq_original_offset"),
                            "consumer": _header(record.headers, "dlq_consumer"),
                            "error": _header(record.headers, "dlq_error"),
                            "failed_at": _header(record.headers, "dlq_failed_at"),
                            "ce_id": _header(record.headers, "ce_id"),
                            "ce_type": _header(record.headers, "ce_type"),
                            "key": record.key.decode(errors="replace") if record.key else None,
                        }
                    )
        return letters[:limit]
    finally:
        await stop_consumer(consumer)


async def replay_dead_letters(settings: Settings, *, topic: str | None = None, idle_ms: int = 1500) -> int:
    """Re-publish each dead letter to its original topic, once: the replay group remembers.

    Consumers are idempotent, so a letter whose event was meanwhile applied changes nothing.
    """
    consumer = new_consumer(settings, *_dlq_topics(topic), group_id=REPLAY_GROUP, auto_offset_reset="earliest")
    producer = new_producer(settings)
    await consumer.start()
    await producer.start()
    # Only letters that were there when the replay started: a letter that fails again comes
    # back to the DLQ and must wait for the next replay, not loop forever.
    started_ms = int(time.time() * 1000)
    done: set[TopicPartition] = set()
    count = 0
    try:
        while True:
            batch = await consumer.getmany(timeout_ms=idle_ms, max_records=500)
            if not batch:
                break
            for tp, records in batch.items():
                last_offset = None
                for record in records:
                    if record.timestamp >= started_ms:
                        done.add(tp)
                        consumer.pause(tp)
                        break
                    original = _header(record.headers, "dlq_original_topic")
                    if original:
                        headers = [(k, v) for k, v in record.headers or () if not k.startswith("dlq_")]
                        await producer.send_and_wait(original, value=record.value, key=record.key, headers=headers)
                        count += 1
                    last_offset = record.offset
                if last_offset is not None:
                    await consumer.commit({tp: last_offset + 1})
            if done and done >= consumer.assignment():
                break
        return count
    finally:
        with contextlib.suppress(Exception):
            await stop_consumer(consumer)
        await producer.stop()
