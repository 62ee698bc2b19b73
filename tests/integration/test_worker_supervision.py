"""`maillage serve … --role worker` whose loop keeps ending: restarted a bounded number of times, then the process exits 1."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

from services.common.embedded import free_port
from services.common.settings import Settings
from tests.integration.matching_fixtures import fresh_database

ROOT = Path(__file__).resolve().parents[2]

# The real CLI, runtime, uvicorn and workers, with one fault: a background loop of the events worker that can
# never run (as a bug or a lost resource would make it).
BROKEN_WORKER = """
import sys

import services.events.consumers as consumers

async def broken_loop(stop):
    raise RuntimeError("this loop can never run")

consumers.build_tasks = lambda pool, settings: [broken_loop]

from services.launch.cli import main

sys.argv = ["maillage", "serve", "events", "--role", "worker", "--port", sys.argv[1]]
main()
"""


def spawn_broken_worker(env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-c", BROKEN_WORKER, str(port)], cwd=ROOT, env=env, stdout=out, stderr=out
        )


async def test_a_worker_whose_loop_keeps_ending_is_restarted_then_exits_non_zero(
    postgres_url: str, settings: Settings, tmp_path: Path
) -> None:
    database_url = await fresh_database(postgres_url, "events")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env |= {
        "MAILLAGE_EVENTS_DATABASE_URL": database_url,
        "MAILLAGE_KAFKA_BOOTSTRAP": settings.kafka_bootstrap,
        "MAILLAGE_KAFKA_IDEMPOTENT_PRODUCER": str(settings.kafka_idempotent_producer).lower(),
        "MAILLAGE_JWT_KEYS": settings.jwt_keys,
        "MAILLAGE_JWT_ACTIVE_KID": settings.jwt_active_kid,
        "MAILLAGE_INTERNAL_KEY": settings.internal_key,
        "MAILLAGE_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "MAILLAGE_EMAIL_ENABLED": "false",
        "MAILLAGE_LOG_FORMAT": "text",
        "MAILLAGE_WORKER_RESTART_LIMIT": "2",
    }
    port = free_port()
    log = tmp_path / "worker.log"
    worker = spawn_broken_worker(env, port, log)
    try:
        alive_while_restarting = False
        deadline = time.monotonic() + 60
        async with httpx.AsyncClient(timeout=1) as http:
            while worker.poll() is None and time.monotonic() < deadline:
                # Between restarts the process is alive (its supervisor will try again): liveness holds.
                with contextlib.suppress(httpx.HTTPError):
                    alive_while_restarting |= (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200
                await asyncio.sleep(0.1)
        code = await asyncio.to_thread(worker.wait, 10)
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait(10)
    output = log.read_text(errors="replace")
    assert code == 1, output
    assert alive_while_restarting, output
    assert output.count("worker loop broken_loop failed; restarting it") == 2, output
    assert "worker loop broken_loop failed, its end number 3 within 300 s: this process cannot recover it" in output
    assert "error: events stopped: its worker loop broken_loop kept ending" in output
    assert "Application shutdown complete" in output  # a clean stop: the other workers committed and closed
