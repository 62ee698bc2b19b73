"""Matching benchmark: one need against 100k and 1M replica actors, then need → signed webhook on the whole stack.

Run `python -m bench.matching [--sizes 100000,1000000] [--needs 200]`. Prints a table; it is not a test.

Replica: actors are spread like the population — each one's commune is drawn weighted by INSEE
population, and its coordinates around the nearest known city centre of its département (or of its
région when no listed city is in the département); 5 % have a national activity, the others a radius
or their commune/département. The generated replica is kept under `.maillage/bench` and reused.
Each need is matched by the engine itself (`service.match_need`: candidates in SQL, scoring, storing
the matches and their outbox rows) in a transaction that is rolled back, one need at a time; the door probes run
on the pool's other connection meanwhile, as in the matching worker (`--no-spare`: after the short list).
A fixed Python loop and a fixed SQL query are timed before and after (`host_speed`), printed above the table:
this shared machine's speed drifts, and a p99 is read beside the speed it was measured at.

End to end: `maillage dev` (every service, the embedded PostgreSQL and broker, demo data) runs in
this process's children; a local receiver subscribed to `match.found` verifies each signature and
notes when the first match of each need arrives. Needs are published over HTTP one at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import tempfile
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import httpx
import orjson
import uvicorn
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from bench.directory import percentile, vocabulary
from services.common.auth import Principal, Role
from services.common.db import create_pool, ensure_database, migrate
from services.common.embedded import EmbeddedPostgres, free_port
from services.common.settings import PROCESSES, Settings, with_database
from services.contracts import synonyms, territories
from services.contracts.events import ActorV1
from services.contracts.vocabularies import ACTOR_KINDS, SERVICE_TYPES, THEMES
from services.launch import registry
from services.launch.devstack import DevStack
from services.launch.runtime import tune_garbage_collector
from services.matching import planner, service, store
from services.matching.model import NeedCreate
from services.matching.scoring import Weights

# City centres (INSEE code, lat, lon): anchors for the actors of their département and région.
CITIES = [
    ("75056", 48.8566, 2.3522),
    ("13055", 43.2965, 5.3698),
    ("69123", 45.7640, 4.8357),
    ("31555", 43.6047, 1.4442),
    ("06088", 43.7102, 7.2620),
    ("44109", 47.2184, -1.5536),
    ("34172", 43.6119, 3.8772),
    ("67482", 48.5734, 7.7521),
    ("33063", 44.8378, -0.5792),
    ("59350", 50.6292, 3.0573),
    ("35238", 48.1173, -1.6778),
    ("51454", 49.2583, 4.0317),
    ("83137", 43.1242, 5.9280),
    ("42218", 45.4397, 4.3872),
    ("76351", 49.4944, 0.1079),
    ("38185", 45.1885, 5.7245),
    ("21231", 47.3220, 5.0415),
    ("49007", 47.4784, -0.5632),
    ("30189", 43.8367, 4.3601),
    ("63113", 45.7772, 3.0870),
    ("25056", 47.2378, 6.0241),
    ("76540", 49.4432, 1.0999),
    ("37261", 47.3941, 0.6848),
    ("87085", 45.8336, 1.2611),
    ("57463", 49.1193, 6.1757),
    ("54395", 48.6921, 6.1844),
    ("45234", 47.9029, 1.9093),
    ("14118", 49.1829, -0.3707),
    ("29019", 48.3904, -4.4861),
    ("66136", 42.6887, 2.8948),
    ("64445", 43.2951, -0.3708),
    ("86194", 46.5802, 0.3404),
    ("79191", 46.3237, -0.4588),
    ("64102", 43.4929, -1.4748),
    ("80021", 49.8940, 2.2958),
    ("72181", 48.0061, 0.1996),
    ("68224", 47.7508, 7.3359),
    ("2A004", 41.9192, 8.7386),
]
COPY_COLUMNS = [
    "id",
    "version",
    "name",
    "kind",
    "themes",
    "service_types",
    "commune_code",
    "territories",
    "reach",
    "reach_radius_km",
    "national",
    "lat",
    "lon",
    "qpv_code",
    "legal_form",
    "status",
    "updated_at",
    "concepts",
]
TEXT_COLUMNS = ["id", "name", "description", "activities", "name_keys", "body_keys", "keys_version"]
T = TypeVar("T")
Row = tuple[tuple[Any, ...], tuple[Any, ...]]  # (actors row, actor_texts row)
THEME_CODES = [t.code for t in THEMES]
THEME_WEIGHTS = [1.0 / (rank + 3) for rank in range(len(THEME_CODES))]  # some themes far more common
SERVICE_CODES = [s.code for s in SERVICE_TYPES]
KINDS = [k.code for k in ACTOR_KINDS if k.code != "local_authority"]


@dataclass
class Geography:
    """Communes weighted by population, and where to put an actor of each."""

    communes: list[territories.Commune]
    weights: list[int]
    anchors: dict[str, tuple[float, float, float]]  # département → (lat, lon, spread in degrees)

    @classmethod
    def build(cls) -> Geography:
        communes = [c for c in territories.all_communes().values() if c.population > 0 and len(c.departement) == 2]
        cities = [(territories.resolve_commune(code), lat, lon) for code, lat, lon in CITIES]
        by_dep = {city.departement: (lat, lon, 0.2) for city, lat, lon in cities}
        by_region: dict[str, tuple[float, float, float]] = {}
        for city, lat, lon in cities:
            by_region.setdefault(city.region, (lat, lon, 0.6))
        anchors = {c.departement: by_dep.get(c.departement) or by_region[c.region] for c in communes}
        return cls(communes, [c.population for c in communes], anchors)

    def place(self, rng: random.Random, commune: territories.Commune) -> tuple[float, float]:
        lat, lon, spread = self.anchors[commune.departement]
        return lat + rng.gauss(0, spread), lon + rng.gauss(0, spread * 1.4)


def generate_actors(count: int, seed: int = 11) -> Iterator[Row]:
    rng = random.Random(seed)
    geo = Geography.build()
    words, word_weights = vocabulary(rng)
    now = datetime.now(UTC)
    for commune in rng.choices(geo.communes, weights=geo.weights, k=count):
        lat, lon = geo.place(rng, commune)
        themes = list(dict.fromkeys(rng.choices(THEME_CODES, weights=THEME_WEIGHTS, k=rng.randint(1, 3))))
        services = rng.sample(SERVICE_CODES, 2)
        draw = rng.random()
        if draw < 0.05:
            area: dict[str, Any] = {"kind": "national"}
        elif draw < 0.6:
            area = {"kind": "radius", "radius_km": float(rng.choice([10, 20, 50]))}
        elif draw < 0.85:
            area = {"kind": "territories", "territories": [f"COM-{commune.code}"]}
        else:
            area = {"kind": "territories", "territories": [f"DEP-{commune.departement}"]}
        activities = [{"theme": t, "service_type": services[0], "area": area} for t in themes[:2]]
        actor_id = uuid.UUID(int=rng.getrandbits(128), version=4)
        name = f"{rng.choice(words).capitalize()} {rng.choice(words)} {commune.name}"
        kind = rng.choice(KINDS)  # drawn before the description, as when it was drawn in place
        description = " ".join(rng.choices(words, weights=word_weights, k=12))
        yield (
            (
                actor_id,
                1,
                name,
                kind,
                themes,
                services,
                commune.code,
                list(territories.territories_of_commune(commune.code)),
                area.get("territories", []),
                area.get("radius_km", 0.0),
                area["kind"] == "national",
                lat,
                lon,
                None,
                None,
                "active",
                now,
                store.actor_concepts(description, activities),
            ),
            (actor_id, name, description, activities, *store.actor_text_keys(name, description, activities)),
        )


def authorities() -> list[Row]:
    """One local authority per listed city: the owners of the benchmark's needs."""
    now = datetime.now(UTC)
    rows: list[Row] = []
    for code, lat, lon in CITIES:
        commune = territories.resolve_commune(code)
        actor_id = uuid.uuid5(uuid.NAMESPACE_URL, f"bench-authority-{code}")
        name = f"Ville de {commune.name}"
        rows.append(
            (
                (
                    actor_id,
                    1,
                    name,
                    "local_authority",
                    ["cooperation_territoriale"],
                    ["partenariat"],
                    code,
                    list(territories.territories_of_commune(code)),
                    [],
                    0.0,
                    False,
                    lat,
                    lon,
                    None,
                    "Commune",
                    "active",
                    now,
                    [],
                ),
                (actor_id, name, "", [], *store.actor_text_keys(name, "", [])),
            )
        )
    return rows


async def copy(conn: asyncpg.Connection, rows: list[Row]) -> None:
    await conn.copy_records_to_table("actors", records=[r[0] for r in rows], columns=COPY_COLUMNS)
    await conn.copy_records_to_table("actor_texts", records=[r[1] for r in rows], columns=TEXT_COLUMNS)


async def fill_replica(url: str, count: int) -> float:
    """Load `count` generated actors (indexes dropped during the COPY and rebuilt after); seconds taken."""
    pool = await create_pool(url, min_size=1, max_size=2)
    try:
        if (
            await pool.fetchval(  # concepts NULL, text keys of another vocabulary: loaded before migration 0007, 0010
                """SELECT count(*) FROM actors a JOIN actor_texts t USING (id)
                   WHERE a.kind <> 'local_authority' AND a.concepts IS NOT NULL AND t.keys_version = $1""",
                synonyms.KEYS_VERSION,
            )
            == count
        ):
            return 0.0
        started = time.perf_counter()
        async with pool.acquire() as conn, conn.transaction():  # a failed load leaves the indexes in place
            indexes = await conn.fetch(
                """SELECT indexname, indexdef FROM pg_indexes
                   WHERE tablename IN ('actors', 'actor_texts') AND indexname NOT LIKE '%_pkey'"""
            )
            targets = await conn.fetch(  # statistics targets that migrations set on index columns
                """SELECT c.relname, a.attnum, a.attstattarget FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
                   WHERE c.relname = ANY($1::text[]) AND a.attstattarget > 0""",
                [index["indexname"] for index in indexes],
            )
            for index in indexes:
                await conn.execute(f"DROP INDEX {index['indexname']}")
            await conn.execute("TRUNCATE actors, actor_texts")
            batch: list[Row] = authorities()
            for row in generate_actors(count):
                batch.append(row)
                if len(batch) == 20_000:
                    await copy(conn, batch)
                    batch.clear()
            await copy(conn, batch)
            await conn.execute("SET LOCAL maintenance_work_mem = '512MB'")
            for index in indexes:  # a GIN of a million actors' cells takes minutes: past the pool's command timeout
                await conn.execute(index["indexdef"], timeout=BUILD_TIMEOUT_S)
            for target in targets:
                await conn.execute(
                    f"ALTER INDEX {target['relname']} ALTER COLUMN {target['attnum']} SET STATISTICS {target['attstattarget']}"
                )
        await pool.execute("VACUUM ANALYZE actors, actor_texts", timeout=BUILD_TIMEOUT_S)
        return time.perf_counter() - started
    finally:
        await pool.close()


def need_bodies(count: int, seed: int = 5) -> list[tuple[uuid.UUID, NeedCreate]]:
    """Needs of the listed cities' authorities, with the perimeters authorities use."""
    rng = random.Random(seed)
    rng_words = random.Random(seed)
    words, word_weights = vocabulary(rng_words)
    bodies = []
    for _ in range(count):
        code, lat, lon = rng.choice(CITIES)
        commune = territories.resolve_commune(code)
        draw = rng.random()
        perimeter: dict[str, Any] = {}
        if draw < 0.2 and commune.epci:
            perimeter = {"territories": [f"EPCI-{commune.epci}"]}
        elif draw < 0.4:
            perimeter = {"territories": [f"DEP-{commune.departement}"]}
        elif draw < 0.6:
            perimeter = {"radius_km": 20}
        themes = list(dict.fromkeys(rng.choices(THEME_CODES, weights=THEME_WEIGHTS, k=2)))
        body = NeedCreate.model_validate(
            {
                "title": " ".join(rng.choices(words, weights=word_weights, k=5)),
                "description": " ".join(rng.choices(words, weights=word_weights, k=25)),
                "kind": "partnership",
                "themes": themes,
                "service_types": [rng.choice(SERVICE_CODES)],
                "commune_code": code,
                "location": {"lat": lat, "lon": lon},
                "perimeter": perimeter,
                "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            }
        )
        bodies.append((uuid.uuid5(uuid.NAMESPACE_URL, f"bench-authority-{code}"), body))
    return bodies


async def replica_case(
    postgres: EmbeddedPostgres, size: int, needs: int, settings: Settings, spare: bool = True
) -> dict[str, Any]:
    url = with_database(postgres.url, f"maillage_bench_matching_{size}")
    await ensure_database(url)
    await migrate(url, ["services.common", "services.matching"])
    load_s = await fill_replica(url, size)
    settings = settings.model_copy(update={"matching_database_url": url})
    # Two connections, as the matching worker has at least: the one a match holds, and the spare its door probes
    # run on meanwhile when it is idle (planner.candidates), as it always is one need at a time.
    pool = await create_pool(url, min_size=2, max_size=2, parallel_query=registry.matching().parallel_query)
    sql_ms: list[float] = []
    whole_ms: list[float] = []
    found: list[int] = []
    try:
        async with pool.acquire() as conn:
            await conn.execute("TRUNCATE needs CASCADE; TRUNCATE outbox")  # and what matching them left
            ids = []
            for owner, body in need_bodies(needs):
                ids.append((await store.insert_need(conn, owner, body))["id"])
            weights = Weights.from_settings(settings)
            # The matching worker runs with the collector tuned at start (`maillage serve`); so does this process.
            # With Python's default thresholds a full collection (45-65 ms here) landed in the timed calls.
            tune_garbage_collector()
            for round_ in range(2):  # the first round warms the caches; the second is measured
                for need_id in ids:
                    need = await store.load_need(conn, need_id)
                    assert need is not None
                    started = time.perf_counter()
                    await planner.candidates(
                        conn,
                        need,
                        weights,
                        settings.match_k * service.CANDIDATE_FACTOR,
                        settings.match_door_budget,
                        pool if spare else None,
                    )
                    sql = (time.perf_counter() - started) * 1000
                    transaction = conn.transaction()
                    await transaction.start()
                    started = time.perf_counter()
                    created = await service.match_need(conn, need_id, settings, pool if spare else None)
                    whole = (time.perf_counter() - started) * 1000
                    await transaction.rollback()
                    if round_:
                        sql_ms.append(sql)
                        whole_ms.append(whole)
                        found.append(created)
            # The open needs as the worker leaves them: matched when published (the timed matches were rolled back).
            for need_id in ids:
                await service.match_need(conn, need_id, settings)
            write_ms = await actor_updates(conn, needs, settings)
    finally:
        await pool.close()
    return {
        "size": size,
        "load_s": load_s,
        "sql": (percentile(sql_ms, 50), percentile(sql_ms, 99)),
        "whole": (percentile(whole_ms, 50), percentile(whole_ms, 99)),
        "matches": sum(found) / len(found),
        "writes": {step: (percentile(ms, 50), percentile(ms, 99)) for step, ms in write_ms.items()},
    }


async def actor_updates(conn: asyncpg.Connection, count: int, settings: Settings) -> dict[str, list[float]]:
    """ms of `count` actor updates applied one at a time, each rolled back: "upsert" the replica's row, its texts'
    keys and every index (`store.upsert_actor`); "apply" that and re-matching against the open needs, which have
    their matches (`service.apply_actor`). The first round warms the caches."""
    rows = await conn.fetch(
        """SELECT a.*, t.description, t.activities FROM actors a JOIN actor_texts t USING (id)
           WHERE a.kind <> 'local_authority' ORDER BY a.id LIMIT $1""",
        count,
    )
    now = datetime.now(UTC).isoformat()
    updates = []
    for row in rows:
        commune = territories.resolve_commune(row["commune_code"])
        updates.append(
            ActorV1.model_validate(
                {
                    **{key: row[key] for key in ("name", "description", "kind", "themes", "service_types")},
                    **{key: row[key] for key in ("activities", "commune_code", "territories", "qpv_code")},
                    "id": str(row["id"]),
                    "version": row["version"] + 1,
                    "departement": commune.departement,
                    "region": commune.region,
                    "location": {"lat": row["lat"], "lon": row["lon"]} if row["lat"] is not None else None,
                    "updated_at": now,
                }
            )
        )
    timed: dict[str, list[float]] = {"upsert": [], "apply": []}
    for round_ in range(2):
        for actor in updates:
            for step in timed:
                transaction = conn.transaction()
                await transaction.start()
                started = time.perf_counter()
                if step == "upsert":
                    assert await store.upsert_actor(conn, actor)
                else:
                    assert await service.apply_actor(conn, actor, settings)
                if round_:
                    timed[step].append((time.perf_counter() - started) * 1000)
                await transaction.rollback()
    return timed


@dataclass
class Receiver:
    """Receives signed webhooks; keeps when each need's first match arrived."""

    secret: str = ""
    first: dict[str, float] = field(default_factory=dict)
    arrived: dict[str, asyncio.Event] = field(default_factory=dict)
    bad_signatures: int = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        now = time.perf_counter()
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            Webhook(self.secret).verify(body, headers)
        except WebhookVerificationError:
            self.bad_signatures += 1
        else:
            need_id = orjson.loads(body)["data"]["match"]["need_id"]
            self.first.setdefault(need_id, now)
            self.arrived.setdefault(need_id, asyncio.Event()).set()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})


async def end_to_end(stack: DevStack, count: int) -> dict[str, Any]:
    settings = stack.settings
    admin = stack.operator()
    receiver = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_config=None))
    serving = asyncio.create_task(server.serve())
    matching_db = await asyncpg.connect(settings.database_url_for("matching"))
    try:
        while not server.started:
            await asyncio.sleep(0.02)
        async with httpx.AsyncClient(base_url=settings.url_for("directory"), auth=admin, timeout=10) as http:
            page = (await http.get("/v1/actors", params={"kinds": "local_authority", "first": 50})).json()
            owners = [e["node"] for e in page["edges"] if e["node"]["name"].startswith("Ville")]
            actors = []
            for owner in owners:
                local = await http.get("/v1/actors", params={"territory": f"COM-{owner['commune_code']}", "first": 50})
                nodes = [e["node"] for e in local.json()["edges"]]
                actors += [(owner, a) for a in nodes if a["kind"] != "local_authority"]
        ids = [a["id"] for _, a in actors] + [o["id"] for o in owners]
        while await matching_db.fetchval("SELECT count(*) FROM actors WHERE id = ANY($1::uuid[])", ids) < len(ids):
            await asyncio.sleep(0.1)  # the replica has caught up with the demo data
        rng = random.Random(9)
        latencies: list[float] = []
        posts: list[float] = []
        async with httpx.AsyncClient(base_url=settings.url_for("matching"), timeout=10) as http:
            created = await http.post(
                "/v1/webhooks",
                auth=admin,
                json={"url": f"http://127.0.0.1:{port}/hook", "event_types": ["match.found"]},
            )
            created.raise_for_status()
            receiver.secret = created.json()["secret"]
            for index in range(count + 10):
                owner, actor = rng.choice(actors)
                authority = stack.operator(
                    Principal(subject=f"collectivity:{owner['id']}", role=Role.COLLECTIVITY, actor_id=owner["id"])
                )
                body = {
                    "title": f"Besoin {index} : {actor['name']}",
                    "description": actor.get("description") or "",
                    "kind": "partnership",
                    "themes": actor["themes"][:1],
                    "service_types": actor["service_types"][:1],
                    "commune_code": owner["commune_code"],
                    "location": owner["location"],
                    "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
                }
                started = time.perf_counter()
                response = await http.post("/v1/needs", json=body, auth=authority)
                posted = time.perf_counter()
                response.raise_for_status()
                need_id = response.json()["id"]
                event = receiver.arrived.setdefault(need_id, asyncio.Event())
                await asyncio.wait_for(event.wait(), 10)
                if index >= 10:  # the first ten warm every process up
                    latencies.append((receiver.first[need_id] - started) * 1000)
                    posts.append((posted - started) * 1000)
    finally:
        await matching_db.close()
        server.should_exit = True
        await serving
    return {
        "needs": len(latencies),
        "post": (percentile(posts, 50), percentile(posts, 99)),
        "webhook": (percentile(latencies, 50), percentile(latencies, 99)),
        "bad_signatures": receiver.bad_signatures,
    }


def start_stack(home: Path, broker: str = "tansu") -> DevStack:
    ports = {f"{process}_port": free_port() for process in PROCESSES}
    settings = Settings(
        _env_file=None,
        home=str(home),
        postgres_port=free_port(),
        kafka_port=free_port(),
        log_level="WARNING",
        dev_broker=broker,
        **ports,  # type: ignore[arg-type]
    )
    stack = DevStack(settings, out=open(os.devnull, "w"))  # noqa: SIM115 - closed with the process
    stack.start()
    return stack


def on_dev_stack(name: str, run: Callable[[DevStack], Coroutine[Any, Any, T]], broker: str = "tansu") -> T:
    """`run` against a whole `maillage dev` stack (on `broker`) in a fresh home, stopped afterwards whatever happens."""
    stack = start_stack(Path(tempfile.mkdtemp(prefix=f"maillage-bench-{name}-")) / ".maillage", broker)
    try:
        return asyncio.run(run(stack))
    finally:
        stack.stop()


# A fixed workload timed before and after the replicas' runs: this shared machine's speed drifts by half within an
# hour, and the same code's p99 with it, so a run's figures are read beside the speed they were measured at.
CALIBRATION_SQL = "SELECT count(*) FROM generate_series(1, 3000000) AS s (i) WHERE i % 7 = 3"


async def host_speed(url: str) -> tuple[float, float]:
    """ms of a fixed Python loop and of a fixed SQL query, best of 5 each (lower is faster)."""
    python_ms, sql_ms = [], []
    conn = await asyncpg.connect(url)
    try:
        for _ in range(5):
            started = time.perf_counter()
            sum(i * i for i in range(1_000_000))
            python_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await conn.fetchval(CALIBRATION_SQL)
            sql_ms.append((time.perf_counter() - started) * 1000)
    finally:
        await conn.close()
    return min(python_ms), min(sql_ms)


async def replicas(args: argparse.Namespace) -> list[dict[str, Any]]:
    home = Path(".maillage/bench")
    home.mkdir(parents=True, exist_ok=True)
    postgres = EmbeddedPostgres(home / "postgres", free_port(), shared_buffers=args.shared_buffers)
    postgres.start()
    try:
        args.speed = [await host_speed(postgres.url)]
        settings = Settings(
            _env_file=None, jwt_keys=json.dumps({"b": "b" * 64}), jwt_active_kid="b", internal_key="i" * 64
        )
        variants = (
            [("off", settings.model_copy(update=DOORS_OFF)), ("on", settings)] if args.doors_off else [("on", settings)]
        )
        rows = []
        for size in args.sizes:
            for doors, variant in variants:
                rows.append(
                    {**await replica_case(postgres, size, args.needs, variant, not args.no_spare), "doors": doors}
                )
        args.speed.append(await host_speed(postgres.url))
        return rows
    finally:
        postgres.stop()


BUILD_TIMEOUT_S = 3600.0

# The settings that close the doors of issue 23 (services/contracts/doors.py): matching by shared theme only.
DOORS_OFF = {
    "match_weight_related_theme": 0.0,
    "match_weight_text_door": 0.0,
    "match_weight_service_type_door": 0.0,
}


def main(args: argparse.Namespace) -> None:
    rows = asyncio.run(replicas(args)) if args.sizes else []
    e2e = None
    if args.e2e:
        e2e = on_dev_stack("matching", lambda stack: end_to_end(stack, args.needs))
    doors = "after the short list (--no-spare)" if args.no_spare else "beside the short list, on a spare connection"
    print(
        f"\nMatching on {os.cpu_count()} cores (PostgreSQL 18 with shared_buffers {args.shared_buffers}, Tansu);"
        f" one need at a time, {args.needs} needs;"
        f" door probes {doors}"
    )
    if rows:
        (py_before, sql_before), (py_after, sql_after) = args.speed
        print(
            f"host speed, before → after the runs (ms, best of 5, lower is faster): a fixed Python loop"
            f" {py_before:.0f} → {py_after:.0f}, a fixed SQL query {sql_before:.0f} → {sql_after:.0f}"
        )
        print(
            f"\n{'replica actors':>14} {'doors':>6} {'load s':>7} {'SQL p50':>8} {'SQL p99':>8} {'match p50':>10}"
            f" {'match p99':>10}"
        )
        for row in rows:
            print(
                f"{row['size']:>14,} {row['doors']:>6} {row['load_s']:>7.0f} {row['sql'][0]:>8.1f} {row['sql'][1]:>8.1f}"
                f" {row['whole'][0]:>10.1f} {row['whole'][1]:>10.1f}   ({row['matches']:.1f} matches per need)"
            )
        print(
            "ms; SQL = ranked candidates alone (every door's probes); match = service.match_need (SQL, scoring, storing)."
            " target p99 < 50"
        )
        if args.doors_off:
            print("doors off: the related-theme, text and service-type doors at 0 (matching as before issue 23)")
        print(
            f"\nactor updates on the replica, {args.needs} actors one at a time, {args.needs} open needs (matched when"
            " published)"
        )
        print(
            f"{'replica actors':>14} {'doors':>6} {'upsert p50':>11} {'upsert p99':>11} {'apply p50':>10} {'apply p99':>10}"
        )
        for row in rows:
            upsert, apply = row["writes"]["upsert"], row["writes"]["apply"]
            print(
                f"{row['size']:>14,} {row['doors']:>6} {upsert[0]:>11.1f} {upsert[1]:>11.1f} {apply[0]:>10.1f}"
                f" {apply[1]:>10.1f}"
            )
        print(
            "ms; upsert = store.upsert_actor (its replica row, text keys, every index); apply = service.apply_actor"
            " (the upsert, then re-matching it against the open needs)"
        )
    if e2e:
        print(f"\nend to end on `maillage dev` with demo data, {e2e['needs']} needs, one at a time (concurrency 1)")
        print(f"{'step':<36} {'p50 ms':>8} {'p99 ms':>8}")
        print(f"{'POST /v1/needs answered':<36} {e2e['post'][0]:>8.1f} {e2e['post'][1]:>8.1f}")
        print(f"{'POST → first signed webhook':<36} {e2e['webhook'][0]:>8.1f} {e2e['webhook'][1]:>8.1f}")
        print(f"bad signatures: {e2e['bad_signatures']}; targets: p50 < 100 ms, p99 < 300 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda v: [int(x) for x in v.split(",") if x], default=[100_000, 1_000_000])
    parser.add_argument("--needs", type=int, default=200)
    parser.add_argument("--shared-buffers", default="1GB", help="of the replica benchmark's PostgreSQL")
    parser.add_argument("--no-e2e", dest="e2e", action="store_false")
    parser.add_argument(
        "--doors-off", action="store_true", help="each size also with the doors of issue 23 off, in the same table"
    )
    parser.add_argument(
        "--no-spare", action="store_true", help="door probes after the short list on the match's own connection"
    )
    main(parser.parse_args())
