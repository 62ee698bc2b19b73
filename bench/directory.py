"""Directory benchmark: import 100,000 generated actors (with outbox rows), relay drain, then search over HTTP.

Run `python -m bench.directory [--actors N]`. Prints a table; it is not a test.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import json
import os
import random
import resource
import signal
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx

from services.common.db import create_pool, ensure_database, migrate
from services.common.embedded import EmbeddedBroker, EmbeddedPostgres, free_port
from services.common.kafka import ensure_topics
from services.common.outbox import OutboxRelay
from services.common.settings import Settings, with_database
from services.contracts import territories
from services.contracts.vocabularies import ACTOR_KINDS, SERVICE_TYPES, THEMES
from services.directory.imports import import_stream

WORDS = [
    "ressourcerie",
    "atelier",
    "vélo",
    "jardin",
    "épicerie",
    "solidaire",
    "coopérative",
    "tiers-lieu",
    "insertion",
    "culture",
    "numérique",
    "énergie",
    "habitat",
    "repair",
    "café",
    "ferme",
    "quartier",
]
FIELDS = [
    "source_id",
    "name",
    "kind",
    "commune_code",
    "lat",
    "lon",
    "themes",
    "service_types",
    "activities",
    "description",
    "qpv_code",
]
# Approximate centres of départements are not in the data: spread actors around a few hundred
# large communes with known coordinates would need a source we lack, so coordinates are drawn
# in metropolitan France's bounding box, weighted by commune population for the commune code.
LAT_RANGE, LON_RANGE = (42.5, 51.0), (-4.5, 8.0)


def vocabulary(rng: random.Random, size: int = 600) -> tuple[list[str], list[float]]:
    """Description words with Zipf-like frequencies: the field's words first, then rarer ones."""
    syllables = ["ra", "mo", "li", "ter", "sol", "cul", "ve", "jar", "nu", "me", "ri", "que", "tion", "ble", "ment"]
    extra = {"".join(rng.choices(syllables, k=rng.randint(2, 4))) for _ in range(size * 2)}
    words = WORDS + sorted(extra)[: size - len(WORDS)]
    return words, [1.0 / (rank + 1) for rank in range(len(words))]


def generate_csv(path: Path, count: int, seed: int = 7) -> None:
    rng = random.Random(seed)
    words, weights_words = vocabulary(rng)
    communes = [c for c in territories.all_communes().values() if c.population > 0 and len(c.departement) == 2]
    weights = [c.population for c in communes]
    chosen = rng.choices(communes, weights=weights, k=count)
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(FIELDS)
        for i, commune in enumerate(chosen):
            themes = rng.sample([t.code for t in THEMES], 2)
            services = rng.sample([s.code for s in SERVICE_TYPES], 2)
            area = "national" if rng.random() < 0.05 else f"radius:{rng.choice([10, 20, 50])}"
            writer.writerow(
                [
                    f"bench-{i}",
                    f"{rng.choice(WORDS).capitalize()} {rng.choice(WORDS)} {commune.name} {i}",
                    rng.choice(ACTOR_KINDS[:9]).code,
                    commune.code,
                    f"{rng.uniform(*LAT_RANGE):.5f}",
                    f"{rng.uniform(*LON_RANGE):.5f}",
                    ";".join(themes),
                    ";".join(services),
                    f"{themes[0]}/{services[0]}/{area}",
                    " ".join(rng.choices(words, weights=weights_words, k=12)),
                    "",
                ]
            )


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


async def file_lines(path: Path) -> AsyncIterator[str]:
    with path.open(encoding="utf-8", newline="") as handle:
        for line in handle:
            yield line


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def measure(
    url: str, params_list: list[dict[str, object]], concurrency: int, requests: int
) -> tuple[float, float, float]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=10) as http:
        queue: asyncio.Queue[dict[str, object]] = asyncio.Queue()
        for i in range(requests):
            queue.put_nowait(params_list[i % len(params_list)])

        async def worker() -> None:
            while not queue.empty():
                params = queue.get_nowait()
                started = time.perf_counter()
                response = await http.get("/v1/actors", params=params)  # type: ignore[arg-type]
                latencies.append((time.perf_counter() - started) * 1000)
                assert response.status_code == 200, response.text

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return percentile(latencies, 50), percentile(latencies, 99), requests / elapsed


async def main(args: argparse.Namespace) -> None:
    home = Path(".maillage/bench")
    home.mkdir(parents=True, exist_ok=True)
    csv_path = home / f"actors-{args.actors}.csv"
    if not csv_path.exists():
        generate_csv(csv_path, args.actors)
    postgres = EmbeddedPostgres(home / "postgres", free_port())
    postgres.start()
    broker = EmbeddedBroker(free_port())
    broker.start()
    server = None
    try:
        url = with_database(postgres.url, f"maillage_bench_directory_{uuid.uuid4().hex[:6]}")
        await ensure_database(url)
        await migrate(url, ["services.common", "services.directory"])
        settings = Settings(
            _env_file=None,
            kafka_bootstrap=broker.bootstrap,
            kafka_idempotent_producer=False,  # Tansu refuses idempotent producers
            directory_database_url=url,
            jwt_keys=json.dumps({"b": "b" * 64}),
            jwt_active_kid="b",
            internal_key="i" * 64,
        )
        await ensure_topics(settings)
        pool = await create_pool(url, min_size=2, max_size=4)
        rss_before = rss_mb()
        started = time.perf_counter()
        report = await import_stream(pool, file_lines(csv_path))
        import_s = time.perf_counter() - started
        rss_after = rss_mb()
        relay = OutboxRelay("directory", url, settings)
        stop = asyncio.Event()
        relay_started = time.perf_counter()
        task = asyncio.create_task(relay.run(stop))
        while await pool.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL"):
            await asyncio.sleep(0.2)
        relay_s = time.perf_counter() - relay_started
        stop.set()
        await task
        await pool.execute("VACUUM ANALYZE actors")
        await pool.close()

        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("MAILLAGE_")}
        env.update(
            {
                "MAILLAGE_DIRECTORY_DATABASE_URL": url,
                "MAILLAGE_KAFKA_BOOTSTRAP": broker.bootstrap,
                "MAILLAGE_JWT_KEYS": settings.jwt_keys,
                "MAILLAGE_JWT_ACTIVE_KID": "b",
                "MAILLAGE_INTERNAL_KEY": settings.internal_key,
                "MAILLAGE_LOG_LEVEL": "WARNING",
                "MAILLAGE_DB_POOL_MAX": "10",
            }
        )
        server = subprocess.Popen(
            [sys.executable, "-m", "services.launch.cli", "serve", "directory", "--role", "api", "--port", str(port)],
            env=env,
            start_new_session=True,
        )
        base = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                if httpx.get(base + "/healthz").status_code == 200:
                    break
            except httpx.HTTPError:
                await asyncio.sleep(0.1)
        rng = random.Random(3)
        cities = [territories.resolve_commune(c) for c in ("25056", "67482", "64102", "79191", "63113", "69266")]
        near = [
            {
                "lat": rng.uniform(44, 49),
                "lon": rng.uniform(0, 6),
                "radius_km": 10,
                "themes": rng.choice(THEMES).code,
                "first": 20,
            }
            for _ in range(50)
        ]
        text = [{"text": f"{rng.choice(WORDS)} {rng.choice(cities).name}", "first": 20} for _ in range(50)]
        typo = [{"text": "resourcerie solidare", "first": 20}]
        # The same words spelt right: what the typo query costs once its words are corrected
        # (two words shared by many generated names, so thousands of rows to rank).
        spelt = [{"text": "ressourcerie solidaire", "first": 20}]
        rows = []
        cases = (
            ("near 10 km + theme", near),
            ("French text", text),
            ("text with typos", typo),
            ("same, spelt right", spelt),
        )
        for label, params in cases:
            await measure(base, params, 4, 40)  # warm-up
            for concurrency in (1, 8):
                p50, p99, rps = await measure(base, params, concurrency, 400)
                rows.append((label, concurrency, p50, p99, rps))
    finally:
        if server is not None:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(20)
        broker.stop()
        postgres.stop()

    n = report.created + report.updated + report.unchanged
    print(f"\nDirectory on {os.cpu_count()} cores; {args.actors} generated actors (PostgreSQL 18 + Tansu here)")
    print(
        f"import: {n} rows in {import_s:.1f} s = {n / import_s:.0f} actors/s incl. outbox rows "
        f"({report.rejected_count} rejected); peak RSS {rss_before:.0f} MB before, {rss_after:.0f} MB after"
    )
    print(f"relay: all {n} actor events published {relay_s:.1f} s after it started ({n / relay_s:.0f} ev/s)")
    print(f"\n{'search (HTTP, 20 per page)':<28} {'concurrency':>11} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>7}")
    for label, concurrency, p50, p99, rps in rows:
        print(f"{label:<28} {concurrency:>11} {p50:>8.1f} {p99:>8.1f} {rps:>7.0f}")
    print("targets: import >= 5,000 actors/s; search p99 < 20 ms at concurrency 1")
    _ = io, statistics


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--actors", type=int, default=100_000)
    asyncio.run(main(parser.parse_args()))
