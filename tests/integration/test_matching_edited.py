"""An edited need keeps only the actors it still takes: its unanswered matches that the edit leaves out are withdrawn
(and announced so), an answered one stays, and none is proposed or announced twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.quality import actor_id, load_set
from services.common.settings import Settings
from services.matching import service, store
from services.matching.model import MatchStatus, NeedUpdate
from tests.integration.matching_fixtures import quality_replica


@pytest.fixture
async def replica(postgres_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with quality_replica(postgres_url, "matching_edited", 1) as pool:
        yield pool


async def events(conn: asyncpg.Connection, kind: str, need_id: uuid.UUID) -> list[str]:
    """The actor ids of the need's events of this kind (`match.found`, `match.withdrawn`) in the outbox, one per
    event."""
    rows = await conn.fetch(
        """SELECT data->'match'->>'actor_id' AS actor_id FROM outbox
           WHERE ce_type LIKE $1 AND data->'match'->>'need_id' = $2 ORDER BY id""",
        f"%{kind}%",
        str(need_id),
    )
    return [r["actor_id"] for r in rows]


async def statuses(conn: asyncpg.Connection, need_id: uuid.UUID) -> dict[str, str]:
    return {str(r["actor_id"]): r["status"] for r in await store.list_matches(conn, need_id=need_id)}


async def edit(conn: asyncpg.Connection, need_id: uuid.UUID, **changes: object) -> None:
    row = await store.get_need(conn, need_id)
    assert row is not None
    need = await store.load_need(conn, need_id)
    assert need is not None
    fields = {name: value for name, value in need.model_dump(mode="json").items() if name in NeedUpdate.model_fields}
    body = NeedUpdate.model_validate({**fields, **changes})
    assert await store.update_need(conn, need_id, body, row["version"]) is not None


async def test_an_edit_withdraws_the_unanswered_matches_it_leaves_out_and_keeps_the_answers(
    replica: asyncpg.Pool,
) -> None:
    settings = Settings(_env_file=None)
    quality = load_set()
    kinds = {actor_id(source): actor.kind for source, actor in quality.pool.items()}
    async with replica.acquire() as conn, conn.transaction():
        # The first need of the set whose matches hold one kind twice and some other kind: that kind is left out.
        for need in quality.needs:
            authority = quality.pool[need.authority]
            row = await store.insert_need(conn, uuid.UUID(actor_id(need.authority)), need.body(authority))
            need_id = uuid.UUID(str(row["id"]))
            await service.match_need(conn, need_id, settings)
            first = await statuses(conn, need_id)
            by_kind: dict[str, list[str]] = {}
            for matched in first:
                by_kind.setdefault(kinds[matched], []).append(matched)
            out = next((kind for kind, actors in sorted(by_kind.items()) if len(actors) >= 2), None)
            if out is not None and len(by_kind) >= 2:
                break
        else:
            pytest.fail("no need of the quality set has matches of two kinds, one of them twice")
        answered, *unanswered = by_kind[out]
        [match] = await store.list_matches(conn, need_id=need_id, actor_id=uuid.UUID(answered))
        await store.set_match_status(conn, match["id"], MatchStatus.interested, "Nous sommes intéressés")
        found = await events(conn, "match.found", need_id)
        # The need is reserved to the other kinds; matching it again as edited withdraws the left-out actors
        # that had not answered, and only them.
        await edit(conn, need_id, eligible_kinds=sorted(set(by_kind) - {out}))
        await service.match_need(conn, need_id, settings, edited=True)
        after = await statuses(conn, need_id)
        assert {a for a, status in after.items() if status == "withdrawn"} == set(unanswered)
        assert after[answered] == "interested"  # an answer stays, for the owner to weigh
        assert all(after[a] == first[a] for a in first if kinds[a] != out)
        assert sorted(await events(conn, "match.withdrawn", need_id)) == sorted(unanswered)
        # Matched again, as edited or not, and even once the reservation is lifted: nothing withdrawn twice, and
        # no withdrawn actor proposed or announced again.
        await service.match_need(conn, need_id, settings, edited=True)
        await edit(conn, need_id, eligible_kinds=[])
        await service.match_need(conn, need_id, settings, edited=True)
        again = await statuses(conn, need_id)
        assert all(again[a] == "withdrawn" for a in unanswered)
        assert sorted(await events(conn, "match.withdrawn", need_id)) == sorted(unanswered)
        announced = await events(conn, "match.found", need_id)
        assert announced[: len(found)] == found and not set(announced[len(found) :]) & set(first)
