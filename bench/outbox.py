"""Outbox relay benchmark: commit → broker acknowledgement latency at a steady rate, and sustained throughput.

Run `python -m bench.outbox` (embedded PostgreSQL and Tansu unless MAILLAGE_DATABASE_URL /
MAILLAGE_KAFKA_BOOTSTRAP name others). Prints a table; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import statistics
import time
import uuid
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import asyncpg

from services.common.db import create_pool, ensure_database, migrate
from services.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from services.common.kafka import ensure_topics
from services.common.outbox import OutboxRelay, OutboxRow, enqueue, enqueue_many
from services.common.settings import Settings, with_database
from services.contracts.events import EventPayload

TOPIC = "bench.outbox"
KEYS = [f"key-{i}" for i in range(100)]


class Recorder:
    def __init__(self) -> None:
        self.committed: dict[str, float] = {}
        self.acked: dict[str, float] = {}

    def on_ack(self, rows: Sequence[OutboxRow], ack_time: float) -> None:
        for row in rows:
            self.acked[row.event.id] = ack_time


class Tick(EventPayload):
    at: float


Tick.ce_type, Tick.topic = "org.maillage.bench.tick", TOPIC


async def write(pool: asyncpg.Pool, recorder: Recorder, n_events: int, key: str) -> None:
    async with pool.acquire() as conn, conn.transaction():
        ids = []
        if n_events >= 50:  # a bulk write (an import): one round trip for all its events
            events = await enqueue_many(conn, service="bench", events=[(key, Tick(at=time.time()))] * n_events)
            ids = [event.id for event in events]
        for _ in range(n_events if n_events < 50 else 0):
            event = await enqueue(
                conn, service="bench", topic=TOPIC, key=key, ce_type="org.maillage.bench.tick", data={"at": time.time()}
            )
            ids.append(event.id)
    now = time.time()
    for ce_id in ids:
        recorder.committed[ce_id] = now


async def paced_writer(pool: asyncpg.Pool, recorder: Recorder, rate: float, seconds: float, index: int) -> None:
    start = time.perf_counter()
    n = 0
    while True:
        due = start + n / rate
        if due - start > seconds:
            return
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await write(pool, recorder, 1, KEYS[(index * 7919 + n) % len(KEYS)])
        n += 1


async def greedy_writer(pool: asyncpg.Pool, recorder: Recorder, seconds: float, per_tx: int, index: int) -> None:
    deadline = time.perf_counter() + seconds
    n = 0
    while time.perf_counter() < deadline:
        await write(pool, recorder, per_tx, KEYS[(index * 7919 + n) % len(KEYS)])
        n += 1


def writer_process(url: str, seconds: float, per_tx: int, index: int) -> dict[str, float]:
    """A writer in its own process, as an API process would be: returns ce_id → commit time."""

    async def run() -> dict[str, float]:
        pool = await create_pool(url, min_size=1, max_size=1)
        recorder = Recorder()
        await greedy_writer(pool, recorder, seconds, per_tx, index)
        await pool.close()
        return recorder.committed

    return asyncio.run(run())


async def wait_all_acked(recorder: Recorder, timeout_s: float = 60) -> None:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline and len(recorder.acked) < len(recorder.committed):
        await asyncio.sleep(0.05)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def scenario_latency(
    pool: asyncpg.Pool, relay_settings: Settings, database_url: str, rate: float, seconds: float, writers: int
) -> dict[str, object]:
    recorder = Recorder()
    relay = OutboxRelay("bench", database_url, relay_settings, on_ack=recorder.on_ack)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    while not relay.active:
        await asyncio.sleep(0.05)
    started = time.time()
    await asyncio.gather(*(paced_writer(pool, recorder, rate / writers, seconds, i) for i in range(writers)))
    elapsed = time.time() - started
    await wait_all_acked(recorder)
    stop.set()
    await task
    warm = started + 1.0
    latencies = [
        (recorder.acked[ce_id] - committed) * 1000
        for ce_id, committed in recorder.committed.items()
        if committed >= warm and ce_id in recorder.acked
    ]
    return {
        "scenario": "commit → ack latency",
        "writers": writers,
        "load": f"paced {rate:.0f} ev/s, 1 ev/tx ({len(recorder.committed) / elapsed:.0f} ev/s achieved)",
        "count": len(latencies),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "throughput": None,
        "lost": len(recorder.committed) - len(recorder.acked),
    }


async def scenario_throughput(
    pool: asyncpg.Pool, relay_settings: Settings, database_url: str, seconds: float, writers: int, per_tx: int
) -> dict[str, object]:
    recorder = Recorder()
    relay = OutboxRelay("bench", database_url, relay_settings, on_ack=recorder.on_ack)
    stop = asyncio.Event()
    task = asyncio.create_task(relay.run(stop))
    while not relay.active:
        await asyncio.sleep(0.05)
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(writers, mp_context=multiprocessing.get_context("spawn")) as processes:
        # Warm the processes up (imports) before the clock starts.
        await asyncio.gather(
            *(loop.run_in_executor(processes, writer_process, database_url, 0.0, 1, i) for i in range(writers))
        )
        started = time.time()
        results = await asyncio.gather(
            *(loop.run_in_executor(processes, writer_process, database_url, seconds, per_tx, i) for i in range(writers))
        )
    written_at = time.time()
    for committed in results:
        recorder.committed.update(committed)
    backlog = len(recorder.committed) - len(recorder.acked)
    await wait_all_acked(recorder, 120)
    stop.set()
    await task
    last_ack = max(recorder.acked.values())
    latencies = [(recorder.acked[i] - c) * 1000 for i, c in recorder.committed.items() if i in recorder.acked]
    return {
        "scenario": f"sustained, {per_tx} ev/tx",
        "writers": f"{writers} proc",
        "load": f"as fast as possible; written {len(recorder.committed) / (written_at - started):.0f} ev/s; "
        f"backlog at end {backlog}",
        "count": len(recorder.acked),
        "p50": statistics.median(latencies),
        "p99": percentile(latencies, 99),
        "max": max(latencies),
        "throughput": len(recorder.acked) / (last_ack - started),
        "lost": len(recorder.committed) - len(recorder.acked),
    }


async def scenario_drain(
    pool: asyncpg.Pool, relay_settings: Settings, database_url: str, backlog: int
) -> dict[str, object]:
    """Relay capacity alone: a backlog committed while no relay runs, then drained."""
    recorder = Recorder()
    for start in range(0, backlog, 1000):
        async with pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                "INSERT INTO outbox (topic, key, ce_id, ce_type, ce_source, ce_time, data) "
                "VALUES ($1, $2, $3, 'org.maillage.bench.tick', '/maillage/bench', now(), '{}'::jsonb)",
                [(TOPIC, KEYS[i % len(KEYS)], uuid.uuid4()) for i in range(start, min(backlog, start + 1000))],
            )
    relay = OutboxRelay("bench", database_url, relay_settings, on_ack=recorder.on_ack)
    stop = asyncio.Event()
    started = time.time()
    task = asyncio.create_task(relay.run(stop))
    deadline = time.perf_counter() + 120
    while len(recorder.acked) < backlog and time.perf_counter() < deadline:
        await asyncio.sleep(0.02)
    elapsed = max(recorder.acked.values()) - started
    stop.set()
    await task
    return {
        "scenario": "drain a backlog",
        "writers": 0,
        "load": f"{backlog} rows waiting, relay started after",
        "count": len(recorder.acked),
        "p50": float("nan"),
        "p99": float("nan"),
        "max": float("nan"),
        "throughput": len(recorder.acked) / elapsed,
        "lost": backlog - len(recorder.acked),
    }


async def main(args: argparse.Namespace) -> None:
    postgres = broker = None
    home = Path(".maillage/bench")
    database = os.environ.get("MAILLAGE_DATABASE_URL")
    bootstrap = os.environ.get("MAILLAGE_KAFKA_BOOTSTRAP")
    if not database:
        postgres = EmbeddedPostgres(home / "postgres", free_port())
        postgres.start()
        database = postgres.url
    if not bootstrap:
        broker = EmbeddedBroker(free_port())
        broker.start()
        bootstrap = broker.bootstrap
    try:
        url = with_database(database, f"maillage_bench_{uuid.uuid4().hex[:8]}")
        await ensure_database(url)
        await migrate(url, ["services.common"])
        settings = Settings(_env_file=None, kafka_bootstrap=bootstrap, log_format="text")
        if broker is not None:
            settings = settings.model_copy(update={"kafka_idempotent_producer": False})  # Tansu refuses them
        await ensure_topics(settings, [(TOPIC, 6)])
        pool = await create_pool(url, min_size=8, max_size=8)
        rows = [
            await scenario_latency(pool, settings, url, args.rate, args.seconds, 2),
            await scenario_throughput(pool, settings, url, args.seconds, 4, 1),
            await scenario_throughput(pool, settings, url, args.seconds, 4, 10),
            await scenario_throughput(pool, settings, url, args.seconds, 4, 100),
            await scenario_drain(pool, settings, url, 50_000),
        ]
        await pool.close()
    finally:
        if broker:
            broker.stop()
        if postgres:
            postgres.stop()
    print(f"\nOutbox relay on {os.cpu_count()} cores (PostgreSQL 18 and Tansu on this machine, one relay)")
    print(
        f"{'scenario':<24} {'writers':>7} {'events':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
        f"{'acked/s':>9} {'lost':>5}  load"
    )
    for row in rows:
        throughput = f"{row['throughput']:.0f}" if row["throughput"] else "—"
        print(
            f"{row['scenario']:<24} {row['writers']:>7} {row['count']:>7} {row['p50']:>8.1f} {row['p99']:>8.1f} "
            f"{row['max']:>8.1f} {throughput:>9} {row['lost']:>5}  {row['load']}"
        )
    print("targets: latency p50 < 10 ms and p99 < 50 ms at 1,000 ev/s; >= 5,000 ev/s with 4 writers")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1000.0)
    asyncio.run(main(parser.parse_args()))
