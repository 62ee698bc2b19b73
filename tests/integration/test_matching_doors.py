"""The doors' data on the matching replica: concepts computed from an actor's own words, refreshed after upgrade."""

from __future__ import annotations

import uuid

import pytest

from services.common.db import connect, ensure_database, migrate
from services.common.settings import with_database
from services.contracts import synonyms
from services.directory.demo import demo_actors
from services.matching import store


@pytest.fixture
async def url(postgres_url: str) -> str:
    database = with_database(postgres_url, f"maillage_matching_doors_{uuid.uuid4().hex[:8]}")
    await ensure_database(database)
    await migrate(database, ["services.common", "services.matching"])
    return database


async def test_concepts_come_from_the_description_not_the_name_and_a_same_version_refreshes_null(url: str) -> None:
    _, actor = demo_actors()[0]
    # Without activities: their labels are words of the actor too ("Réemploi et ressourceries").
    plain = actor.model_copy(update={"activities": [], "themes": ["culture"]})
    trap = plain.model_copy(update={"name": "La Ressourcerie des Idées", "description": "Incubateur de projets"})
    shop = plain.model_copy(
        update={"id": str(uuid.uuid4()), "name": "Atelier", "description": "Recyclerie : dons, tri et revente"}
    )
    conn = await connect(url)
    try:
        assert await store.upsert_actor(conn, trap) and await store.upsert_actor(conn, shop)
        concepts = "SELECT concepts FROM actors WHERE id = $1"
        assert "ressourcerie" not in (await conn.fetchval(concepts, uuid.UUID(trap.id)))
        assert "ressourcerie" in (await conn.fetchval(concepts, uuid.UUID(shop.id)))
        assert not await store.upsert_actor(conn, shop)  # same version: not applied again
        await conn.execute("UPDATE actors SET concepts = NULL WHERE id = $1", uuid.UUID(shop.id))  # as before 0007
        assert await store.upsert_actor(conn, shop)  # what `maillage rebuild matching` does for it
        assert "ressourcerie" in (await conn.fetchval(concepts, uuid.UUID(shop.id)))
        older = shop.model_copy(update={"version": shop.version - 1, "description": "Épicerie"})
        await conn.execute("UPDATE actors SET concepts = NULL WHERE id = $1", uuid.UUID(shop.id))
        assert not await store.upsert_actor(conn, older)  # an older state never replaces a newer one
        assert await store.upsert_actor(conn, shop)
        assert "ressourcerie" in (await conn.fetchval(concepts, uuid.UUID(shop.id)))
    finally:
        await conn.close()


async def test_the_replica_keeps_each_actors_text_keys_and_reads_them_only_for_the_current_vocabulary(url: str) -> None:
    _, actor = demo_actors()[0]
    conn = await connect(url)
    try:
        assert await store.upsert_actor(conn, actor)
        row = await store.active_actor(conn, uuid.UUID(actor.id))
        assert row is not None
        activities = row["activities"]
        name_keys, body_keys, version = store.actor_text_keys(actor.name, actor.description, activities)
        assert (row["name_keys"], row["body_keys"], row["keys_version"]) == (name_keys, body_keys, version)
        assert body_keys and version == synonyms.KEYS_VERSION
        profile = store.actor_profile(row)
        assert profile.keys == (frozenset(name_keys), frozenset(body_keys))

        # Keys of another vocabulary (a release that changed a synonym) are not read, and a rebuild refreshes them.
        await conn.execute("UPDATE actor_texts SET keys_version = 'old', body_keys = '{}' WHERE id = $1", row["id"])
        stale = await store.active_actor(conn, uuid.UUID(actor.id))
        assert stale is not None and store.actor_profile(stale).keys is None
        assert await store.upsert_actor(conn, actor)
        fresh = await store.active_actor(conn, uuid.UUID(actor.id))
        assert fresh is not None and fresh["body_keys"] == body_keys and fresh["keys_version"] == version
        assert not await store.upsert_actor(conn, actor)  # current keys: the same state is not applied again
    finally:
        await conn.close()


async def test_the_replicas_gin_indexes_take_writes_without_a_pending_list(url: str) -> None:
    """Migration 0011: a pending list would be read whole by every probe of the index until a vacuum merged it."""
    _, actor = demo_actors()[0]
    conn = await connect(url)
    try:
        indexes = await conn.fetch(
            """SELECT c.relname, coalesce(c.reloptions, '{}') AS options
               FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid JOIN pg_am am ON am.oid = c.relam
               WHERE am.amname = 'gin' AND i.indrelid IN ('actors'::regclass, 'needs'::regclass)"""
        )
        # The probes' indexes (8 since migration 0012): a later migration's GIN must say fastupdate = off too.
        assert len(indexes) >= 8
        assert [r["relname"] for r in indexes if "fastupdate=off" not in r["options"]] == []
        await conn.execute("CREATE EXTENSION IF NOT EXISTS pgstattuple")
        for version in (1, 2):
            assert await store.upsert_actor(conn, actor.model_copy(update={"version": version}))
        pending = await conn.fetch(
            "SELECT relname, (pgstatginindex(oid)).pending_tuples FROM pg_class WHERE relname = ANY($1)",
            [r["relname"] for r in indexes],
        )
        assert {r["relname"]: r["pending_tuples"] for r in pending} == {r["relname"]: 0 for r in indexes}
    finally:
        await conn.close()
