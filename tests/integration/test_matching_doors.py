"""The doors' data on the matching replica: concepts computed from an actor's own words, refreshed after upgrade."""

from __future__ import annotations

import uuid

import pytest

from services.common.db import connect, ensure_database, migrate
from services.common.settings import with_database
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
    finally:
        await conn.close()
