"""GraphiQL runs in a real browser (Debian's Chromium, through Playwright) with no network but the gateway."""

from __future__ import annotations

from tests.integration.browser_fixtures import DESKTOP, PHONE, NewPage, failed_requests, screenshot
from tests.integration.gateway_fixtures import Gateway


async def test_graphiql_opens_its_editor_from_the_gateways_own_files(gateway: Gateway, new_page: NewPage) -> None:
    for name, viewport in (("desktop", DESKTOP), ("phone", PHONE)):
        page = await new_page(viewport=viewport)
        failed = failed_requests(page)
        await page.goto(gateway.url + "/graphql", wait_until="networkidle")
        await page.locator(".graphiql-editor").first.wait_for(state="visible", timeout=15_000)
        assert await page.locator(".graphiql-editor").count() >= 1
        assert failed == []  # every file came from the gateway (new_page also fails on any other host)
        path = await screenshot(page, f"graphiql-{name}")
        assert path.stat().st_size > 10_000
