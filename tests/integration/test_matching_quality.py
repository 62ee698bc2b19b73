"""Matching quality: the demo needs, matched by the real engine over the demo actors, reach their expected top 5,
each actor naming the door it came through."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest

from services.common.db import create_pool, ensure_database, migrate
from services.common.settings import Settings, with_database
from services.contracts import territories
from services.contracts.doors import DOOR_LABELS, Door
from services.contracts.events import ActorV1
from services.directory.demo import demo_actor_id, demo_actors
from services.matching import service, store
from services.matching.demo import DEMO_NEEDS, DemoNeed
from services.matching.model import NeedCreate
from services.matching.scoring import DOOR_REASON_CODES


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


def doors_named(reasons: list[dict[str, Any]]) -> set[Door]:
    """The doors a match's stored reasons name (scoring.DOOR_REASON_CODES, with the doors' own wording)."""
    named = set()
    for reason in reasons:
        for door, code in DOOR_REASON_CODES.items():
            label = "thème" if door is Door.shared_theme else DOOR_LABELS[door]  # "thème(s) partagé(s)"
            premises = door is not Door.service_type or "locaux" in reason["text"]  # the only door service type
            if reason["code"] == code and reason["text"].startswith(label) and premises:
                named.add(door)
    return named


async def top5(
    pool: asyncpg.Pool, demo: DemoNeed, actors: dict[str, ActorV1], settings: Settings
) -> list[tuple[str, list[dict[str, Any]]]]:
    authority = actors[f"demo-authority-{demo.authority}"]
    assert authority.location is not None
    body = NeedCreate.model_validate(demo.body(authority.location.model_dump()))
    by_id = {actor.id: source_id for source_id, actor in actors.items()}
    async with pool.acquire() as conn, conn.transaction():
        need_id = (await store.insert_need(conn, uuid.UUID(authority.id), body))["id"]
        await service.match_need(conn, need_id, settings)
        rows = await store.list_matches(conn, need_id=need_id)
    return [(by_id[str(row["actor_id"])], list(row["reasons"])) for row in rows[:5]]


@pytest.mark.parametrize("demo", DEMO_NEEDS, ids=[d.title for d in DEMO_NEEDS])
async def test_demo_need_reaches_its_expected_top5(
    replica: tuple[asyncpg.Pool, dict[str, ActorV1]], settings: Settings, demo: DemoNeed
) -> None:
    pool, actors = replica
    ranked = await top5(pool, demo, actors, settings)
    got = [source_id for source_id, _ in ranked]
    # Whatever the order, every one names the door it came through and is eligible where it is.
    place = set(territories.territories_of_commune(demo.authority))
    for source_id, reasons in ranked:
        actor = actors[source_id]
        assert doors_named(reasons), (source_id, reasons)
        assert actor.kind != "local_authority", source_id
        national = any(a.area.kind == "national" for a in actor.activities)
        assert national or set(actor.territories) & place or demo.radius_km or demo.perimeter, source_id
    assert got == demo.expected_top5


def test_demo_ids_are_stable() -> None:
    assert demo_actor_id("demo-25056-00") == demo_actor_id("demo-25056-00")
    assert len({demo_actor_id(s) for s, _ in demo_actors()}) == len(demo_actors())
