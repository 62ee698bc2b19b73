"""Console benchmark on the whole stack: a local authority's pages server-rendered, and a need published from the
browser until its first match is visible on its page.

Run `python -m bench.console [--requests 200] [--needs 50]`. Prints a table; it is not a test.

Everything runs on `maillage dev` (every service, the gateway, the embedded PostgreSQL and broker, demo data)
started in this process's children. A session is a credential in the console's cookie, as the sign-in makes one:
one of the demo authority (Besançon), one of the demo actor its need is matched to first.
- Pages, each fetched `--requests` times at concurrency 8 (each page is one or more GraphQL operations through the
  gateway's entry: authentication and revocation, rate, cost), one after the other:
  the sign-in page (no session); the authority's home, `/besoins`, `/besoins/nouveau`, the commune picker's
  answer, `/besoins/{id}` (a need with its matches) and `/besoins/{id}/modifier`; the actor's home, its inbox
  `/propositions`, a proposal `/propositions/{id}` and its profile `/profil`.
- Need → first match: Debian's Chromium fills the publish form (commune searched without JavaScript), submits it,
  and waits until the need's page shows a first match (server-rendered if matching was quicker than the page,
  else arriving over the page's live stream). Timed from the click to the match visible.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time
from collections.abc import Awaitable, Callable
from datetime import date, timedelta
from typing import Any

import httpx
from playwright.async_api import async_playwright

from bench.directory import percentile
from bench.gateway import bench_credential, demo_authority_credential
from bench.matching import on_dev_stack
from gateway.console.web import SESSION_COOKIE
from services.common.auth import Role
from services.launch.devstack import DevStack

CONCURRENCY = 8
CHROMIUM = "/usr/bin/chromium"
NEED = {
    "title": "Ressourcerie de quartier",
    "kind": "PARTNERSHIP",
    "description": "Collecte et revente d'objets de seconde main, réemploi",
    "themes": ["reemploi"],
    "serviceTypes": ["fourniture_biens"],
    "communeCode": "25056",
    "location": {"lat": 47.2378, "lon": 6.0241},
}


async def session_of_demo_authority(stack: DevStack) -> tuple[str, str]:
    return await demo_authority_credential(stack, "Ville de Besançon (bench console)")


async def measure(call: Callable[[], Awaitable[None]], requests: int) -> dict[str, float]:
    timings: list[float] = []
    remaining = iter(range(requests))

    async def worker() -> None:
        for _ in remaining:
            started = time.perf_counter()
            await call()
            timings.append((time.perf_counter() - started) * 1000)

    for _ in range(10):  # warm connections and caches
        await call()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    return {"p50": percentile(timings, 50), "p95": percentile(timings, 95), "n": float(len(timings))}


async def graphql(http: httpx.AsyncClient, token: str, query: str, variables: dict[str, Any]) -> dict[str, Any]:
    answer = (
        await http.post(
            "/graphql", headers={"Authorization": f"Bearer {token}"}, json={"query": query, "variables": variables}
        )
    ).json()
    assert not answer.get("errors"), answer
    return dict(answer["data"])


async def measure_pages(
    http: httpx.AsyncClient, paths: list[str], requests: int, shown: Callable[[str], str]
) -> dict[str, dict[str, float]]:
    results: dict[str, dict[str, float]] = {}
    for path in paths:

        async def get(path: str = path) -> None:
            response = await http.get(path)
            assert response.status_code == 200, (path, response.status_code, response.text[:500])

        results[shown(path)] = await measure(get, requests)
    return results


async def pages(stack: DevStack, base: str, token: str, requests: int) -> dict[str, dict[str, float]]:
    deadline = (date.today() + timedelta(days=30)).isoformat() + "T23:00:00+01:00"
    async with httpx.AsyncClient(base_url=base, timeout=30) as http:
        published = await graphql(
            http,
            token,
            "mutation($input: PublishNeedInput!) { publishNeed(input: $input) { id } }",
            {"input": {**NEED, "deadline": deadline}},
        )
        need_id = published["publishNeed"]["id"]
        matches: list[dict[str, Any]] = []
        for _ in range(50):  # its matches are found within a second or so
            await asyncio.sleep(0.2)
            found = await graphql(
                http, token, "query($n: ID!) { need(id: $n) { matches(first: 1) { id actorId } } }", {"n": need_id}
            )
            if matches := found["need"]["matches"]:
                break
        assert matches, "the bench's need found no match"
        match_id, actor_id = matches[0]["id"], matches[0]["actorId"]
        actor_token = await bench_credential(stack, "Acteur démo (bench console)", Role.ACTOR, actor_id)

        def shown(path: str) -> str:
            return path.replace(need_id, "{id}").replace(match_id, "{id}")

        results = await measure_pages(http, ["/connexion"], requests, shown)
        http.cookies.set(SESSION_COOKIE, token)
        authority_pages = [
            "/",
            "/besoins",
            "/besoins/nouveau",
            "/besoins/communes?commune_recherche=Besan",
            f"/besoins/{need_id}",
            f"/besoins/{need_id}/modifier",
        ]
        results |= {
            f"{path} (collectivité)": row
            for path, row in (await measure_pages(http, authority_pages, requests, shown)).items()
        }
        http.cookies.set(SESSION_COOKIE, actor_token)
        actor_pages = ["/", "/propositions", f"/propositions/{match_id}", "/profil"]
        results |= {
            f"{path} (acteur)": row for path, row in (await measure_pages(http, actor_pages, requests, shown)).items()
        }
    return results


async def need_to_first_match(base: str, token: str, needs: int) -> dict[str, float]:
    latencies: list[float] = []
    missed = 0
    deadline = (date.today() + timedelta(days=30)).isoformat()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = await browser.new_context(locale="fr-FR")
        await context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": base}])
        page = await context.new_page()
        for i in range(needs):
            await page.goto(base + "/besoins/nouveau")
            await page.locator("#champ-commune-recherche").fill("Besançon")
            await page.locator("button[value=chercher-commune]").click()
            await page.locator("input[name=communeCode][value^='25056|']").check()
            await page.locator("#champ-title").fill(f"{NEED['title']} n°{i}")
            await page.locator("#champ-description").fill(str(NEED["description"]))
            await page.locator("#champ-kind").select_option("PARTNERSHIP")
            await page.locator("input[name=themes][value=reemploi]").check()
            await page.locator("input[name=serviceTypes][value=fourniture_biens]").check()
            await page.locator("#champ-location-lat").fill("47.2378")
            await page.locator("#champ-location-lon").fill("6.0241")
            await page.locator("#champ-deadline").fill(deadline)
            started = time.perf_counter()
            await page.locator("button[value=enregistrer]").click()
            try:
                await page.locator(".correspondance").first.wait_for(state="visible", timeout=10_000)
            except Exception:  # a need without a match visible within 10 s counts as missed
                missed += 1
                need_id = page.url.rsplit("/", 1)[1]
                async with httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}) as http:
                    answer = await http.post(
                        base + "/graphql",
                        json={
                            "query": "query($n: ID!) { need(id: $n) { matchCounts { total } } }",
                            "variables": {"n": need_id},
                        },
                    )
                print(f"missed: {page.url} {answer.json()}")
                continue
            latencies.append((time.perf_counter() - started) * 1000)
        await browser.close()
    return {
        "needs": float(needs),
        "missed": float(missed),
        "p50": percentile(latencies, 50) if latencies else float("nan"),
        "p99": percentile(latencies, 99) if latencies else float("nan"),
        "max": max(latencies) if latencies else float("nan"),
    }


async def run(stack: DevStack, args: argparse.Namespace) -> dict[str, Any]:
    settings = stack.settings
    base = f"http://{settings.host}:{settings.gateway_port}"
    _, token = await session_of_demo_authority(stack)
    return {
        "pages": await pages(stack, base, token, args.requests) if args.requests else {},
        "match": await need_to_first_match(base, token, args.needs),
    }


def main(args: argparse.Namespace) -> None:
    results = on_dev_stack("console", lambda stack: run(stack, args))
    print(f"\nConsole on {os.cpu_count()} cores, whole stack (`maillage dev`), concurrency {CONCURRENCY}")
    print(f"{'page':<58} {'requests':>9} {'p50 ms':>8} {'p95 ms':>8}")
    for path, row in results["pages"].items():
        print(f"{path:<58} {row['n']:>9.0f} {row['p50']:>8.1f} {row['p95']:>8.1f}")
    print("target: p95 < 150 ms")
    m = results["match"]
    print(f"\nneed published from the browser -> first match visible on its page, {m['needs']:.0f} needs")
    print(f"{'missed':>7} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    print(f"{m['missed']:>7.0f} {m['p50']:>8.1f} {m['p99']:>8.1f} {m['max']:>8.1f}")
    print("target: p99 < 1000 ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--needs", type=int, default=50)
    main(parser.parse_args())
