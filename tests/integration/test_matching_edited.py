"""Matches follow edits: an edited need, or a changed actor, withdraws the unanswered matches the change leaves out
(announced so), an archived actor all it had not won; an answer to an edited need stays, and no actor is proposed or
announced twice."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from bench.quality import actor_id, actor_state, load_set
from services.common.settings import Settings
from services.contracts.events import ActorV1
from services.directory.model import ActorCreate
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


def changed(source: str, version: int, changes: dict[str, object] | None = None, archived: bool = False) -> ActorV1:
    """The quality pool's actor `source` at a later version, as the directory would publish it."""
    base = load_set().pool[source]
    actor = ActorCreate.model_validate({**base.model_dump(mode="json"), **(changes or {})})
    return actor_state(source, actor, archived).model_copy(update={"version": version})


async def test_a_changed_actor_leaves_the_needs_it_no_longer_fits_and_an_archived_one_all_it_had_not_won(
    replica: asyncpg.Pool,
) -> None:
    settings = Settings(_env_file=None)
    quality = load_set()
    by_id = {actor_id(source): source for source in quality.pool}
    async with replica.acquire() as conn, conn.transaction():
        for need in quality.needs:  # the first need of the set with three matches
            row = await store.insert_need(
                conn, uuid.UUID(actor_id(need.authority)), need.body(quality.pool[need.authority])
            )
            need_id = uuid.UUID(str(row["id"]))
            await service.match_need(conn, need_id, settings)
            first = await statuses(conn, need_id)
            if len(first) >= 3:
                break
        else:
            pytest.fail("no need of the quality set has three matches")
        moved, archived, touched = (by_id[a] for a in list(first)[:3])
        [match] = await store.list_matches(conn, need_id=need_id, actor_id=uuid.UUID(actor_id(archived)))
        await store.set_match_status(conn, match["id"], MatchStatus.interested, "Avec plaisir")
        # One moves to Ajaccio and does something else; one is archived after saying yes; one rewords itself.
        elsewhere: dict[str, object] = {
            "commune_code": "2A004",
            "location": {"lat": 41.9192, "lon": 8.7386},
            "themes": ["sport"],
            "activities": [],
            "description": "Club d'échecs et de tarot.",
        }
        for state in (
            changed(moved, 2, elsewhere),
            changed(archived, 2, archived=True),
            changed(touched, 2, {"description": f"{quality.pool[touched].description} Ouvert le samedi."}),
        ):
            assert await service.apply_actor(conn, state, settings)
        after = await statuses(conn, need_id)
        assert after[actor_id(moved)] == "withdrawn"
        assert after[actor_id(archived)] == "withdrawn"  # archived: even its answer is withdrawn
        assert after[actor_id(touched)] == first[actor_id(touched)]
        assert all(after[a] == first[a] for a in first if a not in {actor_id(moved), actor_id(archived)})
        assert sorted(await events(conn, "match.withdrawn", need_id)) == sorted([actor_id(moved), actor_id(archived)])
        # Their next versions withdraw nothing twice and propose neither again.
        assert await service.apply_actor(conn, changed(moved, 3, {**elsewhere, "description": "Échecs."}), settings)
        assert await service.apply_actor(conn, changed(archived, 3), settings)  # active again, as it was
        assert (await statuses(conn, need_id))[actor_id(archived)] == "withdrawn"
        assert len(await events(conn, "match.withdrawn", need_id)) == 2
