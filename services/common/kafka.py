"""Kafka clients configured for Maillage: the producer, consumer settings, topic creation and a readiness probe."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError
from aiokafka.helpers import create_ssl_context

from services.common.settings import Settings
from services.contracts.topics import topic_config, topic_plan

logger = logging.getLogger("maillage.kafka")


def connection_options(settings: Settings) -> dict[str, Any]:
    """Where the brokers are and how to reach them: plaintext, TLS, SASL (managed Kafka) or both."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": settings.kafka_security_protocol,
    }
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        options["ssl_context"] = create_ssl_context(cafile=settings.kafka_ssl_cafile or None)
    if settings.kafka_security_protocol.startswith("SASL_"):
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": settings.kafka_sasl_username,
            "sasl_plain_password": settings.kafka_sasl_password,
        }
    return options


def new_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """A producer that waits for every in-sync replica, idempotent where the broker allows it (the setting).

    Nothing relies on idempotence (DESIGN.md): a send retried by the relay after a failure comes from a new
    producer anyway, and consumers drop what they had applied. It spares consumers the duplicates and
    reorderings of the client's own retries, and costs one InitProducerId per producer.
    """
    options: dict[str, Any] = {
        **connection_options(settings),
        "acks": "all",
        "linger_ms": 0,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 10_000,
        "retry_backoff_ms": 100,
        "metadata_max_age_ms": 10_000,
        "enable_idempotence": settings.kafka_idempotent_producer,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def new_consumer(settings: Settings, *topics: str, group_id: str | None, **overrides: Any) -> AIOKafkaConsumer:
    """A consumer with manual commits and the latency settings of DESIGN.md."""
    session = settings.consumer_session_timeout_ms
    options: dict[str, Any] = {
        **connection_options(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": session,
        "heartbeat_interval_ms": max(1000, session // 3),
        "fetch_max_wait_ms": settings.consumer_fetch_max_wait_ms,
        "max_poll_records": 500,
        "metadata_max_age_ms": 5_000,
        "request_timeout_ms": max(40_000, session + 5_000),
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def stop_consumer(consumer: AIOKafkaConsumer) -> None:
    """Stop a consumer and close its connections, even while the broker is unreachable.

    aiokafka's `Fetcher.close()` (0.14) cancels its in-flight fetch tasks and awaits them unguarded. A
    fetch that failed (as every fetch does while the broker is down) sleeps its retry back-off, and a
    cancellation there is re-raised: it escapes `AIOKafkaConsumer.stop()` as a `CancelledError` that
    nobody asked for, before the client's connections are closed. Only the caller's own cancellation
    propagates from here; a stray one is finished off: the fetches left behind and the connections.
    """
    try:
        await consumer.stop()
        return
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
    logger.info("consumer stop: a cancelled fetch's CancelledError escaped aiokafka; finishing the close")
    fetcher = getattr(consumer, "_fetcher", None)
    pending = [task for task in getattr(fetcher, "_pending_tasks", ()) if not task.done()]
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    await consumer._client.close()


async def ensure_topics(settings: Settings, topics: Iterable[tuple[str, int]] | None = None) -> list[str]:
    """Create the missing topics of the plan (or of `topics`) with the plan's durability; return the names created."""
    wanted = list(topics) if topics is not None else topic_plan()
    admin = AIOKafkaAdminClient(**connection_options(settings), request_timeout_ms=10_000)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [(name, parts) for name, parts in wanted if name not in existing]
        if not missing:
            return []
        created: list[str] = []
        for name, partitions in missing:
            try:
                await admin.create_topics(
                    [
                        NewTopic(
                            name,
                            num_partitions=partitions,
                            replication_factor=settings.topic_replication,
                            topic_configs=topic_config(settings.topic_replication),
                        )
                    ]
                )
                created.append(name)
            except TopicAlreadyExistsError:
                pass
        if created:
            logger.info("created topics", extra={"topics": created})
        return created
    finally:
        await admin.close()


async def cluster_id(admin: AIOKafkaAdminClient) -> str:
    """The id of the cluster the brokers belong to: another one (a new cluster, a memory broker started
    again) holds none of the records acknowledged before."""
    described = await admin.describe_cluster()
    found = described.get("cluster_id")
    if not found:
        raise KafkaError("the broker reported no cluster id (Metadata v2+ carries one)")
    return str(found)


async def wait_for_broker(settings: Settings, timeout_s: float = 30.0) -> None:
    """Return once the broker answers a metadata request; raise TimeoutError otherwise."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        admin = AIOKafkaAdminClient(**connection_options(settings), request_timeout_ms=2_000)
        try:
            await admin.start()
            await admin.list_topics()
            return
        except (KafkaError, OSError) as exc:
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"broker {settings.kafka_bootstrap} not reachable: {exc}") from exc
            await asyncio.sleep(0.2)
        finally:
            await admin.close()


async def broker_reachable(bootstrap: str, timeout_s: float = 1.0) -> bool:
    """A cheap readiness check: can a TCP connection reach one bootstrap server?"""
    for server in bootstrap.split(","):
        host, _, port = server.strip().rpartition(":")
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host or "127.0.0.1", int(port)), timeout_s)
        except (OSError, TimeoutError, ValueError):
            continue
        writer.close()
        return True
    return False
