"""Two matching workers in one consumer group on Apache Kafka, one killed mid-stream: every need matched once, in order,
every webhook delivered under one id per (endpoint, event)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import orjson
import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.common.auth import Role
from services.common.db import connect
from services.common.embedded import free_port, stop_process
from services.common.kafka import ensure_topics
from services.common.settings import Settings
from services.contracts.topics import MATCH
from services.matching import planner, rules, store, webhooks
from services.matching.model import public_type
from services.matching.scoring import Weights, evaluate
from tests.conftest import ON_APACHE_KAFKA, _test_settings
from tests.integration.conftest import PrivateBroker
from tests.integration.directory_fixtures import serve
from tests.integration.identities import forwarded
from tests.integration.kafka_processes import fresh_databases, process_env, service, spawn, wait_healthy
from tests.integration.kafka_tools import eventually, header, read_topic
from tests.integration.matching_fixtures import Receiver
from tests.integration.test_directory_api import actor, unique_siret

pytestmark = pytest.mark.skipif(
    not ON_APACHE_KAFKA, reason="Apache Kafka only (MAILLAGE_TEST_BROKER=kafka): its group rebalancing"
)

STREAM_S = 24.0  # needs and actors keep arriving this long; one worker is killed halfway
PACE_S = 0.8  # between two arrivals of a need and an actor
MATCH_K = 5  # few matches per need: fewer webhooks to wait for on a loaded machine
AUTHORITIES = 3
GROUPS = ("matching-engine", "matching-notifier")
BESANCON = (47.2378, 6.0241)


async def post_once(http: httpx.AsyncClient, path: str, body: dict[str, Any], headers: dict[str, str]) -> str:
    """POST a creation; a failed attempt is retried with the same Idempotency-Key (one resource, whatever happens)."""
    key = str(uuid.uuid4())
    for _ in range(30):
        try:
            response = await http.post(path, json=body, headers={**headers, "Idempotency-Key": key})
        except httpx.HTTPError:
            await asyncio.sleep(0.5)
            continue
        if response.status_code < 500:
            assert response.status_code == 201, response.text
            return str(response.json()["id"])
        await asyncio.sleep(0.5)
    raise AssertionError(f"{path} could not create {body.get('title') or body.get('name')}")


def need(owner_id: str, n: int) -> dict[str, Any]:
    lat, lon = BESANCON
    return {
        "owner_id": owner_id,
        "title": f"Une ressourcerie pour le quartier {n}",
        "kind": "partnership",
        "description": "Collecte et revente d'objets de seconde main, réemploi",
        "themes": ["reemploi"],
        "service_types": ["fourniture_biens"],
        "commune_code": "25056",
        "location": {"lat": lat + random.uniform(-0.05, 0.05), "lon": lon + random.uniform(-0.05, 0.05)},
        "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
    }


def ressourcerie(n: int) -> dict[str, Any]:
    lat, lon = BESANCON
    return actor(
        name=f"Ressourcerie {n}",
        siret=unique_siret(),
        activities=[],
        # Scattered: distinct distances, hence distinct scores (ties would make the expected top K arbitrary).
        location={"lat": lat + random.uniform(-0.15, 0.15), "lon": lon + random.uniform(-0.15, 0.15)},
        contact={"email": f"ressourcerie-{n}@example.org"},
    )


async def group_members(admin: AIOKafkaAdminClient, group: str) -> int:
    """Members of a consumer group in a stable state (0 while it rebalances)."""
    response = (await admin.describe_consumer_groups([group]))[0]
    _error, _group, state, _protocol_type, _protocol, members, *_ = response.groups[0]
    return len(members) if state == "Stable" else 0


async def expected_matches(conn: asyncpg.Connection, need_id: uuid.UUID, settings: Settings) -> set[uuid.UUID]:
    """The need's top K by the final replica: actors that must be among its matches whatever the order of arrival.

    An actor of the final top K ranks in the top K of any subset holding it: matched when the need was, or
    joining its matches when it arrived later (`ranks_in_top`).
    """
    loaded = await store.load_need(conn, need_id)
    assert loaded is not None
    weights = Weights.from_settings(settings)
    profile = planner.need_profile(loaded)
    scored: list[rules.Scored] = []
    for candidate in await planner.candidates(conn, loaded, weights, 10_000):  # every eligible actor
        result = evaluate(profile, candidate, weights)
        if rules.kept(result, settings.match_min_score):
            scored.append((candidate, result.score, []))
    return {uuid.UUID(a.id) for a, _, _ in rules.top(scored, settings.match_k)}


async def test_two_workers_one_killed_mid_stream_match_every_need_once_in_order_and_deliver_every_webhook(
    postgres_url: str, private_broker: PrivateBroker, tmp_path: Path
) -> None:
    own = private_broker.settings(_test_settings(match_k=MATCH_K), outbox_poll_interval_s=0.2)
    urls = await fresh_databases(postgres_url, ("directory", "matching"), "rebalance")
    await ensure_topics(own)
    receiver = Receiver("")
    receiver_server, receiver_task, receiver_port = await serve(receiver)
    receiver.url = f"http://127.0.0.1:{receiver_port}"
    env = process_env(own, urls, MAILLAGE_MATCH_K=str(MATCH_K), MAILLAGE_WEBHOOK_RETRY_BASE_S="0.05")
    ports = {name: free_port() for name in ("directory", "api", "a", "b")}
    admin_headers = forwarded(own, Role.ADMIN)
    kafka_admin = AIOKafkaAdminClient(bootstrap_servers=own.kafka_bootstrap)
    await kafka_admin.start()
    directory_db = await asyncpg.connect(urls["directory"])
    matching_db = await connect(urls["matching"])  # with the JSON codecs (store.load_need)
    workers = {
        name: spawn("matching", "worker", env, ports[name], tmp_path / f"worker-{name}.log") for name in ("a", "b")
    }
    try:
        with (
            service("directory", "all", env, ports["directory"], tmp_path / "directory.log"),
            service("matching", "api", env, ports["api"], tmp_path / "api.log"),
        ):
            for port in ports.values():
                await wait_healthy(port)

            async def both_in_groups() -> bool:
                return all([await group_members(kafka_admin, g) == 2 for g in GROUPS])

            assert await eventually(both_in_groups, 90, 0.5), "the two workers never shared their groups"

            directory = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['directory']}", timeout=15)
            api = httpx.AsyncClient(base_url=f"http://127.0.0.1:{ports['api']}", timeout=15)
            async with directory, api:
                authorities = [
                    await post_once(
                        directory,
                        "/v1/actors",
                        actor(
                            name=f"Ville {n}",
                            kind="local_authority",
                            legal_form="Commune",
                            themes=[],
                            service_types=[],
                            activities=[],
                            qpv_code=None,
                            contact={"email": f"mairie-{n}@example.org"},
                        ),
                        admin_headers,
                    )
                    for n in range(AUTHORITIES)
                ]

                async def authorities_replicated() -> bool:
                    count = await matching_db.fetchval(
                        "SELECT count(*) FROM actors WHERE id = ANY($1::uuid[])", authorities
                    )
                    return bool(count == AUTHORITIES)

                assert await eventually(authorities_replicated, 60), "the authorities never reached matching"
                partner = forwarded(own, Role.PARTNER, subject="partner-rebalance")
                endpoints = {"/found": ["match.found"], "/both": ["match.found", "need.published"]}
                receiver.scripts["/both"] = [500]  # each of its deliveries is retried once
                endpoint_ids = {}
                for path, types in endpoints.items():
                    created = await api.post(
                        "/v1/webhooks", json={"url": receiver.url + path, "event_types": types}, headers=partner
                    )
                    assert created.status_code == 201, created.text
                    endpoint_ids[path] = uuid.UUID(created.json()["id"])

                # Needs and actors keep arriving; halfway, one worker dies without a word (SIGKILL).
                needs: list[str] = []
                actors: list[str] = []
                killed_at: float | None = None
                before_kill = (0, 0)  # (matches stored, webhook requests received) when the worker died
                started = time.monotonic()
                n = 0
                while time.monotonic() - started < STREAM_S:
                    needs.append(await post_once(api, "/v1/needs", need(random.choice(authorities), n), admin_headers))
                    actors.append(await post_once(directory, "/v1/actors", ressourcerie(n), admin_headers))
                    n += 1
                    if killed_at is None and time.monotonic() - started >= STREAM_S / 2:
                        os.killpg(workers["a"].pid, signal.SIGKILL)
                        workers["a"].wait(10)
                        killed_at = time.monotonic() - started
                        before_kill = (
                            await matching_db.fetchval("SELECT count(*) FROM matches"),
                            len(receiver.received),
                        )
                    await asyncio.sleep(PACE_S)

            # The group rebalances onto the survivor.
            async def survivor_alone() -> bool:
                return all([await group_members(kafka_admin, g) == 1 for g in GROUPS])

            assert await eventually(survivor_alone, 60, 0.5), "the groups never rebalanced onto the survivor"
            assert workers["b"].poll() is None, "the surviving worker died"

            async def settled() -> bool:
                unsent = await directory_db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                unsent += await matching_db.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
                engine = await matching_db.fetchval(
                    "SELECT count(*) FROM processed_events WHERE consumer = 'matching-engine'"
                    " AND ce_source = '/maillage/matching'"
                )
                replicated = await matching_db.fetchval(
                    "SELECT count(*) FROM actors WHERE id = ANY($1::uuid[])", actors
                )
                # Every public event the notifier must fan out has been fanned out, and every delivery is done.
                notified = await matching_db.fetchval(
                    "SELECT count(*) FROM outbox o WHERE NOT EXISTS (SELECT 1 FROM processed_events p"
                    " WHERE p.consumer = 'matching-notifier' AND p.ce_id = o.ce_id::text)"
                )
                undelivered = await matching_db.fetchval(
                    "SELECT count(*) FROM webhook_deliveries WHERE status <> 'delivered'"
                )
                return bool(
                    unsent == 0
                    and engine == len(needs)
                    and replicated == len(actors)
                    and notified == 0
                    and undelivered == 0
                )

            assert await eventually(settled, 240, 0.5), "the survivor did not finish the work"
            await asyncio.sleep(1.0)  # nothing more arrives

            # --- every need once, matched once ----------------------------------------------------------------
            assert len(set(needs)) == len(needs)
            stored_needs = {r["id"] for r in await matching_db.fetch("SELECT id FROM needs")}
            assert stored_needs == {uuid.UUID(x) for x in needs}  # one need per publication, retries included
            matches = await matching_db.fetch("SELECT id, need_id, actor_id, status FROM matches")
            assert len({(m["need_id"], m["actor_id"]) for m in matches}) == len(matches), "a pair matched twice"
            assert all(m["status"] == "notified" for m in matches)  # nobody answered: every match was announced
            matched: dict[uuid.UUID, set[uuid.UUID]] = defaultdict(set)
            for m in matches:
                matched[m["need_id"]].add(m["actor_id"])
            missing = {}
            expecting = 0
            for need_id in stored_needs:
                expected = await expected_matches(matching_db, need_id, own)
                expecting += bool(expected)
                if not expected <= matched[need_id]:
                    missing[need_id] = expected - matched[need_id]
            assert not missing, f"needs without matches they should have: {missing}"
            assert expecting > len(stored_needs) // 2  # the expectation is not empty: real matching happened
            # Killed mid-work: it had matched and delivered, and work was left to the survivor.
            assert 0 < before_kill[0] < len(matches) and 0 < before_kill[1] < len(receiver.received), before_kill

            found = await matching_db.fetch(
                "SELECT id, ce_id::text, key, data FROM outbox WHERE ce_type LIKE '%match.found' ORDER BY id"
            )
            assert sorted(r["data"]["match"]["id"] for r in found) == sorted(str(m["id"]) for m in matches)

            # --- a need's matches in order on its partition ----------------------------------------------------
            outbox_id = {r["ce_id"]: r["id"] for r in found}
            records = await read_topic(own, MATCH, expect=len(found), timeout_s=60, idle_s=1.0)
            partitions: dict[str, set[int]] = defaultdict(set)
            first_seen: dict[str, list[int]] = defaultdict(list)  # need key -> outbox ids, in offset order
            seen: set[str] = set()
            redelivered = 0
            for record in sorted(records, key=lambda r: (r.partition, r.offset)):
                ce_id = header(record, "ce_id")
                if ce_id is None or ce_id not in outbox_id:
                    continue
                key = record.key.decode() if record.key else ""
                partitions[key].add(record.partition)
                if ce_id in seen:  # a redelivery of the relay (at-least-once) is not a reordering
                    redelivered += 1
                    continue
                seen.add(ce_id)
                first_seen[key].append(outbox_id[ce_id])
            assert seen == set(outbox_id), "match.found events missing from the match topic"
            assert all(len(p) == 1 for p in partitions.values()), "one need's matches on several partitions"
            disordered = {k: ids for k, ids in first_seen.items() if ids != sorted(ids)}
            assert not disordered, f"matches of a need out of order on its partition: {disordered}"

            # --- every webhook delivered, one id per (endpoint, event) ----------------------------------------
            events = await matching_db.fetch("SELECT ce_id::text, ce_type FROM outbox")
            wanted = {
                (path, e["ce_id"])
                for path, types in endpoints.items()
                for e in events
                if public_type(e["ce_type"]) in types
            }
            ids: dict[tuple[str, str], set[str]] = defaultdict(set)
            for path, headers, content in receiver.received:
                if content:  # an empty body is a request cut short by the kill
                    ids[(path, orjson.loads(content)["id"])].add(headers["webhook-id"])
            assert set(ids) == wanted, f"{len(wanted - set(ids))} (endpoint, event) never delivered"
            assert all(len(v) == 1 for v in ids.values()), "one (endpoint, event) under several webhook-ids"
            assert all(v == {webhooks.delivery_id(endpoint_ids[path], event_id)} for (path, event_id), v in ids.items())
            assert len({i for v in ids.values() for i in v}) == len(wanted)  # distinct across endpoints too
            assert all(count >= 2 for count in receiver.ids("/both").values())  # the 500 was retried
            print(
                f"{len(needs)} needs, {len(actors)} actors in {STREAM_S:.0f} s, worker killed at {killed_at:.1f} s"
                f" ({before_kill[0]} matches, {before_kill[1]} webhook requests by then);"
                f" {len(matches)} matches, {len(wanted)} webhooks ({len(receiver.received)} requests),"
                f" {redelivered} match.found records published twice"
            )
    finally:
        for worker in workers.values():
            stop_process(worker, timeout_s=30)
        await kafka_admin.close()
        await directory_db.close()
        await matching_db.close()
        receiver_server.should_exit = True
        with contextlib.suppress(Exception):
            await asyncio.wait_for(receiver_task, 10)
