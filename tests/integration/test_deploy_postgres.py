"""What deployments rely on from PostgreSQL: compose's init script run for real, and processes waiting for it."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.common.db import DatabaseUnavailable, wait_for_database
from services.common.embedded import EmbeddedPostgres, free_port
from services.common.settings import DATABASES, Settings, with_database
from services.launch.runtime import prepare_databases
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


async def test_a_missing_database_is_said_plainly_and_an_unreachable_server_is_waited_for(postgres_url: str) -> None:
    missing = with_database(postgres_url, "maillage_never_created")
    with pytest.raises(DatabaseUnavailable, match=r"maillage_never_created does not exist: run `maillage init`"):
        await wait_for_database(missing)
    closed = f"postgresql://maillage:secret@127.0.0.1:{free_port()}/maillage_directory"
    started = asyncio.get_running_loop().time()
    with pytest.raises(DatabaseUnavailable, match=r"unreachable for 1 s") as caught:
        await wait_for_database(closed, timeout_s=1.0)
    assert asyncio.get_running_loop().time() - started >= 0.5  # it retried before giving up
    assert "secret" not in str(caught.value)  # no credentials in messages
    await wait_for_database(postgres_url)


def test_a_process_without_its_database_stops_with_one_clear_line(postgres_url: str, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env |= {
        "MAILLAGE_JWT_KEYS": '{"k": "' + "k" * 64 + '"}',
        "MAILLAGE_INTERNAL_KEY": "i" * 64,
        "MAILLAGE_DIRECTORY_DATABASE_URL": with_database(postgres_url, "maillage_never_created"),
        "MAILLAGE_DIRECTORY_PORT": str(free_port()),
    }
    result = subprocess.run(
        [sys.executable, "-m", "services.launch.cli", "serve", "directory", "--role", "api"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "error: database" in result.stderr and "run `maillage init`" in result.stderr
    assert "Traceback" not in result.stderr
