"""Apache Kafka stopped in the middle of a stream of registrations and started again on its data: nothing lost, nothing twice."""

from __future__ import annotations

import asyncio
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.common.auth import Role
from services.common.embedded import free_port
from services.common.kafka import ensure_topics
from services.common.settings import Settings
from services.contracts.topics import ACTOR
from tests.conftest import ON_APACHE_KAFKA, _test_settings
from tests.integration.conftest import PrivateBroker
from tests.integration.identities import forwarded
from tests.integration.kafka_processes import fresh_databases, process_env, service, wait_healthy
from tests.integration.kafka_tools import eventually, header, read_topic
from tests.integration.test_directory_api import actor, unique_siret

pytestmark = pytest.mark.skipif(
    not ON_APACHE_KAFKA, reason="Apache Kafka only (MAILLAGE_TEST_BROKER=kafka): Tansu keeps nothing over a restart"
)

ACTORS = 45  # registered one after the other; the broker is down for the middle third


async def register(http: httpx.AsyncClient, headers: dict[str, str], n: int) -> str:
    """Register one actor; a failed attempt is retried with the same Idempotency-Key (one actor, whatever happens)."""
    key = str(uuid.uuid4())
    body = actor(name=f"Acteur redémarrage {n}", siret=unique_siret())
    for _ in range(20):
        try:
            response = await http.post("/v1/actors", json=body, headers={**headers, "Idempotency-Key": key})
        except httpx.HTTPError:
            await asyncio.sleep(0.5)
            continue
        if response.status_code < 500:
            assert response.status_code == 201, response.text
            return str(response.json()["id"])
        await asyncio.sleep(0.5)
    raise AssertionError(f"actor {n} could not be registered")


async def test_kafka_restarted_on_its_data_mid_stream_loses_nothing_and_applies_nothing_twice(
    postgres_url: str, private_broker: PrivateBroker, tmp_path: Path
) -> None:
    own: Settings = private_broker.settings(_test_settings(), outbox_poll_interval_s=0.2)
    urls = await fresh_databases(postgres_url, ("directory", "events", "matching"), "restart")
    await ensure_topics(own)
    env = process_env(own, urls)
    port = free_port()
    with (
        service("directory", "all", env, port, tmp_path / "directory.log"),
        service("events", "worker", env, free_port(), tmp_path / "events.log"),
        service("matching", "worker", env, free_port(), tmp_path / "matching.log"),
    ):
        headers = forwarded(own, Role.ADMIN)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=10) as http:
            await wait_healthy(port)
            registered = [await register(http, headers, n) for n in range(ACTORS // 3)]
            private_broker.stop()  # controlled shutdown; its log directory stays
            stopped = time.monotonic()
            registered += [await register(http, headers, n) for n in range(ACTORS // 3, 2 * ACTORS // 3)]
            await asyncio.to_thread(private_broker.start)  # the same data: the same cluster, its offsets
            down_s = time.monotonic() - stopped
            registered += [await register(http, headers, n) for n in range(2 * ACTORS // 3, ACTORS)]
        assert len(set(registered)) == ACTORS

        directory = await asyncpg.connect(urls["directory"])
        replicas = {name: await asyncpg.connect(urls[name]) for name in ("events", "matching")}
        try:
            versions = dict(await directory.fetch("SELECT id::text, version FROM actors"))
            assert set(versions) == set(registered)  # one actor per registration, retries included

            async def replicated() -> bool:
                for conn in replicas.values():
                    held = dict(await conn.fetch("SELECT id::text, version FROM actors"))
                    if held != versions:
                        return False
                return True

            assert await eventually(replicated, 120), "a replica misses actors after the restart"
            # Every actor event applied exactly once by each consumer of the actor topic.
            ce_ids = {
                str(r["ce_id"]) for r in await directory.fetch("SELECT ce_id FROM outbox WHERE topic = $1", ACTOR)
            }
            assert len(ce_ids) == ACTORS
            for name, conn in replicas.items():
                applied = await conn.fetch(
                    "SELECT ce_id, count(*) AS n FROM processed_events WHERE ce_source = '/maillage/directory' "
                    "GROUP BY consumer, ce_id"
                )
                assert {r["ce_id"] for r in applied} == ce_ids, name
                assert all(r["n"] == 1 for r in applied), name
            assert not await directory.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            # The same cluster came back: the relay recorded one cluster and did not publish everything again.
            assert await directory.fetchval("SELECT count(*) FROM outbox_broker") == 1
        finally:
            await directory.close()
            for conn in replicas.values():
                await conn.close()
        records = await read_topic(own, ACTOR, expect=ACTORS, timeout_s=30, idle_s=1.0)
        on_topic = [header(r, "ce_id") for r in records]
        assert set(on_topic) == ce_ids
        duplicates = len(on_topic) - len(ce_ids)
        assert duplicates < ACTORS // 3, f"{duplicates} duplicates: the relay published its outbox again"
        print(f"broker down {down_s:.1f} s, {duplicates} duplicate records on the actor topic")
