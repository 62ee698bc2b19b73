"""Matching recovers: a replica refilled from the directory snapshot, and a worker killed mid-batch loses nothing twice."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections import defaultdict
from pathlib import Path

import asyncpg
import orjson

from services.common.db import connect, ensure_database, migrate
from services.common.embedded import EmbeddedBroker, free_port, stop_process
from services.common.kafka import ensure_topics
from services.common.outbox import enqueue
from services.common.replica import rebuild
from services.common.settings import Settings, with_database
from services.contracts.events import NeedPublished
from services.directory.demo import demo_actors
from services.matching import service, store, webhooks
from services.matching.demo import DEMO_NEEDS
from services.matching.model import NeedCreate
from tests.integration.directory_fixtures import Directory
from tests.integration.matching_fixtures import Matching
from tests.integration.test_matching import eventually, setting


async def test_rebuild_refills_a_lost_or_stale_replica_from_the_directory_snapshot(
    directory: Directory, matching: Matching
) -> None:
    actors = await setting(directory, matching)
    lost, stale = uuid.UUID(actors["near"]["id"]), uuid.UUID(actors["far"]["id"])
    conn = await asyncpg.connect(matching.database_url)
    try:
        await conn.execute("DELETE FROM actor_texts WHERE id = $1", lost)
        await conn.execute("DELETE FROM actors WHERE id = $1", lost)
        await conn.execute("UPDATE actors SET version = 0, name = 'périmé' WHERE id = $1", stale)

        report = await rebuild(matching.settings, "matching", service.apply_actor)
        assert report.read >= 4 and report.applied >= 2 and report.watermark
        back = await conn.fetchrow(
            "SELECT a.version, a.name, t.description FROM actors a JOIN actor_texts t USING (id) WHERE a.id = $1", lost
        )
        assert back is not None
        assert (back["version"], back["name"]) == (actors["near"]["version"], actors["near"]["name"])
        assert await conn.fetchval("SELECT name FROM actors WHERE id = $1", stale) == actors["far"]["name"]
        # Nothing newer than the replica now: a second pass applies none of these actors again.
        versions = dict(await conn.fetch("SELECT id, version FROM actors WHERE id = ANY($1)", [lost, stale]))
        await rebuild(matching.settings, "matching", service.apply_actor)
        assert dict(await conn.fetch("SELECT id, version FROM actors WHERE id = ANY($1)", [lost, stale])) == versions
    finally:
        await conn.close()


def spawn_worker(env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "services.launch.cli",
                "serve",
                "matching",
                "--role",
                "worker",
                "--port",
                str(free_port()),
            ],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


async def test_a_worker_killed_mid_batch_leaves_every_match_once_and_one_webhook_id_per_event(
    postgres_url: str, settings: Settings, matching: Matching, own_broker: EmbeddedBroker, tmp_path: Path
) -> None:
    database_url = with_database(postgres_url, f"maillage_matching_kill_{uuid.uuid4().hex[:8]}")
    await ensure_database(database_url)
    await migrate(database_url, ["services.common", "services.matching"])
    own = settings.model_copy(
        update={
            "kafka_bootstrap": own_broker.bootstrap,
            "kafka_idempotent_producer": False,  # own_broker is a Tansu, which refuses idempotent producers
            "matching_database_url": database_url,
        }
    )
    await ensure_topics(own)
    path = f"/kill-{uuid.uuid4().hex[:6]}"
    matching.receiver.scripts[path] = [500]  # every delivery is retried once
    conn = await connect(database_url)  # with the JSON codecs
    try:
        by_source = {}
        for source_id, actor in demo_actors():
            await store.upsert_actor(conn, actor)
            by_source[source_id] = actor
        endpoint = uuid.uuid4()
        secret = webhooks.new_secret()
        await conn.execute(
            "INSERT INTO webhook_endpoints (id, owner, url, event_types, secret) VALUES ($1, 'partner-k', $2, $3, $4)",
            endpoint,
            matching.receiver.url + path,
            ["match.found"],
            secret,
        )
        async with conn.transaction():  # a batch of needs published together, as after an import
            for demo in DEMO_NEEDS * 2:
                authority = by_source[f"demo-authority-{demo.authority}"]
                assert authority.location is not None
                body = NeedCreate.model_validate(demo.body(authority.location.model_dump()))
                row = await store.insert_need(conn, uuid.UUID(authority.id), body)
                need = store.need_read(row, await store.owner_of(conn, row["owner_id"]))
                await enqueue(conn, service="matching", key=need.id, payload=NeedPublished(need=need.to_contract()))

        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
        env.update(
            {
                "MAILLAGE_MATCHING_DATABASE_URL": database_url,
                "MAILLAGE_KAFKA_BOOTSTRAP": own_broker.bootstrap,
                "MAILLAGE_KAFKA_IDEMPOTENT_PRODUCER": "false",
                "MAILLAGE_JWT_KEYS": own.jwt_keys,
                "MAILLAGE_JWT_ACTIVE_KID": own.jwt_active_kid,
                "MAILLAGE_INTERNAL_KEY": own.internal_key,
                "MAILLAGE_WEBHOOK_ALLOW_PRIVATE": "true",
                "MAILLAGE_WEBHOOK_RETRY_BASE_S": "0.05",
                "MAILLAGE_EMAIL_ENABLED": "false",
                "MAILLAGE_CONSUMER_SESSION_TIMEOUT_MS": "6000",
                "MAILLAGE_OUTBOX_POLL_INTERVAL_S": "0.2",
            }
        )
        log = tmp_path / "worker.log"
        worker = spawn_worker(env, log)
        try:
            # Kill it (no clean stop) once it is midway: some matches stored and some webhooks sent.
            await eventually(lambda: asyncio.sleep(0, result=len(matching.receiver.ids(path)) >= 20), 60)
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(10)
            sent_before_kill = len(matching.receiver.ids(path))
            worker = spawn_worker(env, log)

            async def settled() -> bool:
                pending = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM outbox WHERE sent_at IS NULL)"
                    " + (SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered')"
                )
                matched = await conn.fetchval("SELECT count(DISTINCT need_id) FROM matches")
                # The notifier may still be rejoining its group after the kill: every match.found sent must also
                # have its delivery recorded, not only the deliveries that exist so far be done.
                unnotified = await conn.fetchval(
                    "SELECT (SELECT count(*) FROM outbox WHERE ce_type LIKE '%match.found')"
                    " - (SELECT count(*) FROM webhook_deliveries WHERE event_type = 'match.found')"
                )
                return bool(pending == 0 and matched == 2 * len(DEMO_NEEDS) and unnotified == 0)

            await eventually(settled, 90)
            await asyncio.sleep(1.0)  # nothing more arrives
        finally:
            if worker.poll() is None:
                stop_process(worker, signal.SIGTERM, timeout_s=20)

        matches = await conn.fetch("SELECT id, need_id, actor_id FROM matches")
        assert len({(m["need_id"], m["actor_id"]) for m in matches}) == len(matches)
        found = await conn.fetch("SELECT data FROM outbox WHERE ce_type LIKE '%match.found'")
        found_ids = [r["data"]["match"]["id"] for r in found]
        assert sent_before_kill < len(found_ids)  # it was killed with work left to do
        assert sorted(found_ids) == sorted(str(m["id"]) for m in matches)  # one match.found per match, no more

        ids_per_match: dict[str, set[str]] = defaultdict(set)
        for where, headers, content in matching.receiver.received:
            if where == path and content:  # an empty body is a request cut short by the kill
                ids_per_match[orjson.loads(content)["data"]["match"]["id"]].add(headers["webhook-id"])
        assert set(ids_per_match) == set(found_ids)  # every match reached the partner
        assert all(len(ids) == 1 for ids in ids_per_match.values())  # under one webhook-id, whatever the retries
        assert all(count >= 2 for count in matching.receiver.ids(path).values())  # the 500 was retried
    finally:
        await conn.close()
