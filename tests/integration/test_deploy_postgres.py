"""Compose's PostgreSQL init script, run for real: one role and database per service, migrations as that role."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.common.embedded import EmbeddedPostgres, free_port
from services.common.runtime import prepare_databases
from services.common.settings import DATABASES, Settings
from tests.conftest import TEST_HOME

SCRIPT = Path(__file__).resolve().parents[2] / "deploy" / "postgres" / "init-databases.sh"


@pytest.fixture(scope="module")
def fresh_server() -> Iterator[EmbeddedPostgres]:
    """A PostgreSQL cluster of its own: the script creates cluster-wide roles, as on compose's empty volume."""
    data = TEST_HOME / "postgres-init-script"
    shutil.rmtree(data, ignore_errors=True)
    server = EmbeddedPostgres(data, free_port(), shared_buffers="32MB")
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(data, ignore_errors=True)


def _role_url(server: EmbeddedPostgres, database: str) -> str:
    return f"postgresql://maillage_{database}:secret-{database}@{server.host}:{server.port}/maillage_{database}"


async def test_the_init_script_gives_each_service_its_own_role_and_database(fresh_server: EmbeddedPostgres) -> None:
    env = {
        **os.environ,
        "PATH": f"{fresh_server.bin}{os.pathsep}{os.environ['PATH']}",
        "PGHOST": fresh_server.host,
        "PGPORT": str(fresh_server.port),
        "POSTGRES_USER": "postgres",
        **{f"{d.upper()}_DB_PASSWORD": f"secret-{d}" for d in DATABASES},
    }
    result = await asyncio.to_thread(
        subprocess.run, ["bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr

    # `maillage init` as each service's own role (not a superuser) applies every migration.
    urls: dict[str, Any] = {f"{d}_database_url": _role_url(fresh_server, d) for d in DATABASES}
    # database_url is never used: every service has its own URL.
    settings = Settings(_env_file=None, database_url="postgresql://nobody@127.0.0.1:1/postgres", **urls)
    applied = await prepare_databases(settings)
    assert set(applied) == set(DATABASES)
    assert all(applied[d] for d in DATABASES)
    assert any("matching/0001" in name for name in applied["matching"])

    conn = await asyncpg.connect(_role_url(fresh_server, "directory"))
    try:
        assert await conn.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user") is False
        owner = await conn.fetchval("SELECT tableowner FROM pg_tables WHERE tablename = 'outbox'")
        assert owner == "maillage_directory"
    finally:
        await conn.close()

    # A service's role cannot open another service's database.
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await asyncpg.connect(
            f"postgresql://maillage_directory:x@{fresh_server.host}:{fresh_server.port}/maillage_matching"
        )

    # Running the init job again (every `docker compose up`) changes nothing.
    assert await prepare_databases(settings) == {d: [] for d in DATABASES}
