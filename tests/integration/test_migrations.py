"""Plain-SQL migrations: applied once each, in a transaction, refused when edited after the fact."""

from __future__ import annotations

import uuid
from pathlib import Path

import asyncpg
import pytest

from services.common.db import ensure_database, migrate
from services.common.settings import with_database


@pytest.fixture
async def empty_database(postgres_url: str) -> str:
    url = with_database(postgres_url, f"maillage_mig_{uuid.uuid4().hex[:8]}")
    assert await ensure_database(url) is True
    assert await ensure_database(url) is False
    return url


async def test_each_migration_is_applied_once_and_recorded(empty_database: str) -> None:
    first = await migrate(empty_database, ["services.common"])
    again = await migrate(empty_database, ["services.common"])
    files = sorted(p.name for p in (Path(__file__).parents[2] / "services/common/migrations").glob("*.sql"))
    assert first == [f"services.common/{name}" for name in files] and first[0] == "services.common/0001_messaging.sql"
    assert again == []
    conn = await asyncpg.connect(empty_database)
    try:
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(files)
        extensions = {r["extname"] for r in await conn.fetch("SELECT extname FROM pg_extension")}
        assert {"pg_trgm", "unaccent", "cube", "earthdistance", "btree_gist", "intarray"} <= extensions
    finally:
        await conn.close()


async def test_an_applied_migration_that_changed_is_refused(empty_database: str) -> None:
    await migrate(empty_database, ["services.common"])
    conn = await asyncpg.connect(empty_database)
    try:
        await conn.execute("UPDATE schema_migrations SET checksum = 'edited'")
    finally:
        await conn.close()
    with pytest.raises(RuntimeError, match="changed after it was applied"):
        await migrate(empty_database, ["services.common"])
