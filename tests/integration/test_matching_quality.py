"""Matching quality: the demo needs, matched by the real engine over the demo actors, reach their expected top 5."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.common.db import create_pool, ensure_database, migrate
from services.common.settings import Settings, with_database
from services.contracts import territories
from services.contracts.events import ActorV1
from services.directory.demo import demo_actor_id, demo_actors
from services.matching import engine, store
from services.matching.demo import DEMO_NEEDS, DemoNeed
from services.matching.model import NeedCreate


@pytest.fixture(scope="module")
async def replica(postgres_url: str) -> AsyncIterator[tuple[asyncpg.Pool, dict[str, ActorV1]]]:
    """A matching database whose replica holds exactly the demo actors."""
    url = with_database(postgres_url, f"maillage_matching_quality_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    await migrate(url, ["services.common", "services.matching"])
    pool = await create_pool(url, min_size=1, max_size=2)
    actors = {}
    async with pool.acquire() as conn:
        for source_id, actor in demo_actors():
            assert await store.upsert_actor(conn, actor)
            actors[source_id] = actor
    try:
        yield pool, actors
    finally:
        await pool.close()


async def top5(pool: asyncpg.Pool, demo: DemoNeed, actors: dict[str, ActorV1], settings: Settings) -> list[str]:
    authority = actors[f"demo-authority-{demo.authority}"]
    assert authority.location is not None
    body = NeedCreate.model_validate(demo.body(authority.location.model_dump()))
    by_id = {actor.id: source_id for source_id, actor in actors.items()}
    async with pool.acquire() as conn, conn.transaction():
        need_id = (await store.insert_need(conn, uuid.UUID(authority.id), body))["id"]
        await engine.match_need(conn, need_id, settings)
        rows = await store.list_matches(conn, need_id=need_id)
    return [by_id[str(row["actor_id"])] for row in rows[:5]]


@pytest.mark.parametrize("demo", DEMO_NEEDS, ids=[d.title for d in DEMO_NEEDS])
async def test_demo_need_reaches_its_expected_top5(
    replica: tuple[asyncpg.Pool, dict[str, ActorV1]], settings: Settings, demo: DemoNeed
) -> None:
    pool, actors = replica
    got = await top5(pool, demo, actors, settings)
    # Whatever the order, every one shares a theme with the need and is eligible where it is.
    place = set(territories.territories_of_commune(demo.authority))
    for source_id in got:
        actor = actors[source_id]
        assert set(demo.themes) & {*actor.themes, *(a.theme for a in actor.activities)}, source_id
        assert actor.kind != "local_authority", source_id
        national = any(a.area.kind == "national" for a in actor.activities)
        assert national or set(actor.territories) & place or demo.radius_km or demo.perimeter, source_id
    assert got == demo.expected_top5


def test_demo_ids_are_stable() -> None:
    assert demo_actor_id("demo-25056-00") == demo_actor_id("demo-25056-00")
    assert len({demo_actor_id(s) for s, _ in demo_actors()}) == len(demo_actors())
