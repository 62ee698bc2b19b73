"""The shared connection pool: a released connection comes back clean, without a reset round trip."""

from __future__ import annotations

import uuid

import asyncpg

from services.common.db import PooledConnection, create_pool, ensure_database
from services.common.settings import with_database


async def test_a_released_connection_is_rolled_back_without_a_reset_query(postgres_url: str) -> None:
    url = with_database(postgres_url, f"maillage_pool_{uuid.uuid4().hex[:8]}")
    await ensure_database(url)
    pool = await create_pool(url, min_size=1, max_size=1)
    try:
        await pool.execute("CREATE TABLE notes (body text)")
        conn = await pool.acquire()
        assert isinstance(conn, PooledConnection)
        transaction = conn.transaction()
        await transaction.start()
        await conn.execute("INSERT INTO notes VALUES ('left in an open transaction')")
        session = conn.get_server_pid()
        sent: list[str] = []
        conn.add_query_logger(lambda record: sent.append(record.query))
        await pool.release(conn)  # a handler that failed half-way
        assert not [query for query in sent if "RESET ALL" in query.upper()]  # asyncpg's default reset
        async with pool.acquire() as again:
            assert again.get_server_pid() == session  # the same server session, max_size=1
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM notes") == 0
            assert await again.fetchval("SHOW transaction_isolation") == "read committed"
    finally:
        await pool.close()
        admin = await asyncpg.connect(postgres_url)
        try:
            await admin.execute(f'DROP DATABASE "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
        finally:
            await admin.close()
