"""Gateway benchmark on the whole stack: a typical partner query three ways, and publishNeed → matchFound.

Run `python -m bench.gateway [--requests 400] [--needs 200]`. Prints a table; it is not a test.

Everything runs on `maillage dev` (every service, the gateway, the embedded PostgreSQL and broker, demo
data) started in this process's children, as a user would have it.
- The partner query: 20 actors within 30 km of Lyon with a theme, 16 fields each, each with its next
  3 events. Measured at concurrency 8, in one run, three ways:
  (a) the same data straight from the services' REST APIs (the directory search, then the events
      service's batch of next events: the two calls the gateway makes);
  (b) the GraphQL query through the gateway (a partner's token: authentication, revocation lookup and
      rate limit included);
  (c) the same query executed by the gateway's schema in this process on the answers captured from
      the services (the GraphQL execution cost alone, no I/O).
- publishNeed → matchFound: a local authority subscribed over graphql-transport-ws publishes needs one
  at a time through the gateway; the time from sending the mutation to receiving the first match.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import websockets

from bench.directory import percentile
from bench.events import replicated
from bench.matching import on_dev_stack
from gateway.auth import Caller, RateLimiter, issue_credential
from gateway.clients import ServiceClients
from gateway.context import Gateway, GatewayContext
from gateway.schema import create_schema
from services.common.auth import Principal, Role
from services.launch.devstack import DevStack
from services.launch.runtime import tune_garbage_collector

LYON_CODE, LYON_LAT, LYON_LON = "69123", 45.7640, 4.8357
CONCURRENCY = 8

PARTNER_QUERY = """
query Partner($lat: Float!, $lon: Float!) {
  actors(first: 20, filter: {near: {lat: $lat, lon: $lon, radiusKm: 30}, themes: ["reemploi"]}) {
    edges { node {
      id name kind description communeCode communeName departement region themes serviceTypes
      website qpvCode status distanceKm updatedAt location { lat lon }
      events(first: 3) { id title startsAt endsAt }
    } }
  }
}
"""
VARIABLES = {"lat": LYON_LAT, "lon": LYON_LON}
SEARCH: dict[str, str | float | list[str]] = {
    "lat": LYON_LAT,
    "lon": LYON_LON,
    "radius_km": 30,
    "themes": ["reemploi"],
    "first": 20,
}


async def seed(stack: DevStack, actors: int = 30, events_each: int = 4) -> None:
    """Actors around Lyon with the theme, each organizing a few upcoming events."""
    settings = stack.settings
    admin = stack.operator()
    tag = uuid.uuid4().hex[:4]
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=settings.url_for("directory"), auth=admin, timeout=10) as http:
        for i in range(actors):
            body = {
                "name": f"Ressourcerie lyonnaise {i} {tag}",
                "kind": "association",
                "commune_code": LYON_CODE,
                "location": {"lat": LYON_LAT + (i % 6) * 0.01, "lon": LYON_LON + (i // 6) * 0.01},
                "themes": ["reemploi", "economie_circulaire"],
                "service_types": ["fourniture_biens"],
                "description": "Collecte, tri et revente d'objets de seconde main ; ateliers de réparation.",
                "website": f"https://ressourcerie-{i}.example.org",
            }
            response = await http.post("/v1/actors", json=body)
            response.raise_for_status()
            ids.append(response.json()["id"])
    await replicated(stack, ids)
    async with httpx.AsyncClient(base_url=settings.url_for("events"), auth=admin, timeout=10) as http:
        for n, actor_id in enumerate(ids):
            for k in range(events_each):
                start = datetime.now(UTC) + timedelta(days=7 * (k + 1) + n % 5)
                event: dict[str, Any] = {
                    "title": f"Atelier réparation n°{k + 1}",
                    "kind": "workshop",
                    "themes": ["reemploi"],
                    "organizer_ids": [actor_id],
                    "starts_at": start.isoformat(),
                    "ends_at": (start + timedelta(hours=2)).isoformat(),
                    "place": {"address": "Lyon", "commune_code": LYON_CODE},
                    "capacity": 20,
                    "publish": True,
                }
                (await http.post("/v1/events", json=event)).raise_for_status()


def cpu_seconds(stack: DevStack | None) -> dict[str, float]:
    """CPU time used so far by each part of the stack (Linux /proc), and by this process."""
    used = {"bench": sum(os.times()[:2])}
    if stack is None:
        return used
    tick = os.sysconf("SC_CLK_TCK")
    stats: dict[int, tuple[int, float]] = {}  # pid -> (parent pid, seconds)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            stats[int(entry.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / tick)
    roots = {name: child.pid for name, child in stack.children.items()}
    for name, embedded in (("postgres", stack.postgres), ("broker", stack.broker)):
        if embedded is not None and embedded.process is not None:
            roots[name] = embedded.process.pid
    for name, pid in roots.items():
        # The process and its children (PostgreSQL's backends are the postmaster's children).
        used[name] = sum(seconds for p, (parent, seconds) in stats.items() if pid in (p, parent))
    return used


async def measure(
    call: Callable[[], Awaitable[None]], requests: int, concurrency: int, stack: DevStack | None = None
) -> dict[str, float]:
    timings: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await call()
            timings.append((time.perf_counter() - started) * 1000)

    for _ in range(20):  # warm connections and caches
        await call()
    cpu_before = cpu_seconds(stack)
    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - started
    cpu_after = cpu_seconds(stack)
    cpu = {f"cpu_{name}": (cpu_after[name] - cpu_before[name]) * 1000 / len(timings) for name in cpu_after}
    return {
        "p50": percentile(timings, 50),
        "p99": percentile(timings, 99),
        "rps": len(timings) / wall,
        **cpu,
    }


class CapturedClients(ServiceClients):
    """The services' answers, captured once and replayed from memory: GraphQL execution with no I/O."""

    def __init__(self, stack: DevStack, captured: dict[tuple[str, str], Any]) -> None:
        super().__init__(stack.settings)
        self.captured = captured

    async def call(self, service: str, method: str, path: str, *, principal: Principal | None, **kwargs: Any) -> Any:
        return self.captured[(service, path)]


async def partner_query(stack: DevStack, requests: int) -> dict[str, dict[str, float]]:
    settings = stack.settings
    # A partner credential recorded by the gateway, with the rate its contract allows.
    conn = await asyncpg.connect(settings.database_url_for("gateway"))
    try:
        row, token = await issue_credential(
            settings, conn, name="Bench partner", role=Role.PARTNER, issued_by="bench", rate_limit_per_minute=10**6
        )
    finally:
        await conn.close()
    partner = Principal(subject=row["subject"], role=Role.PARTNER, token_id=str(row["id"]))
    headers = {"Authorization": "Bearer " + token}
    limits = httpx.Limits(max_connections=CONCURRENCY * 2, max_keepalive_connections=CONCURRENCY * 2)
    forwarded = stack.operator(partner)  # what the gateway sends the services for this partner
    async with httpx.AsyncClient(headers=headers, limits=limits, timeout=30) as http:
        # (a) the services' REST APIs, the two calls the gateway makes
        async def direct() -> None:
            found = await http.get(settings.url_for("directory") + "/v1/actors", params=SEARCH, auth=forwarded)
            ids = [edge["node"]["id"] for edge in found.json()["edges"]]
            batch = await http.post(
                settings.url_for("events") + "/v1/actors/events/batch", json={"ids": ids, "first": 3}, auth=forwarded
            )
            batch.raise_for_status()

        gateway_url = f"http://{settings.host}:{settings.gateway_port}/graphql"

        # (b) the query through the gateway
        async def through_gateway() -> None:
            response = await http.post(gateway_url, json={"query": PARTNER_QUERY, "variables": VARIABLES})
            answer = response.json()
            assert not answer.get("errors") and len(answer["data"]["actors"]["edges"]) == 20, answer

        check = (await http.post(gateway_url, json={"query": PARTNER_QUERY, "variables": VARIABLES})).json()
        assert not check.get("errors"), check
        events_seen = sum(len(e["node"]["events"]) for e in check["data"]["actors"]["edges"])
        page = (await http.get(settings.url_for("directory") + "/v1/actors", params=SEARCH, auth=forwarded)).json()
        ids = [edge["node"]["id"] for edge in page["edges"]]
        batch = (
            await http.post(
                settings.url_for("events") + "/v1/actors/events/batch", json={"ids": ids, "first": 3}, auth=forwarded
            )
        ).json()
        results = {"a": await measure(direct, requests, CONCURRENCY, stack)}
        results["b"] = await measure(through_gateway, requests, CONCURRENCY, stack)

    # (c) the schema alone, on the captured answers
    clients = CapturedClients(stack, {("directory", "/v1/actors"): page, ("events", "/v1/actors/events/batch"): batch})
    gateway = Gateway(settings, clients, None, None, RateLimiter(10**9, 10**9))  # type: ignore[arg-type]
    schema = create_schema(settings)
    tune_garbage_collector()  # as the gateway process runs it (`maillage serve`)

    async def in_memory() -> None:
        result = await schema.execute(
            PARTNER_QUERY, variable_values=VARIABLES, context_value=GatewayContext(gateway, Caller(partner))
        )
        assert not result.errors, result.errors

    results["c"] = await measure(in_memory, requests, CONCURRENCY)
    await clients.aclose()
    results["meta"] = {"events": float(events_seen)}
    return results


async def bench_credential(stack: DevStack, name: str, role: Role, actor_id: str) -> str:
    """A fresh credential's token for `actor_id` in `role`, with no rate limit worth the name."""
    conn = await asyncpg.connect(stack.settings.database_url_for("gateway"))
    try:
        _, minted = await issue_credential(
            stack.settings,
            conn,
            name=name,
            role=role,
            actor_id=actor_id,
            issued_by="bench",
            rate_limit_per_minute=10**6,
        )
    finally:
        await conn.close()
    return minted


async def demo_authority_credential(stack: DevStack, name: str) -> tuple[str, str]:
    """The demo Ville de Besançon's id, and a fresh credential's token for it."""
    settings = stack.settings
    async with httpx.AsyncClient(base_url=settings.url_for("directory"), auth=stack.operator(), timeout=10) as http:
        page = (await http.get("/v1/actors", params={"kinds": ["local_authority"], "territory": ["COM-25056"]})).json()
    authority = str(page["edges"][0]["node"]["id"])
    return authority, await bench_credential(stack, name, Role.COLLECTIVITY, authority)


async def need_to_subscription(stack: DevStack, needs: int) -> dict[str, float]:
    settings = stack.settings
    _, minted = await demo_authority_credential(stack, "Ville de Besançon (bench)")
    token = "Bearer " + minted
    gateway = f"{settings.host}:{settings.gateway_port}"
    arrivals: dict[str, float] = {}
    mutation = "mutation($input: PublishNeedInput!) { publishNeed(input: $input) { id } }"
    latencies: list[float] = []
    answered: list[float] = []  # the mutation's own answer: the synchronous part of the path
    missed = 0
    async with (
        websockets.connect(
            f"ws://{gateway}/graphql", subprotocols=[websockets.Subprotocol("graphql-transport-ws")]
        ) as ws,
        httpx.AsyncClient(headers={"Authorization": token}, timeout=10) as http,
    ):
        await ws.send(json.dumps({"type": "connection_init", "payload": {"Authorization": token}}))
        assert json.loads(await ws.recv())["type"] == "connection_ack"
        query = "subscription { matchFound { needId actorId score } }"
        await ws.send(json.dumps({"id": "1", "type": "subscribe", "payload": {"query": query}}))

        async def pump() -> None:
            async for raw in ws:
                message = json.loads(raw)
                if message["type"] == "next" and message["payload"].get("data"):
                    arrivals.setdefault(message["payload"]["data"]["matchFound"]["needId"], time.perf_counter())

        pumping = asyncio.create_task(pump())
        await asyncio.sleep(1.0)
        for i in range(needs):
            body = {
                "title": f"Ressourcerie de quartier n°{i}",
                "kind": "PARTNERSHIP",
                "description": "Collecte et revente d'objets de seconde main, réemploi",
                "themes": ["reemploi"],
                "serviceTypes": ["fourniture_biens"],
                "communeCode": "25056",
                "location": {"lat": 47.2378, "lon": 6.0241},
                "deadline": (datetime.now(UTC) + timedelta(days=30)).isoformat(),
            }
            started = time.perf_counter()
            response = await http.post(
                f"http://{gateway}/graphql", json={"query": mutation, "variables": {"input": body}}
            )
            answer = response.json()
            answered.append((time.perf_counter() - started) * 1000)
            assert not answer.get("errors"), answer
            need_id = answer["data"]["publishNeed"]["id"]
            deadline = started + 5.0
            while need_id not in arrivals and time.perf_counter() < deadline:
                await asyncio.sleep(0.001)
            if need_id in arrivals:
                latencies.append((arrivals[need_id] - started) * 1000)
            else:
                missed += 1
        pumping.cancel()
    return {
        "needs": float(needs),
        "delivered": float(len(latencies)),
        "missed": float(missed),
        "p50": percentile(latencies, 50),
        "p99": percentile(latencies, 99),
        "max": max(latencies) if latencies else float("nan"),
        "answered_p50": percentile(answered, 50),
        "answered_p99": percentile(answered, 99),
    }


async def run(stack: DevStack, args: argparse.Namespace) -> dict[str, Any]:
    await seed(stack)
    return {
        "query": await partner_query(stack, args.requests),
        "subscription": await need_to_subscription(stack, args.needs),
    }


def main(args: argparse.Namespace) -> None:
    results = on_dev_stack("gateway", lambda stack: run(stack, args))
    q, s = results["query"], results["subscription"]
    print(
        f"\nGateway on {os.cpu_count()} cores, whole stack (`maillage dev`: every service, gateway, PostgreSQL 18, Tansu)"
    )
    print(
        f"\npartner query: 20 actors near Lyon with a theme, 16 fields each, next 3 events each "
        f"({q['meta']['events']:.0f} events in the answer); {args.requests} requests at concurrency {CONCURRENCY}"
    )
    print(f"{'':<44} {'p50 ms':>8} {'p99 ms':>8} {'req/s':>8}")
    for key, label in (
        ("a", "(a) services' REST APIs directly (2 calls)"),
        ("b", "(b) through the gateway (GraphQL over HTTP)"),
        ("c", "(c) gateway schema on in-memory answers"),
    ):
        row = q[key]
        print(f"{label:<44} {row['p50']:>8.1f} {row['p99']:>8.1f} {row['rps']:>8.0f}")
    parts = [key.removeprefix("cpu_") for key in q["a"] if key.startswith("cpu_")]
    print(f"\nCPU ms per request, by process (the whole stack shares {os.cpu_count()} cores)")
    print(f"{'':<6}" + "".join(f"{part:>10}" for part in parts) + f"{'total':>10}")
    for key in ("a", "b", "c"):
        row = q[key]
        cells = [row.get(f"cpu_{part}") for part in parts]
        total = sum(cell for cell in cells if cell is not None)
        print(
            f"{'(' + key + ')':<6}"
            + "".join(f"{cell:>10.2f}" if cell is not None else f"{'':>10}" for cell in cells)
            + f"{total:>10.2f}"
        )
    bound = q["a"]["p50"] + q["c"]["p50"] + 5
    print(f"target: (b) p50 {q['b']['p50']:.1f} ms <= (a) + (c) + 5 = {bound:.1f} ms; (b) >= 50 req/s")
    print(f"\npublishNeed -> matchFound on the subscription, one need at a time, {s['needs']:.0f} needs")
    print(f"{'delivered':>10} {'missed':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{s['delivered']:>10.0f} {s['missed']:>7.0f} {s['p50']:>8.1f} {s['p99']:>8.1f} {s['max']:>8.1f}")
    print(f"of which the mutation's answer: p50 {s['answered_p50']:.1f} ms, p99 {s['answered_p99']:.1f} ms")
    print("target: p50 < 100 ms, p99 < 300 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--needs", type=int, default=200)
    main(parser.parse_args())
