"""A consumer 10,000 actor events behind on Apache Kafka catches up within a measured bound, its lag gauge falling to 0."""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from pathlib import Path

import asyncpg
import httpx
import pytest

from services.common.auth import Role
from services.common.embedded import free_port, stop_process
from services.common.kafka import ensure_topics
from services.contracts.topics import ACTOR, TOPICS
from tests.conftest import ON_APACHE_KAFKA, _test_settings
from tests.integration.conftest import PrivateBroker
from tests.integration.identities import forwarded
from tests.integration.kafka_processes import consumer_lag, fresh_databases, process_env, service, spawn, wait_healthy
from tests.integration.kafka_tools import eventually
from tests.integration.test_directory_api import actor, unique_siret

pytestmark = pytest.mark.skipif(
    not ON_APACHE_KAFKA, reason="Apache Kafka only (MAILLAGE_TEST_BROKER=kafka): its group offsets and lag"
)

BEHIND = 10_000  # actor events published while the consumer is down
IMPORT_BATCH = 2_500  # rows per bulk import request
DRAIN_BOUND_S = 180.0  # generous: measured 81 s on a loaded 2-core machine (printed on each run)
CONSUMER = "events-replica"
PARTITIONS = next(spec.partitions for spec in TOPICS if spec.name == ACTOR)


def csv_rows(tag: str, start: int, count: int) -> str:
    lines = ["source_id,name,kind,commune_code"]
    lines += [f"{tag}-{n},Acteur en retard {n},association,25056" for n in range(start, start + count)]
    return "\n".join(lines) + "\n"


async def test_a_consumer_10000_events_behind_returns_to_zero_lag_and_its_metrics_show_it_falling(
    postgres_url: str, private_broker: PrivateBroker, tmp_path: Path
) -> None:
    own = private_broker.settings(_test_settings(), outbox_poll_interval_s=0.2)
    urls = await fresh_databases(postgres_url, ("directory", "events"), "lag")
    await ensure_topics(own)
    env = process_env(own, urls)
    directory_port, events_port = free_port(), free_port()
    headers = forwarded(own, Role.ADMIN)
    directory_db = await asyncpg.connect(urls["directory"])
    events_db = await asyncpg.connect(urls["events"])
    try:
        with service("directory", "all", env, directory_port, tmp_path / "directory.log"):
            await wait_healthy(directory_port)
            worker = spawn("events", "worker", env, events_port, tmp_path / "events.log")
            try:
                # The group exists and has committed offsets: what follows is lag, not a first read.
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{directory_port}", timeout=30) as http:
                    first = await http.post("/v1/actors", json=actor(siret=unique_siret()), headers=headers)
                    assert first.status_code == 201, first.text

                    async def first_replicated() -> bool:
                        return bool(await events_db.fetchval("SELECT count(*) FROM actors") == 1)

                    assert await eventually(first_replicated, 90), "the events worker never applied the first actor"
                    stop_process(worker, timeout_s=30)

                    tag = uuid.uuid4().hex[:8]
                    for start in range(0, BEHIND, IMPORT_BATCH):
                        response = await http.post(
                            "/v1/actors/import",
                            content=csv_rows(tag, start, IMPORT_BATCH).encode(),
                            headers={**headers, "Content-Type": "text/csv"},
                            timeout=300,
                        )
                        assert response.status_code == 200, response.text
                        assert response.json()["created"] == IMPORT_BATCH, response.text

                async def all_published() -> bool:
                    return bool(
                        await directory_db.fetchval(
                            "SELECT count(*) FILTER (WHERE sent_at IS NULL) = 0 AND count(*) = $2 FROM outbox"
                            " WHERE topic = $1",
                            ACTOR,
                            BEHIND + 1,
                        )
                    )

                assert await eventually(all_published, 180, 0.5), "the directory did not publish the import"
                assert await events_db.fetchval("SELECT count(*) FROM actors") == 1  # nobody consumed meanwhile

                # The consumer comes back 10,000 events behind: sample its lag until it reaches 0.
                worker = spawn("events", "worker", env, events_port, tmp_path / "events.log")
                started = time.monotonic()
                samples: list[tuple[float, float]] = []  # (seconds since start, lag summed over every partition)
                async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{events_port}", timeout=5) as metrics:
                    while time.monotonic() - started < DRAIN_BOUND_S:
                        try:
                            text = (await metrics.get("/metrics")).text
                        except httpx.HTTPError:  # not listening yet
                            await asyncio.sleep(0.2)
                            continue
                        lag = consumer_lag(text, CONSUMER, ACTOR)
                        if len(lag) == PARTITIONS:  # every partition reported once: the sum is the whole lag
                            samples.append((time.monotonic() - started, sum(lag.values())))
                            if samples[-1][1] == 0:
                                break
                        await asyncio.sleep(0.2)
                drained_s = time.monotonic() - started
                replicated = await events_db.fetchval("SELECT count(*) FROM actors")
                applied = await events_db.fetchval(
                    "SELECT count(*) FROM processed_events WHERE consumer = $1", CONSUMER
                )
            finally:
                stop_process(worker, timeout_s=30)
    finally:
        await directory_db.close()
        await events_db.close()

    assert samples, "the events worker's /metrics never showed its lag on every partition of the actor topic"
    lags = [lag for _, lag in samples]
    print(
        f"lag of {BEHIND} events: zero {drained_s:.1f} s after the consumer's start "
        f"(first full sample {samples[0][0]:.1f} s at lag {lags[0]:.0f}; {len(samples)} samples)"
    )
    assert lags[-1] == 0, f"lag still {lags[-1]:.0f} after {DRAIN_BOUND_S:.0f} s"
    assert drained_s < DRAIN_BOUND_S
    assert max(lags) >= BEHIND // 10, f"the metrics never showed the consumer behind: {lags}"
    assert all(later <= earlier for earlier, later in itertools.pairwise(lags)), lags  # never rising
    assert len(set(lags)) >= 3, f"the lag was not seen falling: {lags}"
    # Caught up for real: every event applied once, the replica holds every actor.
    assert (replicated, applied) == (BEHIND + 1, BEHIND + 1)
