"""A real browser for the page tests: Debian's Chromium driven by Playwright, with no network but 127.0.0.1.

Chromium is launched by its path (no browser download): tests skip without it, except under
`MAILLAGE_REQUIRE_BROWSER=1` (CI), where they fail. Every context aborts requests to any other host and the
fixture fails the test if a page asked for one, so a page that needs the internet cannot pass. Screenshots go to
`.maillage/screenshots/`, where people look at them; axe-core (vendored in tests/vendor/) checks accessibility.
"""

from __future__ import annotations

import os
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, BrowserContext, Page, Request, Route, ViewportSize, async_playwright

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")  # Debian's package
AXE = ROOT / "tests" / "vendor" / "axe-core" / "axe.min.js"
SCREENSHOTS = ROOT / ".maillage" / "screenshots"
LOCAL_HOSTS = {"127.0.0.1"}
# The widths people read the pages at: a laptop, and a small phone (the narrowest the pages must fit).
DESKTOP = ViewportSize(width=1280, height=900)
PHONE = ViewportSize(width=375, height=740)


def require_browser() -> None:
    if CHROMIUM.is_file():
        return
    if os.environ.get("MAILLAGE_REQUIRE_BROWSER") == "1":
        pytest.fail(f"{CHROMIUM} is required (MAILLAGE_REQUIRE_BROWSER=1): apt-get install chromium")
    pytest.skip(f"{CHROMIUM} is not installed (Debian package chromium)")


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    require_browser()
    async with async_playwright() as playwright:
        # In French, as its users' browsers are: the date fields then read jj/mm/aaaa (from Debian's chromium-l10n;
        # without it Chromium keeps en-US, whatever the context's locale).
        launched = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"], env={**os.environ, "LANGUAGE": "fr"}
        )
        try:
            yield launched
        finally:
            await launched.close()


class LocalOnly:
    """Routes every request of a context: 127.0.0.1 passes, anything else is aborted and remembered."""

    def __init__(self) -> None:
        self.refused: list[str] = []

    async def __call__(self, route: Route) -> None:
        url = route.request.url
        if url.startswith(("data:", "blob:")) or urlsplit(url).hostname in LOCAL_HOSTS:
            await route.continue_()
        else:
            self.refused.append(url)
            await route.abort("blockedbyclient")


NewPage = Callable[..., Awaitable[Page]]


@pytest.fixture
async def new_page(browser: Browser) -> AsyncIterator[NewPage]:
    """`await new_page(viewport=PHONE)`: a page in a context of its own (its own cookies), French, local only."""
    contexts: list[tuple[BrowserContext, LocalOnly]] = []

    async def make(viewport: ViewportSize | None = None, **options: Any) -> Page:
        context = await browser.new_context(
            viewport=viewport or DESKTOP, locale="fr-FR", timezone_id="Europe/Paris", **options
        )
        guard = LocalOnly()
        await context.route("**/*", guard)
        contexts.append((context, guard))
        return await context.new_page()

    yield make
    refused = [url for _, guard in contexts for url in guard.refused]
    for context, _ in contexts:
        await context.close()
    assert not refused, f"pages asked for hosts other than 127.0.0.1: {refused}"


async def screenshot(page: Page, name: str) -> Path:
    """A full-page screenshot under .maillage/screenshots/ (`name` without extension)."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{re.sub(r'[^a-z0-9_.-]+', '-', name.lower())}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path


async def accessibility_violations(page: Page, impacts: tuple[str, ...] = ("serious", "critical")) -> list[str]:
    """axe-core's violations of these impacts on the page as it is now, one line each (empty when none)."""
    if not await page.evaluate("() => typeof window.axe !== 'undefined'"):
        # Evaluated rather than added as a <script>: a page's Content-Security-Policy refuses inline scripts.
        await page.evaluate(AXE.read_text())
    report = await page.evaluate("async () => await window.axe.run(document, {resultTypes: ['violations']})")
    return [
        f"{violation['id']} ({violation['impact']}): {violation['help']} — "
        + ", ".join(str(node["target"]) for node in violation["nodes"][:5])
        for violation in report["violations"]
        if violation["impact"] in impacts
    ]


def failed_requests(page: Page) -> list[str]:
    """The URLs of the page's requests that fail from now on (a file the page needs and cannot load)."""
    failed: list[str] = []

    def record(request: Request) -> None:
        failed.append(request.url)

    page.on("requestfailed", record)
    return failed


async def horizontal_overflow(page: Page) -> int:
    """How many CSS pixels the page is wider than its viewport (0 when nothing scrolls sideways)."""
    return int(await page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth"))
