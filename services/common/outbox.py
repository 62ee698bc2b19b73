"""Transactional outbox: events written with the state change, published in commit order by one relay per service."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

import asyncpg
from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.errors import KafkaError

from services.common import idempotency
from services.common.db import connect
from services.common.envelope import CORRELATION_ATTR, CloudEvent
from services.common.kafka import cluster_id, connection_options, ensure_topics, new_producer
from services.common.observability import (
    OUTBOX_BACKLOG,
    OUTBOX_LAG_SECONDS,
    OUTBOX_PUBLISHED,
    correlation_id,
)
from services.common.settings import Settings
from services.contracts.events import EventPayload
from services.contracts.topics import TOPICS, topic_plan

logger = logging.getLogger("maillage.outbox")

NOTIFY_CHANNEL = "maillage_outbox"
# Session lock held by the one active relay of a service database (bigint key space).
RELAY_LOCK = 0x6F7574626F78
# Transaction locks serialising writers of one (topic, key): (int, int) key space, distinct
# from the bigint one. Two writers of the same key therefore get outbox ids in commit order.
KEY_LOCK_SPACE = 0x6F62
# Partitions of a topic outside the topic plan that the relay recreates.
UNPLANNED_PARTITIONS = 3
# Longest the relay publishes without asking the broker its cluster id again (each new producer asks first).
# Asking costs a metadata round trip (~15 ms on Tansu), hence not before every batch; a broker replaced within
# this window is also seen by its offsets going back (`_check_log_kept`).
CLUSTER_CHECK_INTERVAL_S = 1.0


def source_of(service: str) -> str:
    """The CloudEvents `source` of everything a service emits."""
    return f"/maillage/{service}"


async def enqueue(
    conn: asyncpg.Connection,
    *,
    service: str,
    key: str,
    payload: EventPayload | None = None,
    topic: str | None = None,
    ce_type: str | None = None,
    data: dict[str, Any] | None = None,
    subject: str | None = None,
) -> CloudEvent:
    """Add one event to the outbox inside the caller's transaction (which must be open).

    Pass a contract `payload` (its type and topic come with it), or `topic`, `ce_type`
    and raw `data` (tests, tools).
    """
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.enqueue must run inside the transaction of the state change")
    if payload is not None:
        topic, ce_type, data = payload.topic, payload.ce_type, payload.model_dump(mode="json")
    if topic is None or ce_type is None or data is None:
        raise ValueError("enqueue needs a payload, or topic + ce_type + data")
    extensions = {}
    if (cid := correlation_id.get()) is not None:
        extensions[CORRELATION_ATTR] = cid
    event = CloudEvent(type=ce_type, source=source_of(service), data=data, subject=subject, extensions=extensions)
    # One round trip: the key lock is taken before the row (and its id) exists.
    await conn.execute(
        """
        WITH key_lock AS (SELECT pg_advisory_xact_lock($9, hashtext($1 || chr(31) || $2)))
        INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time, headers, data)
        SELECT $1, $2, $3, $4, $5, $6, $7, $8 FROM key_lock
        """,
        topic,
        key,
        uuid.UUID(event.id),
        ce_type,
        event.source,
        event.time,
        {"subject": subject, **extensions} if subject else extensions,
        data,
        KEY_LOCK_SPACE,
    )
    return event


class PreparedEvent(NamedTuple):
    """An event whose JSON data is already built (bulk paths that skip model validation)."""

    ce_type: str
    topic: str
    data: dict[str, Any]


async def enqueue_many(
    conn: asyncpg.Connection,
    *,
    service: str,
    events: Sequence[tuple[str, EventPayload | PreparedEvent]],
    fresh_keys: set[str] | frozenset[str] = frozenset(),
    subjects: Sequence[str] | None = None,
) -> list[CloudEvent]:
    """Add many (key, payload) events with one COPY (bulk imports, a need's matches).

    `fresh_keys` are keys created in this transaction (new ids): no other writer can hold them,
    so they skip the per-key lock that orders concurrent writers of one key. `subjects`, one per
    event, name what each is about when it is not its key (default: the key).
    """
    if not conn.is_in_transaction():
        raise RuntimeError("outbox.enqueue_many must run inside the transaction of the state change")
    if not events:
        return []
    extensions = {}
    if (cid := correlation_id.get()) is not None:
        extensions[CORRELATION_ATTR] = cid
    built = [
        (
            key,
            CloudEvent(
                type=payload.ce_type,
                source=source_of(service),
                data=payload.data if isinstance(payload, PreparedEvent) else payload.model_dump(mode="json"),
                subject=subject,
                extensions=extensions,
            ),
            payload.topic,
        )
        for (key, payload), subject in zip(events, subjects or [key for key, _ in events], strict=True)
    ]
    keys = sorted({f"{topic}\x1f{key}" for key, _, topic in built if key not in fresh_keys})  # one order
    if keys:
        await conn.execute(
            "SELECT pg_advisory_xact_lock($1, hashtext(k)) FROM unnest($2::text[]) AS k", KEY_LOCK_SPACE, keys
        )
    await conn.copy_records_to_table(
        "outbox",
        columns=["topic", "key", "ce_id", "ce_type", "ce_source", "ce_time", "headers", "data"],
        records=[
            (
                topic,
                key,
                uuid.UUID(event.id),
                event.type,
                event.source,
                event.time,
                {"subject": event.subject, **extensions},
                event.data,
            )
            for key, event, topic in built
        ],
    )
    return [event for _, event, _ in built]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    topic: str
    key: str
    event: CloudEvent
    created_at: datetime


def _row_to_event(row: asyncpg.Record) -> OutboxRow:
    headers = dict(row["headers"] or {})
    subject = headers.pop("subject", None)
    event = CloudEvent(
        id=str(row["ce_id"]),
        type=row["ce_type"],
        source=row["ce_source"],
        time=row["ce_time"],
        data=row["data"],
        subject=subject,
        extensions=headers,
    )
    return OutboxRow(row["id"], row["topic"], row["key"], event, row["created_at"])


def _ignore_outcome(future: asyncio.Future[Any]) -> None:
    """Retrieve the outcome of a send whose row is re-sent anyway (no "exception never retrieved" noise)."""
    if not future.cancelled():
        future.exception()


AckCallback = Callable[[Sequence[OutboxRow], float], None]


class OutboxRelay:
    """Publishes a service's outbox rows in id order; exactly one relay per database is active.

    The active relay holds a PostgreSQL session advisory lock; other replicas wait on standby.
    Rows are marked sent only after the broker acknowledged them; with the broker down they
    wait and go out, in order, once it is back. NOTIFY wakes the relay; it also polls.
    A broker that lost what it had acknowledged is published to again from the retained rows: another
    cluster id than the one recorded in the database (a new or re-formatted cluster), or a partition's
    offsets going back (a topic emptied or recreated).
    """

    def __init__(
        self, service: str, database_url: str, settings: Settings, *, on_ack: AckCallback | None = None
    ) -> None:
        self.service = service
        self.database_url = database_url
        self.settings = settings
        self.on_ack = on_ack
        self.active = False
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._last_purge = 0.0
        self._last_backlog = 0.0
        self._unplanned_topics: set[str] = set()  # topics of rows outside the plan (tools, tests)
        self._last_offsets: dict[TopicPartition, int] = {}  # last acknowledged offset of each partition
        self._lost_topics: set[str] = set()  # topics whose log the broker was seen to lose
        self._admin: AIOKafkaAdminClient | None = None  # asks the broker its cluster id
        self._cluster_id: str | None = None  # the one recorded in outbox_broker, once read
        self._cluster_checked_at = -CLUSTER_CHECK_INTERVAL_S  # monotonic time of the last check that answered
        self._broker_unreachable = False

    async def run(self, stop: asyncio.Event) -> None:
        """Relay until `stop` is set; reconnect to PostgreSQL and the broker as needed."""
        backoff = 0.2
        while not stop.is_set():
            try:
                await self._run_locked(stop)
                backoff = 0.2
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
                logger.warning("outbox relay lost its database connection, retrying: %s", exc)
            except Exception:
                logger.exception("outbox relay failed, restarting")
            self.active = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), backoff)
            backoff = min(backoff * 2, 5.0)
        await self._stop_producer()
        await self._stop_admin()

    async def _run_locked(self, stop: asyncio.Event) -> None:
        conn = await connect(self.database_url)
        try:
            while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", RELAY_LOCK):
                # Another replica relays; stand by and try again.
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), max(1.0, self.settings.outbox_poll_interval_s))
                if stop.is_set():
                    return
            self.active = True
            self._cluster_id = None  # another replica may have relayed (and recorded a cluster) meanwhile
            self._cluster_checked_at = -CLUSTER_CHECK_INTERVAL_S
            self._last_offsets = {
                TopicPartition(r["topic"], r["partition"]): r["last_offset"]
                for r in await conn.fetch("SELECT topic, partition, last_offset FROM outbox_partitions")
            }
            logger.info("outbox relay active for %s", self.service)
            await conn.add_listener(NOTIFY_CHANNEL, self._on_notify)
            while not stop.is_set():
                self._wake.clear()
                # Nothing is sent to a broker not known to hold what was acknowledged before.
                published = await self._publish_batch(conn) if await self._same_cluster(conn) else 0
                await self._housekeeping(conn)
                if published >= self.settings.outbox_batch_size:
                    continue  # more is waiting: no pause
                waiter = asyncio.ensure_future(self._wake.wait())
                stopper = asyncio.ensure_future(stop.wait())
                await asyncio.wait(
                    {waiter, stopper},
                    timeout=self.settings.outbox_poll_interval_s,
                    return_when=asyncio.FIRST_COMPLETED,
                )
                waiter.cancel()
                stopper.cancel()
        finally:
            self.active = False
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    def _on_notify(self, *_: object) -> None:
        self._wake.set()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            await self._ensure_topics()
            producer = new_producer(self.settings)
            try:
                await producer.start()
            except BaseException:
                await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _stop_producer(self) -> None:
        # A new producer may reach another broker: its first send waits for a check of the cluster id.
        self._cluster_checked_at = -CLUSTER_CHECK_INTERVAL_S
        if self._producer is not None:
            producer, self._producer = self._producer, None
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _stop_admin(self) -> None:
        if self._admin is not None:
            admin, self._admin = self._admin, None
            with contextlib.suppress(Exception):
                await admin.close()

    async def _ask_cluster_id(self) -> str:
        if self._admin is None:
            admin = AIOKafkaAdminClient(**connection_options(self.settings), request_timeout_ms=10_000)
            try:
                await admin.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await admin.close()
                raise
            self._admin = admin
        return await cluster_id(self._admin)

    async def _same_cluster(self, conn: asyncpg.Connection) -> bool:
        """Whether the broker is the cluster the outbox was published to; after a change, publish it all again.

        A broker that answers with another cluster id than the one recorded (a new cluster, a broker whose
        storage was lost and formatted again, the embedded broker started again) holds none of the rows
        acknowledged before: every retained row is queued again, in id order, ahead of the new ones, so that
        consumers that had not read them get them without anyone running `maillage replay`. False when the
        broker did not answer: nothing is sent this round.
        """
        now = time.monotonic()
        if now - self._cluster_checked_at < CLUSTER_CHECK_INTERVAL_S:
            return True
        try:
            current = await asyncio.wait_for(self._ask_cluster_id(), 10)
        except (KafkaError, OSError) as exc:  # TimeoutError is an OSError
            await self._stop_admin()
            if not self._broker_unreachable:
                logger.warning("outbox relay cannot reach the broker; rows wait: %r", exc)
            self._broker_unreachable = True
            return False
        if self._broker_unreachable:
            logger.info("outbox relay reaches the broker again")
        self._broker_unreachable = False
        self._cluster_checked_at = now
        if self._cluster_id is None:
            self._cluster_id = await conn.fetchval("SELECT cluster_id FROM outbox_broker")
        if current == self._cluster_id:
            return True
        previous = self._cluster_id
        async with conn.transaction():
            queued = "UPDATE 0"
            if previous is not None:  # the first cluster ever seen got every row already
                queued = await conn.execute("UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL")
                await conn.execute("DELETE FROM outbox_partitions")  # offsets start again on the new cluster
            await conn.execute(
                """
                INSERT INTO outbox_broker (cluster_id) VALUES ($1)
                ON CONFLICT (only_row) DO UPDATE SET cluster_id = excluded.cluster_id, seen_since = now()
                """,
                current,
            )
        self._cluster_id = current
        if previous is None:
            logger.info("outbox relay of %s publishes to cluster %s", self.service, current)
            return True
        # Offsets start again on the new cluster, and its topics are yet to be created: a new producer does.
        self._last_offsets.clear()
        self._lost_topics.clear()
        planned = {spec.name for spec in TOPICS}
        self._unplanned_topics |= {
            topic
            for (topic,) in await conn.fetch("SELECT DISTINCT topic FROM outbox WHERE sent_at IS NULL")
            if topic not in planned
        }
        await self._stop_producer()
        self._cluster_checked_at = now  # just checked: the new producer need not ask again
        logger.warning(
            "the broker is another cluster (%s, was %s): it has none of the outbox published before; "
            "%s retained rows queued to be published again before any new one",
            current,
            previous,
            queued.split()[-1],
        )
        return True

    async def _publish_batch(self, conn: asyncpg.Connection) -> int:
        rows = [
            _row_to_event(r)
            for r in await conn.fetch(
                "SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
                self.settings.outbox_batch_size,
            )
        ]
        if not rows:
            return 0
        acked: list[OutboxRow] = []
        touched: set[TopicPartition] = set()
        error: BaseException | None = None
        try:
            producer = await self._ensure_producer()
            futures = []
            for row in rows:
                futures.append(
                    await producer.send(
                        row.topic,
                        value=row.event.kafka_value(),
                        key=row.key.encode(),
                        headers=row.event.kafka_headers(),
                    )
                )
            for row, future in zip(rows, futures, strict=True):
                try:
                    metadata = await future
                except KafkaError as exc:
                    # Keep the acknowledged prefix only: what follows is re-sent in order.
                    error = exc
                    for rest in futures[len(acked) + 1 :]:
                        rest.add_done_callback(_ignore_outcome)
                    break
                acked.append(row)
                touched.add(metadata.topic_partition)
                self._check_log_kept(metadata.topic_partition, metadata.offset)
        except (KafkaError, OSError) as exc:
            error = exc
        ack_time = time.time()
        if acked:
            partitions = sorted(touched)
            # With the rows marked sent, in one statement: the offsets a relay started later compares against.
            await conn.execute(
                """
                WITH sent AS (UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[]))
                INSERT INTO outbox_partitions (topic, partition, last_offset)
                SELECT * FROM unnest($2::text[], $3::int[], $4::bigint[])
                ON CONFLICT (topic, partition) DO UPDATE SET last_offset = excluded.last_offset
                """,
                [row.id for row in acked],
                [tp.topic for tp in partitions],
                [tp.partition for tp in partitions],
                [self._last_offsets[tp] for tp in partitions],
            )
            OUTBOX_PUBLISHED.labels(self.service).inc(len(acked))
            for row in acked:
                OUTBOX_LAG_SECONDS.labels(self.service).observe(max(0.0, ack_time - row.created_at.timestamp()))
            if self.on_ack is not None:
                self.on_ack(acked, ack_time)
        if self._lost_topics:
            await self._refill(conn)
        if error is not None:
            logger.warning("broker refused or unreachable; %d rows wait: %s", len(rows) - len(acked), error)
            await self._recover(rows[len(acked) :])
        return len(acked)

    def _check_log_kept(self, partition: TopicPartition, offset: int) -> None:
        """Note the acknowledged offset; one not past the last seen means the broker lost that partition's log.

        Offsets of a partition only grow while its log exists: a lower one after a broker restart (the
        embedded broker keeps nothing) or a topic recreated means every record acknowledged before is
        gone, including those no consumer had read yet. The last offsets are kept in the database
        (outbox_partitions), so that a relay started later sees it too, even on a cluster formatted again
        under the same id (compose's fixed KAFKA_CLUSTER_ID), where the cluster check cannot; it sees it on
        the first acknowledgement, though, so that one row is also published once before the older ones.
        """
        if offset <= self._last_offsets.get(partition, -1):
            self._lost_topics.add(partition.topic)
        self._last_offsets[partition] = offset

    async def _refill(self, conn: asyncpg.Connection) -> None:
        """Publish again, in order, every retained sent row of the topics whose log the broker lost.

        Consumers drop what they had already applied (their inbox outlives the outbox); the producer is
        rebuilt first, since its partition metadata describes the lost topics.
        """
        topics = sorted(self._lost_topics)
        self._lost_topics.clear()
        self._last_offsets = {tp: offset for tp, offset in self._last_offsets.items() if tp.topic not in topics}
        await self._stop_producer()
        async with conn.transaction():
            status = await conn.execute(
                "UPDATE outbox SET sent_at = NULL WHERE sent_at IS NOT NULL AND topic = ANY($1::text[])", topics
            )
            await conn.execute("DELETE FROM outbox_partitions WHERE topic = ANY($1::text[])", topics)
        logger.warning(
            "the broker lost the log of %s (restarted without its data, or the topics were recreated): "
            "%s sent rows queued to be published again",
            ", ".join(topics),
            status.split()[-1],
        )

    async def _recover(self, pending: Sequence[OutboxRow]) -> None:
        """After a failed send: drop the producer; the next one starts by recreating what a lost broker forgot."""
        await self._stop_producer()
        planned = {spec.name for spec in TOPICS}
        self._unplanned_topics |= {row.topic for row in pending if row.topic not in planned}
        await asyncio.sleep(0.5)

    async def _ensure_topics(self) -> None:
        """Before a new producer's first send, create the missing topics of the plan (and of rows outside it).

        A broker that lost its topics (the embedded one restarted, a recreated cluster) would otherwise
        make the first send wait for the topic's metadata or, where the broker creates topics on
        demand, get it with the broker's default partition count instead of the plan's. Best effort: a
        broker that refuses to create topics (no ACL) leaves it to the operator's `maillage topics`.
        """
        wanted = topic_plan() + [(topic, UNPLANNED_PARTITIONS) for topic in sorted(self._unplanned_topics)]
        try:
            await asyncio.wait_for(ensure_topics(self.settings, wanted), 10)
        except (KafkaError, OSError) as exc:  # TimeoutError is an OSError
            logger.warning("outbox relay could not check or create the topics: %r", exc)

    async def _housekeeping(self, conn: asyncpg.Connection) -> None:
        now = time.monotonic()
        if now - self._last_backlog > 5:
            self._last_backlog = now
            backlog = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            OUTBOX_BACKLOG.labels(self.service).set(backlog)
        if now - self._last_purge > 600:
            self._last_purge = now
            await purge(conn, self.settings)
            await idempotency.purge(conn, self.settings)


async def purge(conn: asyncpg.Connection, settings: Settings) -> tuple[int, int]:
    """Delete sent outbox rows and inbox records older than their retention."""
    outbox = await conn.execute(
        "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < now() - $1::interval",
        timedelta(hours=settings.outbox_retention_hours),
    )
    inbox = await conn.execute(
        "DELETE FROM processed_events WHERE processed_at < now() - $1::interval",
        timedelta(hours=settings.inbox_retention_hours),
    )
    return int(outbox.split()[-1]), int(inbox.split()[-1])


async def replay(conn: asyncpg.Connection, *, since: datetime, topic: str | None = None) -> int:
    """Mark sent rows created since `since` for publication again; the relay re-sends them in order."""
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    status = await conn.execute(
        """
        UPDATE outbox SET sent_at = NULL
        WHERE created_at >= $1 AND sent_at IS NOT NULL AND ($2::text IS NULL OR topic = $2)
        """,
        since,
        topic,
    )
    await conn.execute("SELECT pg_notify($1, '')", NOTIFY_CHANNEL)
    return int(status.split()[-1])
