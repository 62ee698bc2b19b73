"""A need no candidate really answers gets no match, until an actor that answers it arrives (then once each)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.quality import actor_id, actor_state, load_set
from services.common.settings import Settings
from services.matching import service, store
from tests.integration.matching_fixtures import quality_replica

DENTAL = "mul-centre-dentaire"  # a dental centre in Mulhouse: only a mutual insurer and a sport club share "santé"
NEWCOMERS = ("mul-gym-douce", "mul-dentistes")


@pytest.fixture
async def replica(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with quality_replica(postgres_url, "matching_answered", 1) as pool:
        yield pool


def settings(**changes: float) -> Settings:
    return Settings(_env_file=None).model_copy(update=changes)


async def publish(conn: asyncpg.Connection, need_id: str) -> uuid.UUID:
    quality = load_set()
    need = next(n for n in quality.needs if n.id == need_id)
    row = await store.insert_need(conn, uuid.UUID(actor_id(need.authority)), need.body(quality.pool[need.authority]))
    return uuid.UUID(str(row["id"]))


def newcomer(source: str, name: str, description: str, version: int = 1) -> object:
    """A Mulhouse actor of the "santé" theme, as the directory would publish it."""
    quality = load_set()
    base = quality.pool["mul-sport-sante"]
    actor = base.model_copy(update={"name": name, "description": description})
    return actor_state(source, actor, False).model_copy(update={"version": version})


async def matched(conn: asyncpg.Connection, need_id: uuid.UUID) -> dict[str, str]:
    by_id = {actor_id(source): source for source in [*load_set().pool, *NEWCOMERS]}
    rows = await store.list_matches(conn, need_id=need_id)
    return {by_id.get(str(r["actor_id"]), str(r["actor_id"])): r["status"] for r in rows}


async def found_events(conn: asyncpg.Connection) -> list[str]:
    """The actor ids of the `match.found` events in the outbox, one per event."""
    rows = await conn.fetch(
        "SELECT data->'match'->>'actor_id' AS actor_id FROM outbox WHERE ce_type LIKE '%match.found%' ORDER BY id"
    )
    return [r["actor_id"] for r in rows]


async def test_a_need_whose_candidates_only_share_a_theme_gets_no_match(replica: asyncpg.Pool) -> None:
    async with replica.acquire() as conn, conn.transaction():
        need_id = await publish(conn, DENTAL)
        assert await service.match_need(conn, need_id, settings()) == 0
        assert await matched(conn, need_id) == {}
        # With the rule off, the two actors that only share "santé" are proposed: the rule is what keeps them out.
        assert await service.match_need(conn, need_id, settings(match_min_answering_evidence=0.0)) == 2
        assert set(await matched(conn, need_id)) == {"mul-sport-sante", "mul-mutuelle"}


async def test_an_actor_that_answers_it_brings_the_need_its_matches_once_each(replica: asyncpg.Pool) -> None:
    config = settings()
    async with replica.acquire() as conn, conn.transaction():
        need_id = await publish(conn, DENTAL)
        assert await service.match_need(conn, need_id, config) == 0
        # Another actor that only shares the theme does not make it answered.
        gym = newcomer("mul-gym-douce", "Gym douce Mulhouse", "Gymnastique douce pour les personnes âgées.")
        assert await service.apply_actor(conn, gym, config)  # type: ignore[arg-type]
        assert await matched(conn, need_id) == {}
        # A dental centre arrives: it answers, and the need is matched whole, as if published after it.
        dentists = newcomer(
            "mul-dentistes", "Centre dentaire mutualiste", "Centre de santé dentaire : dentistes salariés, soins."
        )
        assert await service.apply_actor(conn, dentists, config)  # type: ignore[arg-type]
        first = await matched(conn, need_id)
        # The gym that only shares the theme comes with it, as a second choice.
        assert set(first) == {"mul-dentistes", "mul-gym-douce", "mul-sport-sante", "mul-mutuelle"}
        best = (await store.list_matches(conn, need_id=need_id))[0]
        assert str(best["actor_id"]) == actor_id("mul-dentistes")  # the real answer ranks first
        events = await found_events(conn)
        assert len(events) == len(set(events)) == len(first)  # each match announced once
        # Its next version, and matching the need again, add nothing and announce nothing.
        again = newcomer(
            "mul-dentistes", "Centre dentaire mutualiste", "Centre de santé dentaire : dentistes, soins.", version=2
        )
        assert await service.apply_actor(conn, again, config)  # type: ignore[arg-type]
        assert await service.match_need(conn, need_id, config) == 0
        assert await matched(conn, need_id) == first
        assert await found_events(conn) == events
