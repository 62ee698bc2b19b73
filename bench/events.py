"""Events benchmark on the whole stack: a registration burst, steady registrations, and search over 50,000 events.

Run `python -m bench.events [--burst 500] [--seats 100] [--rate 100] [--seconds 10] [--events 50000]`.
Prints a table; it is not a test.

Everything goes through HTTP on `maillage dev` (every service, the embedded PostgreSQL and broker,
demo data) started in this process's children, so the relay, the consumers and the e-mail sender
run alongside as a user would have them.
- Burst: N persons register at once (N connections over 50 clients) for one event of S seats; overbooking is checked
  in the database afterwards (confirmed ≤ S, confirmed + waitlisted = N, counts match the rows).
- Steady: one registration every 1/rate s (open loop: a slow answer does not delay the next request).
- Search: the events table is filled with generated published events (organizers: demo actors;
  places around 34 French cities; dates over the next year; 1 to 3 themes), then searched by a
  30-day window + 30 km around a city + one theme, one request at a time and 8 at a time.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx

from bench.directory import percentile
from bench.matching import CITIES, THEME_CODES, THEME_WEIGHTS, on_dev_stack
from services.common.auth import Principal, Role
from services.contracts import territories
from services.launch.devstack import DevStack

EVENT_COLUMNS = [
    "id",
    "title",
    "description",
    "kind",
    "themes",
    "organizer_ids",
    "starts_at",
    "ends_at",
    "timezone",
    "address",
    "commune_code",
    "territories",
    "lat",
    "lon",
    "capacity",
    "registration_mode",
    "status",
    "created_by",
]
KINDS = ["forum", "meeting", "workshop", "webinar", "visit", "training", "conference"]
CLIENTS = 50  # HTTP clients sharing the burst's connections
BENCH_PARTNER = Principal(subject="partner:bench", role=Role.PARTNER)  # registers the participants
WORDS = ["réemploi", "alimentation", "insertion", "mobilité", "numérique", "culture", "habitat", "énergie"]


async def organizers(stack: DevStack) -> list[str]:
    """Demo actors once the events replica has them."""
    settings = stack.settings
    async with httpx.AsyncClient(base_url=settings.url_for("directory"), auth=stack.operator(), timeout=10) as http:
        page = (await http.get("/v1/actors", params={"first": 100})).json()
    ids = [edge["node"]["id"] for edge in page["edges"]]
    await replicated(stack, ids)
    return ids


async def replicated(stack: DevStack, actor_ids: list[str]) -> None:
    """Wait until the events service's actor replica holds these directory actors."""
    conn = await asyncpg.connect(stack.settings.database_url_for("events"))
    try:
        while await conn.fetchval("SELECT count(*) FROM actors WHERE id = ANY($1::uuid[])", actor_ids) < len(actor_ids):
            await asyncio.sleep(0.1)
    finally:
        await conn.close()


async def create_event(stack: DevStack, organizer: str, capacity: int | None) -> str:
    start = datetime.now(UTC) + timedelta(days=30)
    body = {
        "title": "Forum de l'ESS (banc d'essai)",
        "kind": "forum",
        "themes": ["iae"],
        "organizer_ids": [organizer],
        "starts_at": start.isoformat(),
        "ends_at": (start + timedelta(hours=8)).isoformat(),
        "place": {"address": "Kursaal, Besançon", "commune_code": "25056", "location": {"lat": 47.24, "lon": 6.02}},
        "capacity": capacity,
        "publish": True,
    }
    async with httpx.AsyncClient(base_url=stack.settings.url_for("events"), timeout=10) as http:
        response = await http.post("/v1/events", json=body, auth=stack.operator())
    response.raise_for_status()
    return str(response.json()["id"])


def person(i: int, tag: str) -> dict[str, Any]:
    return {"person": {"name": f"Participant {i}", "email": f"p{i}-{tag}@example.org"}}


async def burst(stack: DevStack, organizer: str, count: int, seats: int) -> dict[str, Any]:
    event_id = await create_event(stack, organizer, seats)
    partner = stack.operator(BENCH_PARTNER)
    tag = uuid.uuid4().hex[:8]
    # Many clients, as many users would be: one httpx client with 500 connections spends seconds in its
    # own pool bookkeeping (500 GETs of /healthz: 6.2 s through one client, 0.8 s through 50).
    per_client = max(1, count // CLIENTS)
    limits = httpx.Limits(max_connections=per_client, max_keepalive_connections=per_client)
    clients = [
        httpx.AsyncClient(base_url=stack.settings.url_for("events"), timeout=30, limits=limits) for _ in range(CLIENTS)
    ]
    latencies: list[float] = []

    async def one(i: int) -> int:
        started = time.perf_counter()
        response = await clients[i % CLIENTS].post(
            f"/v1/events/{event_id}/registrations", json=person(i, tag), auth=partner
        )
        latencies.append(time.perf_counter() - started)
        return response.status_code

    try:
        started = time.perf_counter()
        statuses = await asyncio.gather(*(one(i) for i in range(count)))
        wall = time.perf_counter() - started
    finally:
        for client in clients:
            await client.aclose()
    conn = await asyncpg.connect(stack.settings.database_url_for("events"))
    try:
        rows = dict(
            await conn.fetch(
                "SELECT status, count(*) FROM registrations WHERE event_id = $1 GROUP BY status", uuid.UUID(event_id)
            )
        )
        counters = await conn.fetchrow("SELECT confirmed, waitlisted FROM events WHERE id = $1", uuid.UUID(event_id))
    finally:
        await conn.close()
    return {
        "count": count,
        "seats": seats,
        "ok": sum(1 for s in statuses if s == 201),
        "wall_s": wall,
        "last_s": max(latencies),
        "p50_ms": percentile(latencies, 50) * 1000,
        "confirmed": rows.get("confirmed", 0),
        "waitlisted": rows.get("waitlisted", 0),
        "counters_match": (counters["confirmed"], counters["waitlisted"])
        == (rows.get("confirmed", 0), rows.get("waitlisted", 0)),
    }


async def steady(stack: DevStack, organizer: str, rate: float, seconds: float) -> dict[str, Any]:
    event_id = await create_event(stack, organizer, None)
    partner = stack.operator(BENCH_PARTNER)
    tag = uuid.uuid4().hex[:8]
    total = int(rate * seconds)
    latencies: list[float] = []
    failures = 0
    async with httpx.AsyncClient(base_url=stack.settings.url_for("events"), timeout=30) as http:
        for i in range(20):  # warm-up
            await http.post(f"/v1/events/{event_id}/registrations", json=person(10**6 + i, tag), auth=partner)

        async def one(i: int) -> None:
            nonlocal failures
            started = time.perf_counter()
            response = await http.post(f"/v1/events/{event_id}/registrations", json=person(i, tag), auth=partner)
            latencies.append(time.perf_counter() - started)
            failures += response.status_code != 201

        tasks = []
        began = time.perf_counter()
        for i in range(total):
            delay = began + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(i)))
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - began
    return {
        "requests": total,
        "rate": total / elapsed,
        "failures": failures,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "max_ms": max(latencies) * 1000,
    }


async def fill_events(stack: DevStack, organizer_ids: list[str], count: int, seed: int = 3) -> float:
    rng = random.Random(seed)
    cities = [(territories.resolve_commune(code), lat, lon) for code, lat, lon in CITIES]
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    rows = []
    for i in range(count):
        commune, lat, lon = rng.choice(cities)
        start = now + timedelta(hours=rng.randrange(24, 365 * 24))
        themes = sorted(set(rng.choices(THEME_CODES, weights=THEME_WEIGHTS, k=rng.randint(1, 3))))
        rows.append(
            (
                uuid.uuid4(),
                f"{rng.choice(KINDS).capitalize()} {rng.choice(WORDS)} n°{i}",
                f"Rencontre autour de {rng.choice(WORDS)} et {rng.choice(WORDS)} à {commune.name}.",
                rng.choice(KINDS),
                themes,
                [uuid.UUID(rng.choice(organizer_ids))],
                start,
                start + timedelta(hours=rng.choice([2, 3, 8])),
                "Europe/Paris",
                f"Salle {i % 97}",
                commune.code,
                list(territories.territories_of_commune(commune.code)),
                lat + rng.gauss(0, 0.25),
                lon + rng.gauss(0, 0.35),
                rng.choice([None, 20, 50, 100, 1500]),
                "open",
                "published",
                "bench",
            )
        )
    conn = await asyncpg.connect(stack.settings.database_url_for("events"))
    try:
        started = time.perf_counter()
        await conn.copy_records_to_table("events", records=rows, columns=EVENT_COLUMNS)
        await conn.execute("ANALYZE events")
        return time.perf_counter() - started
    finally:
        await conn.close()


def search_params(rng: random.Random) -> dict[str, Any]:
    _, lat, lon = rng.choice(CITIES)
    start = datetime.now(UTC) + timedelta(days=rng.randrange(0, 330))
    return {
        "from": start.isoformat(),
        "to": (start + timedelta(days=30)).isoformat(),
        "lat": lat,
        "lon": lon,
        "radius_km": 30,
        "themes": rng.choices(THEME_CODES, weights=THEME_WEIGHTS)[0],
    }


async def search(stack: DevStack, concurrency: int, requests: int, seed: int = 8) -> dict[str, Any]:
    rng = random.Random(seed)
    params = [search_params(rng) for _ in range(requests + 20)]
    latencies: list[float] = []
    found: list[int] = []
    async with httpx.AsyncClient(base_url=stack.settings.url_for("events"), timeout=30) as http:
        for p in params[:20]:  # warm-up
            (await http.get("/v1/events", params=p)).raise_for_status()
        queue = list(params[20:])

        async def worker() -> None:
            while queue:
                p = queue.pop()
                started = time.perf_counter()
                response = await http.get("/v1/events", params=p)
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()
                found.append(len(response.json()["edges"]))

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return {
        "concurrency": concurrency,
        "requests": requests,
        "rps": requests / elapsed,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "hits": sum(found) / len(found),
    }


async def run(stack: DevStack, args: argparse.Namespace) -> dict[str, Any]:
    ids = await organizers(stack)
    results: dict[str, Any] = {"burst": await burst(stack, ids[0], args.burst, args.seats)}
    results["steady"] = await steady(stack, ids[0], args.rate, args.seconds)
    results["load_s"] = await fill_events(stack, ids, args.events)
    results["search"] = [await search(stack, c, args.searches) for c in (1, 8)]
    return results


def main(args: argparse.Namespace) -> None:
    results = on_dev_stack("events", lambda stack: run(stack, args))
    b, s = results["burst"], results["steady"]
    print(f"\nEvents on {os.cpu_count()} cores, whole stack (`maillage dev`: every service, PostgreSQL 18, Tansu)")
    print(f"\nburst: {b['count']} simultaneous registrations (concurrency {b['count']}) for {b['seats']} seats")
    print(f"{'answered 201':<28} {b['ok']:>8} / {b['count']}")
    print(
        f"{'confirmed / waitlisted':<28} {b['confirmed']:>8} / {b['waitlisted']}   counters match rows: {b['counters_match']}"
    )
    print(f"{'all answered after (s)':<28} {b['wall_s']:>8.2f}   slowest {b['last_s']:.2f} s, p50 {b['p50_ms']:.0f} ms")
    print("target: no overbooking, every answer within 3 s")
    print(f"\nsteady: {s['requests']} registrations at {s['rate']:.1f}/s (open loop), {s['failures']} failures")
    print(f"{'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{s['p50_ms']:>8.1f} {s['p99_ms']:>8.1f} {s['max_ms']:>8.1f}   target p99 < 100 ms")
    print(f"\nsearch over {args.events:,} events (+ the few above; loaded in {results['load_s']:.1f} s):")
    print("30-day window + 30 km around a city + one theme, over HTTP")
    print(f"{'concurrency':>11} {'requests':>9} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'hits/page':>10}")
    for row in results["search"]:
        print(
            f"{row['concurrency']:>11} {row['requests']:>9} {row['rps']:>7.0f} {row['p50_ms']:>8.1f}"
            f" {row['p99_ms']:>8.1f} {row['hits']:>10.1f}"
        )
    print("target: p99 < 20 ms at concurrency 1")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--burst", type=int, default=500)
    parser.add_argument("--seats", type=int, default=100)
    parser.add_argument("--rate", type=float, default=100.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--searches", type=int, default=500)
    main(parser.parse_args())
