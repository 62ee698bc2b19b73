"""The console's frame on the real gateway: pages in French under a strict policy, sessions that are credentials
(revoked: signed out on the next page), CSRF tokens bound to the session, and pages fit for people in a browser."""

from __future__ import annotations

import re
import uuid

import asyncpg
import httpx

from gateway.console.web import SESSION_COOKIE, Console
from services.common.auth import Role
from tests.integration.browser_fixtures import (
    DESKTOP,
    PHONE,
    NewPage,
    accessibility_violations,
    horizontal_overflow,
    screenshot,
)
from tests.integration.gateway_fixtures import Gateway
from tests.integration.identities import credential_token
from tests.integration.test_gateway import register


def session_token(gateway: Gateway, role: Role, actor_id: str | None) -> str:
    """A session as the sign-in will make one: a credential of the gateway, its token in the session cookie."""
    return credential_token(gateway.settings, role, actor_id, f"person:{uuid.uuid4()}")


async def page(gateway: Gateway, path: str, token: str | None = None) -> httpx.Response:
    cookies = {SESSION_COOKIE: token} if token else {}
    async with httpx.AsyncClient(base_url=gateway.url, cookies=cookies) as http:
        return await http.get(path)


async def test_the_home_page_is_french_html_under_a_policy_that_allows_the_gateway_only(gateway: Gateway) -> None:
    answer = await page(gateway, "/")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/html")
    assert '<html lang="fr">' in answer.text and "Se connecter" in answer.text
    policy = answer.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "script-src 'self'" in policy and "form-action 'self'" in policy
    assert answer.headers["cache-control"] == "no-store" and answer.headers["referrer-policy"] == "no-referrer"
    for outside in ("http://", "https://", "//cdn"):
        assert outside not in answer.text, outside
    css = await page(gateway, "/static/console/console.css")
    assert css.status_code == 200 and css.headers["content-type"].startswith("text/css")
    htmx = await page(gateway, "/static/console/vendor/htmx/htmx.min.js")
    assert htmx.status_code == 200 and "htmx" in htmx.text


async def test_a_session_shows_its_actor_and_a_revoked_one_is_signed_out_on_the_next_page(gateway: Gateway) -> None:
    authority = await register(
        gateway, f"Ville de Dole {uuid.uuid4().hex[:6]}", kind="local_authority", legalForm="Commune", activities=[]
    )
    token = session_token(gateway, Role.COLLECTIVITY, authority["id"])
    signed_in = await page(gateway, "/", token)
    assert signed_in.status_code == 200
    assert (
        authority["name"] in signed_in.text and "Mes besoins" in signed_in.text and "Se déconnecter" in signed_in.text
    )
    credential_id = Console.token_id(token)
    conn = await asyncpg.connect(gateway.settings.database_url_for("gateway"))
    try:
        await conn.execute(
            "UPDATE credentials SET revoked_at = now(), revoked_by = 'test' WHERE id = $1", credential_id
        )
    finally:
        await conn.close()
    revoked = await page(gateway, "/", token)
    assert revoked.status_code == 200
    assert (
        authority["name"] not in revoked.text
        and "Se connecter" in revoked.text
        and "Se déconnecter" not in revoked.text
    )


async def revoked(gateway: Gateway, token: str) -> bool:
    conn = await asyncpg.connect(gateway.settings.database_url_for("gateway"))
    try:
        return bool(
            await conn.fetchval("SELECT revoked_at IS NOT NULL FROM credentials WHERE id = $1", Console.token_id(token))
        )
    finally:
        await conn.close()


async def test_a_form_whose_token_is_missing_or_another_sessions_is_refused_and_changes_nothing(
    gateway: Gateway,
) -> None:
    authority = await register(
        gateway, f"Ville de Gray {uuid.uuid4().hex[:6]}", kind="local_authority", legalForm="Commune", activities=[]
    )
    token = session_token(gateway, Role.COLLECTIVITY, authority["id"])
    other = session_token(gateway, Role.COLLECTIVITY, authority["id"])
    mine = re.search(r'name="csrf" value="([^"]+)"', (await page(gateway, "/", token)).text)
    theirs = re.search(r'name="csrf" value="([^"]+)"', (await page(gateway, "/", other)).text)
    assert mine is not None and theirs is not None and mine.group(1) != theirs.group(1)  # bound to each session
    async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: token}) as http:
        for form in ({}, {"csrf": ""}, {"csrf": theirs.group(1)}, {"csrf": mine.group(1)[:-2] + "xx"}):
            refused = await http.post("/deconnexion", data=form)
            assert refused.status_code == 403, form
            assert "Formulaire refusé" in refused.text and '<html lang="fr">' in refused.text
        assert not await revoked(gateway, token)  # nothing changed
        assert authority["name"] in (await http.get("/")).text
        left = await http.post("/deconnexion", data={"csrf": mine.group(1)})
    assert left.status_code == 303 and left.headers["location"] == "/"
    assert SESSION_COOKIE in left.headers["set-cookie"] and "Max-Age=0" in left.headers["set-cookie"]
    assert await revoked(gateway, token)  # revoked, not only forgotten: a copied cookie stops working
    assert "Se connecter" in (await page(gateway, "/", token)).text
    assert not await revoked(gateway, other)


async def test_the_home_pages_are_usable_on_a_phone_and_pass_axe(gateway: Gateway, new_page: NewPage) -> None:
    authority = await register(
        gateway, f"Ville de Lons {uuid.uuid4().hex[:6]}", kind="local_authority", legalForm="Commune", activities=[]
    )
    token = session_token(gateway, Role.COLLECTIVITY, authority["id"])
    for signed_in in (False, True):
        for width, viewport in (("bureau", DESKTOP), ("telephone", PHONE)):
            browser_page = await new_page(viewport=viewport)
            if signed_in:
                await browser_page.context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": gateway.url}])
            await browser_page.goto(gateway.url + "/")
            assert await browser_page.locator("h1").count() == 1
            assert await accessibility_violations(browser_page) == []
            assert await horizontal_overflow(browser_page) == 0
            await screenshot(browser_page, f"console-accueil-{'connecte' if signed_in else 'visiteur'}-{width}")
