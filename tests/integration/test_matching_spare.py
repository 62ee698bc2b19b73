"""Door probes on a spare connection: the same candidates as on the match's own, and never a wait for a busy pool."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import asyncpg
import pytest

from bench.quality import actor_id, load_set
from services.common.settings import Settings
from services.matching import planner, service, store
from services.matching.scoring import Weights
from tests.integration.matching_fixtures import quality_replica


class CountingPool:
    """A pool that counts the connections lent to the spare door probes."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool, self.lent = pool, 0

    def get_idle_size(self) -> int:
        return int(self.pool.get_idle_size())

    async def acquire(self, *, timeout: float | None = None) -> asyncpg.Connection:  # noqa: ASYNC109 - asyncpg's signature
        self.lent += 1
        return await self.pool.acquire(timeout=timeout)

    async def release(self, conn: Any) -> None:
        await self.pool.release(conn)


@pytest.fixture
async def replica(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with quality_replica(postgres_url, "matching_spare", 2) as pool:
        yield pool


async def test_door_probes_on_a_spare_connection_find_the_same_candidates(replica: asyncpg.Pool) -> None:
    quality = load_set()
    settings = Settings(_env_file=None)
    weights = Weights.from_settings(settings)
    limit = settings.match_k * service.CANDIDATE_FACTOR
    spare = CountingPool(replica)
    with_doors = 0
    async with replica.acquire() as conn:
        for need in quality.needs:
            transaction = conn.transaction()  # rolled back: the spare connection never reads the need
            await transaction.start()
            try:
                row = await store.insert_need(
                    conn, uuid.UUID(actor_id(need.authority)), need.body(quality.pool[need.authority])
                )
                loaded = await store.load_need(conn, row["id"])
                assert loaded is not None
                alone = await planner.candidates(conn, loaded, weights, limit, settings.match_door_budget)
                beside = await planner.candidates(
                    conn, loaded, weights, limit, settings.match_door_budget, cast(asyncpg.Pool, spare)
                )
                assert [a.id for a in beside] == [a.id for a in alone], need.id
                assert [a.text_relevance for a in beside] == [a.text_relevance for a in alone], need.id
                with_doors += bool(await planner.door_candidates(conn, loaded, weights, settings.match_door_budget))
            finally:
                await transaction.rollback()
    assert spare.lent == len(quality.needs)  # every match had the idle connection
    assert with_doors >= 20  # most needs open a door: the comparison covers the door probes


async def test_a_busy_pool_lends_no_spare_connection_and_is_not_waited_for(replica: asyncpg.Pool) -> None:
    async with replica.acquire(), replica.acquire():  # both connections held
        started = time.perf_counter()
        async with planner.spare_connection(replica) as side:
            assert side is None
        assert time.perf_counter() - started < 0.5
    async with planner.spare_connection(replica) as side:
        assert side is not None and await side.fetchval("SELECT 1") == 1
    assert replica.get_idle_size() == 2  # given back
