"""GraphiQL on the gateway loads only the gateway's own files: no CDN, each file served, matching its integrity."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urljoin

import httpx
import pytest

from gateway.graphiql import STATIC_DIR
from tests.integration.gateway_fixtures import Gateway

CHROMIUM = shutil.which("chromium", path="/usr/bin")  # Debian's; tests skip without it
TYPES = {".js": ("text/javascript", "application/javascript"), ".css": ("text/css",)}


class Assets(HTMLParser):
    """The scripts and stylesheets a page loads, with their integrity attributes."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[tuple[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        url = values.get("src") if tag == "script" else values.get("href") if tag == "link" else None
        if url is not None:
            self.found.append((url, values.get("integrity")))


async def graphiql_page(gateway: Gateway) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.get(gateway.url + "/graphql", headers={"Accept": "text/html"})


async def test_the_graphiql_page_names_no_other_host_and_allows_scripts_from_the_gateway_only(gateway: Gateway) -> None:
    page = await graphiql_page(gateway)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for outside in ("http://", "https://", "//cdn", "unpkg", "esm.sh", "jsdelivr"):
        assert outside not in page.text, outside
    policy = page.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "default-src 'none'" in policy and "connect-src 'self'" in policy
    assert "<script>" not in page.text  # no inline script: the policy would refuse it
    parser = Assets()
    parser.feed(page.text)
    urls = [url for url, _ in parser.found]
    assert all(not re.match(r"^([a-z]+:)?//", url) for url in urls), urls
    assert {u for u in urls if u.endswith(".js")} >= {
        "static/graphiql/react/react.production.min.js",
        "static/graphiql/react-dom/react-dom.production.min.js",
        "static/graphiql/graphiql/graphiql.min.js",
        "static/graphiql/plugin-explorer/index.umd.js",
        "static/graphiql/maillage/start.js",
    }


async def test_every_file_the_page_loads_is_served_with_its_type_and_matches_its_integrity(gateway: Gateway) -> None:
    page = await graphiql_page(gateway)
    parser = Assets()
    parser.feed(page.text)
    assets = [(url, integrity) for url, integrity in parser.found if not url.startswith("data:")]
    assert len(assets) >= 7
    async with httpx.AsyncClient() as http:
        for url, integrity in assets:
            assert not re.match(r"^([a-z]+:)?//", url), url  # fetched from the gateway only
            served = await http.get(urljoin(str(page.url), url))
            assert served.status_code == 200, url
            assert served.headers["content-type"].split(";")[0] in TYPES[Path(url).suffix], (url, served.headers)
            if integrity is not None:
                digest = "sha384-" + base64.b64encode(hashlib.sha384(served.content).digest()).decode()
                assert digest == integrity, url
        missing = await http.get(gateway.url + "/static/graphiql/nope.js")
    assert missing.status_code == 404


def test_each_vendored_package_carries_its_licence() -> None:
    for folder in STATIC_DIR.iterdir():
        if folder.name != "maillage":  # the page's own files, adapted from strawberry's (credited in them)
            licence = folder / "LICENSE"
            assert licence.is_file() and "MIT License" in licence.read_text(), folder


async def test_graphiql_starts_in_a_real_browser_with_no_network_but_the_gateway(gateway: Gateway) -> None:
    if CHROMIUM is None:
        if os.environ.get("MAILLAGE_REQUIRE_BROWSER") == "1":
            pytest.fail("/usr/bin/chromium is required (MAILLAGE_REQUIRE_BROWSER=1)")
        pytest.skip("/usr/bin/chromium is not installed")
    process = await asyncio.create_subprocess_exec(
        CHROMIUM,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        # Any host but the gateway's is unreachable: a CDN script left in the page would not load.
        "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
        "--virtual-time-budget=15000",
        "--dump-dom",
        gateway.url + "/graphql",
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    dom, _ = await asyncio.wait_for(process.communicate(), 120)
    text = dom.decode()
    assert "graphiql-editors" in text or "graphiql-editor" in text, text[:2000]
    assert "Loading…" not in text
