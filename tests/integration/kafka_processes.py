"""Helpers of the Apache Kafka tests that run services as real processes: databases, environment, start and wait."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from services.common.db import ensure_database, migrate
from services.common.embedded import stop_process
from services.common.settings import Settings, with_database


async def fresh_databases(postgres_url: str, names: tuple[str, ...], tag: str) -> dict[str, str]:
    """A new migrated database per service named, for one test."""
    urls = {}
    for name in names:
        urls[name] = with_database(postgres_url, f"maillage_{name}_{tag}_{uuid.uuid4().hex[:8]}")
        await ensure_database(urls[name])
        await migrate(urls[name], ["services.common", f"services.{name}"])
    return urls


def process_env(own: Settings, urls: dict[str, str], **extra: str) -> dict[str, str]:
    """The environment of a service process on the test's broker and databases (no MAILLAGE_ variable inherited)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
    env |= {f"MAILLAGE_{name.upper()}_DATABASE_URL": url for name, url in urls.items()}
    env |= {
        "MAILLAGE_KAFKA_BOOTSTRAP": own.kafka_bootstrap,
        "MAILLAGE_KAFKA_IDEMPOTENT_PRODUCER": str(own.kafka_idempotent_producer).lower(),
        "MAILLAGE_JWT_KEYS": own.jwt_keys,
        "MAILLAGE_JWT_ACTIVE_KID": own.jwt_active_kid,
        "MAILLAGE_INTERNAL_KEY": own.internal_key,
        "MAILLAGE_CONSUMER_SESSION_TIMEOUT_MS": "6000",
        "MAILLAGE_OUTBOX_POLL_INTERVAL_S": "0.2",
        "MAILLAGE_EMAIL_ENABLED": "false",
        "MAILLAGE_WEBHOOK_ALLOW_PRIVATE": "true",
        "MAILLAGE_LOG_FORMAT": "text",
    }
    return env | extra


def spawn(process: str, role: str, env: dict[str, str], port: int, log: Path) -> subprocess.Popen[bytes]:
    """`maillage serve` in a process group of its own (so that a kill reaches all of it)."""
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.launch.cli", "serve", process, "--role", role, "--port", str(port)],
            env=env,
            stdout=out,
            stderr=out,
            start_new_session=True,
        )


@contextlib.contextmanager
def service(process: str, role: str, env: dict[str, str], port: int, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    child = spawn(process, role, env, port, log)
    try:
        yield child
    finally:
        stop_process(child, timeout_s=30)


async def wait_healthy(port: int, timeout_s: float = 60.0) -> None:
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=5) as http:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if (await http.get("/healthz")).status_code == 200:
                    return
            await asyncio.sleep(0.2)
    raise AssertionError(f"nothing answered /healthz on port {port} within {timeout_s:.0f} s")


def consumer_lag(metrics_text: str, consumer: str, topic: str) -> dict[int, float]:
    """`maillage_consumer_lag` of one consumer on one topic, by partition, from a Prometheus text exposition."""
    lag: dict[int, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "maillage_consumer_lag":
            continue
        for sample in family.samples:
            if sample.labels.get("consumer") == consumer and sample.labels.get("topic") == topic:
                lag[int(sample.labels["partition"])] = sample.value
    return lag
