"""Idempotent Kafka consumer: effects and the processed event id commit together; poison messages go to the DLQ."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import traceback
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.errors import (
    KafkaError,
    NoOffsetForPartitionError,
    OffsetOutOfRangeError,
)
from pydantic import ValidationError

from services.common.envelope import CloudEvent, MalformedMessage, from_kafka
from services.common.kafka import new_consumer, new_producer, stop_consumer
from services.common.observability import (
    CONSUMER_LAG,
    CONSUMER_PROCESSED,
    DLQ_MESSAGES,
    correlation_id,
)
from services.common.settings import Settings
from services.contracts.events import REGISTRY, EventPayload
from services.contracts.topics import dead_letter_topic

logger = logging.getLogger("maillage.consumer")

Handler = Callable[[asyncpg.Connection, CloudEvent, EventPayload | None], Awaitable[None]]

# Failures of the infrastructure rather than of the message: retried without limit, never DLQ'd.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


COMMIT_TIMEOUT_S = 5.0
MEMORY_CHECK_INTERVAL_S = 2.0
LAG_REFRESH_INTERVAL_S = 5.0
LAG_QUERY_TIMEOUT_S = 1.0  # the gauge is best effort: it must not hold the consuming loop for long
# Between attempts to reach a lost broker: doubling, capped, and never given up.
RECONNECT_BACKOFF_S = 0.5
MAX_RECONNECT_BACKOFF_S = 10.0


class PermanentError(Exception):
    """Raised by a handler for a message that can never succeed: it goes straight to the DLQ."""


class IdempotentConsumer:
    """Applies each event of its topics once: `(consumer, ce_source, ce_id)` is recorded in the
    transaction of the handler's effects, offsets are committed by hand after processing,
    unknown types are skipped, and a message that keeps failing goes to `<topic>.dlq`.
    """

    def __init__(
        self,
        name: str,
        topics: list[str],
        handlers: Mapping[str, Handler],
        pool: asyncpg.Pool,
        settings: Settings,
        **consumer_options: Any,
    ) -> None:
        self.name = name
        self.topics = topics
        self.handlers = dict(handlers)
        self.pool = pool
        self.settings = settings
        self.consumer_options = consumer_options
        self.ready = asyncio.Event()  # set once partitions are assigned
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: AIOKafkaProducer | None = None
        self._last_processed: dict[TopicPartition, int] = {}
        self._committed: dict[TopicPartition, int] = {}
        self._last_memory_check = 0.0
        self._last_lag_refresh = 0.0
        self._lag_partitions: set[TopicPartition] = set()  # the partitions this member's lag gauge shows

    # --- lifecycle -----------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set, surviving broker restarts and database outages."""
        backoff = RECONNECT_BACKOFF_S
        while not stop.is_set():
            try:
                await self._consume(stop)
            except (KafkaError, OSError) as exc:
                logger.warning("consumer %s lost the broker, reconnecting: %r", self.name, exc)
            except Exception:
                logger.exception("consumer %s failed, restarting", self.name)
            finally:
                if self.ready.is_set():  # it had been consuming: this is a new outage, retry soon
                    backoff = RECONNECT_BACKOFF_S
                await self._close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, MAX_RECONNECT_BACKOFF_S)

    async def _close(self) -> None:
        self.ready.clear()
        self._last_processed = {}
        self._committed = {}
        consumer, self._consumer = self._consumer, None
        producer, self._producer = self._producer, None
        if consumer is not None:
            with contextlib.suppress(Exception):
                await stop_consumer(consumer)
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _consume(self, stop: asyncio.Event) -> None:
        options: dict[str, Any] = {"auto_offset_reset": "none", **self.consumer_options}
        consumer = new_consumer(self.settings, *self.topics, group_id=self.name, **options)
        self._consumer = consumer
        await consumer.start()
        self._producer = new_producer(self.settings)
        await self._producer.start()
        while not stop.is_set():
            try:
                batch = await consumer.getmany(timeout_ms=200, max_records=500)
            except (OffsetOutOfRangeError, NoOffsetForPartitionError) as exc:
                await self._reset_offsets(consumer, exc)
                continue
            if consumer.assignment():
                self.ready.set()
            for tp, records in batch.items():
                for record in records:
                    if stop.is_set():
                        break
                    await self._process(record)
                # Commit what was processed (on shutdown, the part of the batch that was done).
                if tp in self._last_processed:
                    await self._commit(consumer, tp, self._last_processed[tp])
                await self._update_lag(consumer, tp)
            if not batch:
                await self._check_broker_memory(consumer)
            await self._refresh_lag(consumer)

    async def _commit(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> None:
        # A commit stuck across a broker restart could land on a recreated topic and skip
        # its first records: bound it, and start a fresh consumer from the broker's view.
        try:
            await asyncio.wait_for(consumer.commit({tp: offset}), COMMIT_TIMEOUT_S)
        except TimeoutError as exc:
            raise KafkaError(f"offset commit for {tp} timed out") from exc
        self._committed[tp] = offset

    async def _check_broker_memory(self, consumer: AIOKafkaConsumer) -> None:
        """While idle, check that the broker still knows the offsets this consumer committed.

        A broker that lost its data (the embedded one on restart, or a recreated topic) forgets
        them; positions held in memory would then skip the new log's first records. Re-read
        from the beginning instead: every effect is idempotent.
        """
        now = asyncio.get_running_loop().time()
        if now - self._last_memory_check < MEMORY_CHECK_INTERVAL_S or not self._committed:
            return
        self._last_memory_check = now
        forgotten = []
        for tp, offset in list(self._committed.items()):
            if tp not in consumer.assignment():
                self._committed.pop(tp, None)
                continue
            known = await asyncio.wait_for(consumer.committed(tp), COMMIT_TIMEOUT_S)
            if known is None or known < offset:
                forgotten.append(tp)
        if forgotten:
            logger.warning(
                "consumer %s: the broker forgot committed offsets of %s (restarted or topic "
                "recreated); re-reading them from the beginning",
                self.name,
                forgotten,
            )
            for tp in forgotten:
                self._committed.pop(tp, None)
            await consumer.seek_to_beginning(*forgotten)

    async def _reset_offsets(self, consumer: AIOKafkaConsumer, exc: Exception) -> None:
        """No committed offset (new group) or one past the log (a broker that lost its data):
        start over from the beginning, loudly, since every effect is idempotent."""
        partitions = exc.args[0] if exc.args else None
        if isinstance(partitions, TopicPartition):
            tps = [partitions]
        elif isinstance(partitions, dict):
            tps = list(partitions)
        else:
            tps = list(consumer.assignment())
        if isinstance(exc, OffsetOutOfRangeError):
            logger.warning(
                "consumer %s: committed offsets are past the log for %s (broker lost data?); "
                "re-reading from the beginning",
                self.name,
                tps,
            )
        else:
            logger.info("consumer %s: no committed offset for %s; starting at the beginning", self.name, tps)
        valid = [tp for tp in tps if isinstance(tp, TopicPartition) and tp in consumer.assignment()]
        if valid:
            await consumer.seek_to_beginning(*valid)

    async def _update_lag(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> None:
        highwater = consumer.highwater(tp)
        if highwater is None:
            return
        with contextlib.suppress(Exception):
            position = await consumer.position(tp)
            self._set_lag(tp, highwater - position)

    def _set_lag(self, tp: TopicPartition, lag: int) -> None:
        CONSUMER_LAG.labels(self.name, tp.topic, str(tp.partition)).set(max(0, lag))
        self._lag_partitions.add(tp)

    async def _refresh_lag(self, consumer: AIOKafkaConsumer) -> None:
        """Every few seconds, the lag of the partitions this member owns and has not fetched from yet.

        A fetch's high-water mark (`_update_lag`) only covers partitions that returned records: without this, a
        member just assigned a backlog shows no lag until its first batch, and a partition handed to another
        member keeps showing here the lag it had when it left. Before its first fetch, a partition's position
        is its committed offset (the log's start without one: see `_reset_offsets`).
        """
        now = asyncio.get_running_loop().time()
        if now - self._last_lag_refresh < LAG_REFRESH_INTERVAL_S:
            return
        self._last_lag_refresh = now
        assigned = set(consumer.assignment())
        for tp in self._lag_partitions - assigned:
            with contextlib.suppress(KeyError):
                CONSUMER_LAG.remove(self.name, tp.topic, str(tp.partition))
        self._lag_partitions &= assigned
        fresh = sorted(tp for tp in assigned - self._lag_partitions if consumer.highwater(tp) is None)
        if not fresh:
            return
        try:
            ends = await asyncio.wait_for(consumer.end_offsets(fresh), LAG_QUERY_TIMEOUT_S)
            starts: dict[TopicPartition, int] | None = None
            for tp in fresh:
                position = await asyncio.wait_for(consumer.committed(tp), LAG_QUERY_TIMEOUT_S)
                if position is None:
                    if starts is None:
                        starts = await asyncio.wait_for(consumer.beginning_offsets(fresh), LAG_QUERY_TIMEOUT_S) or {}
                    position = starts.get(tp, 0)
                if tp in ends:
                    self._set_lag(tp, ends[tp] - position)
        except (KafkaError, TimeoutError) as exc:  # the gauge waits for the next refresh or the next batch
            logger.debug("consumer %s: no offsets for the lag gauge: %r", self.name, exc)

    # --- one message ---------------------------------------------------------------
    async def _process(self, record: ConsumerRecord[bytes, bytes]) -> None:
        tp = TopicPartition(record.topic, record.partition)
        try:
            event = from_kafka(record.headers, record.value)
        except MalformedMessage as exc:
            await self._dead_letter(record, f"malformed: {exc}")
            self._mark(tp, record)
            return
        handler = self.handlers.get(event.type)
        if handler is None:
            CONSUMER_PROCESSED.labels(self.name, record.topic, "ignored").inc()
            self._mark(tp, record)
            return
        token = correlation_id.set(event.correlation_id)
        try:
            payload: EventPayload | None = None
            model = REGISTRY.get(event.type)
            if model is not None:
                try:
                    payload = model.model_validate(event.data)
                except ValidationError as exc:
                    await self._dead_letter(record, f"invalid {event.type} payload: {exc}")
                    self._mark(tp, record)
                    return
            await self._apply_with_retries(record, event, handler, payload)
            self._mark(tp, record)
        finally:
            correlation_id.reset(token)

    def _mark(self, tp: TopicPartition, record: ConsumerRecord[bytes, bytes]) -> None:
        self._last_processed[tp] = record.offset + 1

    async def _apply_with_retries(
        self, record: ConsumerRecord[bytes, bytes], event: CloudEvent, handler: Handler, payload: EventPayload | None
    ) -> None:
        attempt = 0
        outages = 0
        delay = self.settings.consumer_retry_backoff_s
        while True:
            attempt += 1
            try:
                applied = await self._apply(event, handler, payload)
                CONSUMER_PROCESSED.labels(self.name, record.topic, "applied" if applied else "duplicate").inc()
                return
            except TRANSIENT_ERRORS as exc:
                # The database or network is down: wait for it, the message is not at fault.
                logger.warning("consumer %s: transient failure on %s, retrying: %s", self.name, event.id, exc)
                outages += 1
                attempt -= 1
                await asyncio.sleep(min(delay * 2 ** min(outages, 6), 10.0))
            except PermanentError as exc:
                await self._dead_letter(record, f"{type(exc).__name__}: {exc}")
                return
            except Exception as exc:
                if attempt >= self.settings.consumer_max_retries:
                    logger.exception("consumer %s: %s failed %d times, dead-lettering", self.name, event.id, attempt)
                    detail = "".join(traceback.format_exception_only(exc)).strip()
                    await self._dead_letter(record, detail)
                    return
                await asyncio.sleep(delay * 2 ** (attempt - 1))

    async def _apply(self, event: CloudEvent, handler: Handler, payload: EventPayload | None) -> bool:
        async with self.pool.acquire() as conn, conn.transaction():
            first_time = await conn.fetchval(
                """
                INSERT INTO processed_events (consumer, ce_source, ce_id) VALUES ($1, $2, $3)
                ON CONFLICT DO NOTHING RETURNING true
                """,
                self.name,
                event.source,
                event.id,
            )
            if not first_time:
                return False
            await handler(conn, event, payload)
            return True

    async def _dead_letter(self, record: ConsumerRecord[bytes, bytes], error: str) -> None:
        """Publish the record untouched to `<topic>.dlq` with the error in headers; wait for the ack."""
        assert self._producer is not None
        headers = [(k, v) for k, v in (record.headers or ()) if not k.startswith("dlq_")]
        headers += [
            ("dlq_error", error[:4000].encode()),
            ("dlq_consumer", self.name.encode()),
            ("dlq_original_topic", record.topic.encode()),
            ("dlq_original_partition", str(record.partition).encode()),
            ("dlq_original_offset", str(record.offset).encode()),
            ("dlq_failed_at", datetime.now(UTC).isoformat().encode()),
        ]
        await self._producer.send_and_wait(
            dead_letter_topic(record.topic),
            value=record.value,
            key=record.key,
            headers=headers,
        )
        DLQ_MESSAGES.labels(self.name, record.topic).inc()
        CONSUMER_PROCESSED.labels(self.name, record.topic, "dead_lettered").inc()
        logger.error(
            "consumer %s: message %s/%d@%d dead-lettered: %s",
            self.name,
            record.topic,
            record.partition,
            record.offset,
            error[:500],
        )
