"""People and sign-in on the real stack: the directory's persons and memberships (the gateway alone looks them up, admins
invite, no address in events), one-time links from the SMTP sink, their confirming POST, sessions that are revocable
credentials, switching between memberships, and the sign-in pages in a browser."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from collections.abc import AsyncIterator
from email.message import EmailMessage
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

import asyncpg
import httpx
import pytest
from playwright.async_api import Page

from gateway.console.web import BROWSER_COOKIE, SESSION_COOKIE, Console
from gateway.sessions import address_key
from services.common.auth import Role, service_headers
from services.common.settings import Settings
from tests.integration.browser_fixtures import (
    DESKTOP,
    PHONE,
    NewPage,
    accessibility_violations,
    horizontal_overflow,
    screenshot,
)
from tests.integration.directory_fixtures import Directory
from tests.integration.gateway_fixtures import Gateway, running_gateway
from tests.integration.identities import forwarded
from tests.integration.matching_fixtures import SmtpSink, smtp_sink
from tests.integration.test_gateway import ONLINE, publish_event, register

PER_ADDRESS = 3


@contextlib.asynccontextmanager
async def signing_gateway(settings: Settings, **overrides: Any) -> AsyncIterator[tuple[Gateway, SmtpSink]]:
    with smtp_sink() as (sink, port):
        async with running_gateway(
            settings,
            smtp_port=port,
            email_enabled=True,
            console_secure_cookies=False,  # plain http://127.0.0.1, as the embedded stack
            console_sign_in_per_address_per_hour=PER_ADDRESS,
            console_sign_in_per_ip_per_hour=1000,
            **overrides,
        ) as gateway:
            yield gateway, sink


@pytest.fixture(scope="module")
async def signing(gateway_settings: Settings) -> AsyncIterator[tuple[Gateway, SmtpSink]]:
    """A gateway that sends its e-mails to a sink of its own (its links lead to the session's gateway address)."""
    async with signing_gateway(gateway_settings) as running:
        yield running


def email() -> str:
    return f"p{uuid.uuid4().hex[:10]}@example.org"


async def member_of(
    directory: Directory, actor_id: str, address: str, name: str, role: str = "member"
) -> dict[str, Any]:
    async with directory.client() as http:
        answer = await http.post(
            f"/v1/actors/{actor_id}/members",
            json={"email": address, "name": name, "role": role},
            headers=directory.admin,
        )
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


class Browser:
    """A browser without a browser: one cookie jar, forms posted with the page's CSRF token."""

    def __init__(self, gateway: Gateway) -> None:
        self.http = httpx.AsyncClient(base_url=gateway.url, timeout=30)

    async def __aenter__(self) -> Browser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.http.aclose()

    async def get(self, path: str) -> httpx.Response:
        return await self.http.get(path)

    @staticmethod
    def csrf(page: httpx.Response) -> str:
        found = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert found is not None, page.text[:2000]
        return found.group(1)

    async def submit(self, page: httpx.Response, action: str, **fields: str) -> httpx.Response:
        return await self.http.post(action, data={"csrf": self.csrf(page), **fields})

    async def ask_for_link(self, address: str) -> httpx.Response:
        form = await self.get("/connexion")
        return await self.submit(form, "/connexion", email=address)

    @property
    def session(self) -> str | None:
        return self.http.cookies.get(SESSION_COOKIE)


def mails_to(sink: SmtpSink, address: str) -> list[EmailMessage]:
    """The messages sent to `address` (parsed with the default policy: `EmailMessage`s)."""
    return [cast(EmailMessage, m) for m in sink.messages if m["To"] == address]


async def link_for(sink: SmtpSink, address: str, count: int = 1, timeout_s: float = 10.0) -> str:
    """The path and query of the `count`-th sign-in link e-mailed to `address` (waits for it)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while len(mails_to(sink, address)) < count:
        assert asyncio.get_running_loop().time() < deadline, f"no e-mail to {address}"
        await asyncio.sleep(0.05)
    body = mails_to(sink, address)[count - 1].get_content()
    found = re.search(r"https?://\S+/connexion/lien\?jeton=\S+", body)
    assert found is not None, body
    url = urlsplit(found.group(0))
    return f"{url.path}?{url.query}"


async def sign_in(browser: Browser, sink: SmtpSink, address: str) -> httpx.Response:
    """Ask for a link, open it, press its button: the answer to the button."""
    sent = len(mails_to(sink, address))
    assert "Consultez votre messagerie" in (await browser.ask_for_link(address)).text
    confirm = await browser.get(await link_for(sink, address, sent + 1))
    assert confirm.status_code == 200 and "Me connecter" in confirm.text
    jeton = re.search(r'name="jeton" value="([^"]+)"', confirm.text)
    assert jeton is not None
    return await browser.submit(confirm, "/connexion/lien", jeton=jeton.group(1))


async def gateway_db(gateway: Gateway) -> asyncpg.Connection:
    return await asyncpg.connect(gateway.settings.database_url_for("gateway"))


# --- the directory's persons --------------------------------------------------------------------------


async def test_persons_are_looked_up_by_the_gateway_only_and_invited_by_admins(
    directory: Directory, gateway: Gateway
) -> None:
    authority = await register(
        gateway, f"Ville de Vesoul {uuid.uuid4().hex[:6]}", kind="local_authority", activities=[]
    )
    other = await register(gateway, f"Ressourcerie {uuid.uuid4().hex[:6]}")
    admin_address, member_address = email(), email()
    admin = await member_of(directory, authority["id"], admin_address.upper(), "Alice Admin", "admin")
    assert admin["role"] == "admin" and admin["person"]["email"] == admin_address.upper()
    as_gateway = service_headers(directory.settings, "gateway")
    async with directory.client() as http:
        found = await http.post("/v1/persons/lookup", json={"email": admin_address}, headers=as_gateway)
        assert found.status_code == 200, found.text
        body = found.json()
        assert body["person"]["id"] == admin["person"]["id"]  # addresses are one person whatever their case
        assert body["memberships"] == [
            {
                "actor": {"id": authority["id"], "name": authority["name"], "kind": "local_authority"},
                "role": "admin",
                "created_at": body["memberships"][0]["created_at"],
            }
        ]
        unknown = await http.post("/v1/persons/lookup", json={"email": email()}, headers=as_gateway)
        assert unknown.json() == {"person": None, "memberships": []}
        for refused_headers, status in (
            ({}, 401),
            (directory.admin, 403),  # not even an admin: persons are the gateway's to look up
            (service_headers(directory.settings, "matching"), 403),
        ):
            refused = await http.post("/v1/persons/lookup", json={"email": admin_address}, headers=refused_headers)
            assert refused.status_code == status, (refused_headers, refused.text)
        bad = await http.post("/v1/persons/lookup", json={"email": "pas une adresse"}, headers=as_gateway)
        assert bad.status_code == 422 and "email" in bad.text

        # The actor's own admin member invites; a plain member, another actor and a partner do not.
        own_admin = forwarded(
            directory.settings, Role.COLLECTIVITY, authority["id"], subject=f"person:{admin['person']['id']}"
        )
        invited = await http.post(
            f"/v1/actors/{authority['id']}/members",
            json={"email": member_address, "name": "Bruno Membre"},
            headers=own_admin,
        )
        assert invited.status_code == 201 and invited.json()["role"] == "member", invited.text
        plain = forwarded(
            directory.settings, Role.COLLECTIVITY, authority["id"], subject=f"person:{invited.json()['person']['id']}"
        )
        for headers in (
            plain,
            forwarded(directory.settings, Role.ACTOR, other["id"], subject=f"person:{admin['person']['id']}"),
            forwarded(directory.settings, Role.PARTNER, scopes=("directory:write",)),
        ):
            refused = await http.post(
                f"/v1/actors/{authority['id']}/members", json={"email": email(), "name": "X"}, headers=headers
            )
            assert refused.status_code == 403, refused.text
        listed = await http.get(f"/v1/actors/{authority['id']}/members", headers=own_admin)
        assert {m["person"]["email"] for m in listed.json()} == {admin_address.upper(), member_address}
        assert (await http.get(f"/v1/actors/{authority['id']}/members", headers=plain)).status_code == 403
        removed = await http.delete(
            f"/v1/actors/{authority['id']}/members/{invited.json()['person']['id']}", headers=own_admin
        )
        assert removed.status_code == 204
        again = await http.post("/v1/persons/lookup", json={"email": member_address}, headers=as_gateway)
        assert again.json()["person"] is not None and again.json()["memberships"] == []

        # Erasure deletes the person (and its memberships).
        erased = await http.post("/v1/erasures", json={"email": member_address}, headers=directory.admin)
        assert erased.status_code == 200, erased.text
        assert erased.json() == {"persons_deleted": 1, "memberships_deleted": 0, "claims_deleted": 0}  # removed before
        gone = await http.post("/v1/persons/lookup", json={"email": member_address}, headers=as_gateway)
        assert gone.json()["person"] is None
        assert (await http.post("/v1/erasures", json={"email": admin_address}, headers=own_admin)).status_code == 403

    conn = await asyncpg.connect(directory.database_url)
    try:
        said = await conn.fetchval(
            """SELECT count(*) FROM outbox
               WHERE (data::text || headers::text) ILIKE '%' || $1 || '%' OR data::text ILIKE '%Alice Admin%'""",
            admin_address,
        )
        about_authority = await conn.fetchval("SELECT count(*) FROM outbox WHERE key = $1", authority["id"])
    finally:
        await conn.close()
    assert about_authority >= 1  # the authority's own events are there, and say none of it
    assert said == 0, "no event carries a person's address or name"


# --- signing in -----------------------------------------------------------------------------------------


async def test_a_link_from_the_mail_signs_in_once_and_the_session_is_a_revocable_credential(
    directory: Directory, signing: tuple[Gateway, SmtpSink]
) -> None:
    gateway, sink = signing
    authority = await register(gateway, f"Ville de Dole {uuid.uuid4().hex[:6]}", kind="local_authority", activities=[])
    address = email()
    person = (await member_of(directory, authority["id"], address, "Claire Dupont"))["person"]
    async with Browser(gateway) as browser:
        assert "Consultez votre messagerie" in (await browser.ask_for_link(address)).text
        path = await link_for(sink, address)
        letter = mails_to(sink, address)[0]
        assert letter["Subject"] == "Votre lien de connexion à Maillage"
        assert "Claire Dupont" in letter.get_content()
        # Opening the link (as a mail scanner does) signs nobody in and uses nothing.
        for _ in range(2):
            opened = await browser.get(path)
            assert opened.status_code == 200 and "Me connecter" in opened.text
        assert browser.session is None
        token = parse_qs(urlsplit(path).query)["jeton"][0]
        conn = await gateway_db(gateway)
        try:
            stored = await conn.fetchrow("SELECT * FROM sign_in_links WHERE email = $1", address)
            assert (
                stored is not None and stored["used_at"] is None and token.encode() not in bytes(stored["token_hash"])
            )
            assert str(stored["person_id"]) == person["id"]
        finally:
            await conn.close()
        signed_in = await browser.submit(opened, "/connexion/lien", jeton=token)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/"
        cookie = signed_in.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=lax" in cookie and "Secure" not in cookie  # the tests' http://
        session = browser.session
        assert session is not None
        home = await browser.get("/")
        assert authority["name"] in home.text and "Mes besoins" in home.text and "Mes espaces" in home.text

        conn = await gateway_db(gateway)
        try:
            credential = await conn.fetchrow("SELECT * FROM credentials WHERE id = $1", Console.token_id(session))
            assert credential["role"] == "collectivity" and credential["actor_id"] == authority["id"]
            assert credential["subject"] == f"person:{person['id']}"
            lifetime = (credential["expires_at"] - credential["issued_at"]).total_seconds()
            assert abs(lifetime - gateway.settings.console_session_absolute_s) < 5
            # The link served once: opening it again, or pressing its button again, is refused plainly.
            reused = await browser.get(path)
            assert reused.status_code == 410 and "Lien expiré ou déjà utilisé" in reused.text
            pressed = await browser.http.post("/connexion/lien", data={"csrf": browser.csrf(home), "jeton": token})
            assert pressed.status_code == 410 and "Rien n'a été modifié" in pressed.text
            assert browser.session == session  # nothing changed: still signed in as before
            assert (
                await conn.fetchval("SELECT count(*) FROM credentials WHERE subject = $1", credential["subject"]) == 1
            )

            # Revoked (an admin, another replica): refused on the next request.
            await conn.execute("UPDATE credentials SET revoked_at = now() WHERE id = $1", credential["id"])
        finally:
            await conn.close()
        after = await browser.get("/")
        assert authority["name"] not in after.text and "Se connecter" in after.text
        assert (await browser.get("/espace")).headers.get("location", "").startswith("/connexion")


async def test_an_expired_link_and_a_forged_or_missing_token_are_refused_and_change_nothing(
    directory: Directory, signing: tuple[Gateway, SmtpSink]
) -> None:
    gateway, sink = signing
    actor = await register(gateway, f"Recyclerie {uuid.uuid4().hex[:6]}")
    address = email()
    await member_of(directory, actor["id"], address, "Denis Acteur")
    async with Browser(gateway) as browser:
        form = await browser.get("/connexion")
        for fields in ({}, {"csrf": ""}, {"csrf": "forged"}):
            refused = await browser.http.post("/connexion", data={**fields, "email": address})
            assert refused.status_code == 403 and "Formulaire refusé" in refused.text
        await asyncio.sleep(0.3)
        assert mails_to(sink, address) == []  # no link sent for a refused form
        await browser.submit(form, "/connexion", email=address)
        path = await link_for(sink, address)
        token = parse_qs(urlsplit(path).query)["jeton"][0]
        confirm = await browser.get(path)
        # The button without its token, or with another browser's, signs nobody in and leaves the link usable.
        async with Browser(gateway) as other:
            theirs = Browser.csrf(await other.get("/connexion"))
        for fields in ({}, {"csrf": theirs}):
            refused = await browser.http.post("/connexion/lien", data={**fields, "jeton": token})
            assert refused.status_code == 403 and "Formulaire refusé" in refused.text
        assert browser.session is None and (await browser.get(path)).status_code == 200

        conn = await gateway_db(gateway)
        try:
            await conn.execute(
                "UPDATE sign_in_links SET expires_at = now() - interval '1 second' WHERE email = $1", address
            )
        finally:
            await conn.close()
        expired = await browser.get(path)
        assert expired.status_code == 410 and "Lien expiré ou déjà utilisé" in expired.text
        pressed = await browser.submit(confirm, "/connexion/lien", jeton=token)
        assert pressed.status_code == 410 and browser.session is None
        assert (await browser.get("/connexion/lien?jeton=nimporte")).status_code == 410


async def test_an_unknown_address_gets_the_same_answer_and_an_address_is_rate_limited(
    directory: Directory, signing: tuple[Gateway, SmtpSink]
) -> None:
    gateway, sink = signing
    actor = await register(gateway, f"Atelier vélo {uuid.uuid4().hex[:6]}")
    known, unknown = email(), email()
    await member_of(directory, actor["id"], known, "Eva Connue")
    async with Browser(gateway) as browser:
        answers = [await browser.ask_for_link(address) for address in (known, unknown)]
    await link_for(sink, known)
    await asyncio.sleep(0.5)
    assert mails_to(sink, unknown) == []
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].text.replace(known, "@") == answers[1].text.replace(unknown, "@")  # word for word

    async with Browser(gateway) as browser:
        for _ in range(PER_ADDRESS - 1):
            assert (await browser.ask_for_link(known)).status_code == 200
        over = await browser.ask_for_link(known)
        assert over.status_code == 429 and "Trop de demandes" in over.text
        assert (await browser.ask_for_link(unknown)).status_code == 200  # another address is not limited by it
        bad = await browser.ask_for_link("pas-une-adresse")
        assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text and "nom@domaine.fr" in bad.text
    await link_for(sink, known, PER_ADDRESS)
    await asyncio.sleep(0.3)
    assert len(mails_to(sink, known)) == PER_ADDRESS  # the refused one sent nothing


async def test_a_person_of_two_actors_switches_and_the_old_session_is_revoked(
    directory: Directory, signing: tuple[Gateway, SmtpSink]
) -> None:
    gateway, sink = signing
    authority = await register(gateway, f"Ville de Gray {uuid.uuid4().hex[:6]}", kind="local_authority", activities=[])
    actor = await register(gateway, f"Jardin partagé {uuid.uuid4().hex[:6]}")
    address = email()
    await member_of(directory, authority["id"], address, "Fanny Double")
    await member_of(directory, actor["id"], address, "Fanny Double", "admin")
    async with Browser(gateway) as browser:
        signed_in = await sign_in(browser, sink, address)
        assert signed_in.status_code == 303 and signed_in.headers["location"] == "/espace"
        spaces = await browser.get("/espace")
        assert spaces.status_code == 200 and authority["name"] in spaces.text and actor["name"] in spaces.text
        first = browser.session
        assert first is not None
        current = await browser.get("/")
        other_id = actor["id"] if authority["name"] in current.text else authority["id"]
        other_name = actor["name"] if other_id == actor["id"] else authority["name"]
        forged = await browser.http.post("/espace", data={"csrf": "forged", "acteur": other_id})
        assert forged.status_code == 403 and browser.session == first
        stranger = await browser.submit(spaces, "/espace", acteur=str(uuid.uuid4()))
        assert stranger.status_code == 403 and browser.session == first
        switched = await browser.submit(spaces, "/espace", acteur=other_id)
        assert switched.status_code == 303 and browser.session not in (None, first)
        home = await browser.get("/")
        assert other_name in home.text
        expected_nav = "Mes besoins" if other_id == authority["id"] else "Besoins proposés"
        assert expected_nav in home.text
    conn = await gateway_db(gateway)
    try:
        old = await conn.fetchrow(
            "SELECT revoked_at, revoked_by FROM credentials WHERE id = $1", Console.token_id(first)
        )
    finally:
        await conn.close()
    assert old["revoked_at"] is not None and old["revoked_by"] == "console:switch"
    async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: first}) as http:
        assert "Se connecter" in (await http.get("/")).text


async def test_an_idle_session_ends(directory: Directory, signing: tuple[Gateway, SmtpSink]) -> None:
    gateway, _ = signing
    actor = await register(gateway, f"Épicerie solidaire {uuid.uuid4().hex[:6]}")
    address = email()
    await member_of(directory, actor["id"], address, "Gaston Dormeur")
    async with signing_gateway(gateway.settings, console_session_idle_s=60) as (fresh, fresh_sink):
        async with Browser(fresh) as browser:
            await sign_in(browser, fresh_sink, address)
            session = browser.session
            assert session is not None and actor["name"] in (await browser.get("/")).text
        conn = await gateway_db(gateway)
        try:
            await conn.execute(
                "UPDATE console_sessions SET last_seen_at = now() - interval '2 minutes' WHERE credential_id = $1",
                Console.token_id(session),
            )
        finally:
            await conn.close()
        # Another replica (which has not seen it in the last minute) finds it idle, and ends it.
        async with (
            signing_gateway(gateway.settings, console_session_idle_s=60) as (other, _),
            httpx.AsyncClient(base_url=other.url, cookies={SESSION_COOKIE: session}) as http,
        ):
            assert "Se connecter" in (await http.get("/")).text
        conn = await gateway_db(gateway)
        try:
            why = await conn.fetchval("SELECT revoked_by FROM credentials WHERE id = $1", Console.token_id(session))
        finally:
            await conn.close()
        assert why == "idle"


async def test_an_actors_contact_address_claims_it_until_the_address_changes(
    directory: Directory, signing: tuple[Gateway, SmtpSink]
) -> None:
    gateway, sink = signing
    contact, later = email(), email()
    actor = await register(gateway, f"Repair café {uuid.uuid4().hex[:6]}", contact={"email": contact})
    async with Browser(gateway) as browser:
        signed_in = await sign_in(browser, sink, contact)
        assert signed_in.status_code == 303
        assert actor["name"] in (await browser.get("/")).text
    as_gateway = service_headers(directory.settings, "gateway")
    async with directory.client() as http:
        found = (await http.post("/v1/persons/lookup", json={"email": contact}, headers=as_gateway)).json()
        assert [(m["actor"]["id"], m["role"]) for m in found["memberships"]] == [(actor["id"], "admin")]
    # A member already, and the contact of another actor staff registered: that one is claimed too.
    second = await register(gateway, f"Atelier couture {uuid.uuid4().hex[:6]}", contact={"email": contact.upper()})
    async with Browser(gateway) as browser:
        assert (await sign_in(browser, sink, contact)).headers["location"] == "/espace"
    async with directory.client() as http:
        found = (await http.post("/v1/persons/lookup", json={"email": contact}, headers=as_gateway)).json()
        assert {m["actor"]["id"] for m in found["memberships"]} == {actor["id"], second["id"]}

        # A second actor, claimed (pending) by its contact, whose address then changes: the claim is void.
        other = await register(gateway, f"Ressourcerie {uuid.uuid4().hex[:6]}", contact={"email": later})
        claims = (await http.post("/v1/claims", json={"email": later}, headers=as_gateway)).json()
        assert [c["actor"]["id"] for c in claims] == [other["id"]]
        changed = await http.patch(
            f"/v1/actors/{other['id']}", json={"contact": {"email": email()}}, headers=directory.admin
        )
        assert changed.status_code == 200, changed.text
        voided = await http.post(f"/v1/claims/{claims[0]['id']}/confirm", headers=as_gateway)
        assert voided.status_code == 409, voided.text
        assert (await http.post("/v1/persons/lookup", json={"email": later}, headers=as_gateway)).json()[
            "person"
        ] is None
        # Only the gateway opens claims.
        assert (await http.post("/v1/claims", json={"email": later}, headers=directory.admin)).status_code == 403


async def test_the_sign_in_pages_pass_axe_and_fit_a_phone(
    directory: Directory, signing: tuple[Gateway, SmtpSink], new_page: NewPage
) -> None:
    gateway, sink = signing
    authority = await register(gateway, f"Ville de Lons {uuid.uuid4().hex[:6]}", kind="local_authority", activities=[])
    actor = await register(gateway, f"Ressourcerie du Jura {uuid.uuid4().hex[:6]}")
    address = email()
    await member_of(directory, authority["id"], address, "Hélène Écran")
    await member_of(directory, actor["id"], address, "Hélène Écran")
    for width, viewport in (("bureau", DESKTOP), ("telephone", PHONE)):
        page = await new_page(viewport=viewport)

        async def check(name: str, page: Page = page, width: str = width) -> None:
            assert await page.locator("h1").count() == 1, name
            assert await accessibility_violations(page) == [], name
            assert await horizontal_overflow(page) == 0, name
            await screenshot(page, f"console-{name}-{width}")

        await page.goto(gateway.url + "/connexion")
        await check("connexion")
        await page.get_by_label("Adresse e-mail").fill("pas-une-adresse")
        await page.get_by_role("button", name="Recevoir un lien de connexion").click()
        await check("connexion-erreur")
        sent = len(mails_to(sink, address))
        await page.get_by_label("Adresse e-mail").fill(address)
        await page.get_by_role("button", name="Recevoir un lien de connexion").click()
        await page.get_by_role("heading", name="Consultez votre messagerie").wait_for()
        await check("connexion-envoyee")
        path = await link_for(sink, address, sent + 1)
        await page.goto(gateway.url + path)
        await check("connexion-lien")
        await page.get_by_role("button", name="Me connecter").click()
        await page.get_by_role("heading", name="Mes espaces").wait_for()
        await check("espace")
        who = await page.locator(".entete__qui").inner_text()
        assert actor["name"] in who or authority["name"] in who, who
        await page.goto(gateway.url + path)
        await check("connexion-lien-invalide")
        assert await page.locator(".entete__qui").inner_text() == who  # the same header as every page's
        cookies = {c["name"] for c in await page.context.cookies()}
        assert SESSION_COOKIE in cookies and BROWSER_COOKIE in cookies


async def test_the_cli_invites_a_member_with_a_first_sign_in_link(
    signing: tuple[Gateway, SmtpSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from services.launch import cli

    gateway, sink = signing
    actor = await register(gateway, f"Tiers-lieu {uuid.uuid4().hex[:6]}")
    address = email()
    monkeypatch.setattr(cli, "get_settings", lambda: gateway.settings)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli.app, list(args))

    done = await asyncio.to_thread(
        invoke, "invite", "--actor", actor["id"], "--email", address, "--name", "Inès Invitée", "--role", "admin"
    )
    assert done.exit_code == 0, done.output
    path = await link_for(sink, address)
    letter = mails_to(sink, address)[0]
    assert actor["name"] in str(letter["Subject"]) and "Inès Invitée" in letter.get_content()
    async with Browser(gateway) as browser:
        confirm = await browser.get(path)
        jeton = parse_qs(urlsplit(path).query)["jeton"][0]
        assert (await browser.submit(confirm, "/connexion/lien", jeton=jeton)).status_code == 303
        assert actor["name"] in (await browser.get("/")).text
    refused = await asyncio.to_thread(
        invoke, "invite", "--actor", str(uuid.uuid4()), "--email", address, "--name", "Inès Invitée"
    )
    assert refused.exit_code == 2 and "404" in refused.output


async def test_make_run_prints_the_console_and_the_demo_members_sign_in_links(
    directory: Directory, signing: tuple[Gateway, SmtpSink]
) -> None:
    from services.launch.devstack import DEMO_MEMBERS, DevStack

    gateway, _ = signing
    await register(gateway, f"Ville d'Arbois {uuid.uuid4().hex[:6]}", kind="local_authority", activities=[])
    await register(gateway, f"Ressourcerie d'Arbois {uuid.uuid4().hex[:6]}")
    stack = DevStack(gateway.settings.model_copy(update={"directory_database_url": directory.database_url}))
    stack.demo_links = await stack.demo_sign_in_links()
    assert [who.split(" <")[0] for who, _ in stack.demo_links] == [name for _, name in DEMO_MEMBERS]
    stack.admin_credential = ("id", "token")
    banner = stack.banner(1.0)
    assert f"Console      {stack.console_url}/" in banner
    kinds = []
    for (who, url), (address, _) in zip(stack.demo_links, DEMO_MEMBERS, strict=True):
        assert url in banner and url.startswith(stack.console_url + "/connexion/lien?jeton=") and address in who
        split = urlsplit(url)
        async with Browser(gateway) as browser:
            confirm = await browser.get(f"{split.path}?{split.query}")
            jeton = parse_qs(split.query)["jeton"][0]
            assert (await browser.submit(confirm, "/connexion/lien", jeton=jeton)).status_code == 303
            home = (await browser.get("/")).text
            kinds.append("Mes besoins" in home)
    assert kinds == [True, False]  # an authority's member, then an actor's


async def test_an_admin_member_invites_and_removes_members_from_the_console(
    directory: Directory, signing: tuple[Gateway, SmtpSink], new_page: NewPage
) -> None:
    gateway, sink = signing
    authority = await register(
        gateway, f"Ville de Salins {uuid.uuid4().hex[:6]}", kind="local_authority", activities=[]
    )
    admin_address, invited_address = email(), email()
    await member_of(directory, authority["id"], admin_address, "Irène Admin", "admin")
    async with Browser(gateway) as admin:
        await sign_in(admin, sink, admin_address)
        listing = await admin.get("/membres")
        assert listing.status_code == 200 and "Irène Admin" in listing.text and admin_address in listing.text
        forged = await admin.http.post("/membres", data={"csrf": "x", "email": invited_address, "name": "Jules"})
        assert forged.status_code == 403 and "Formulaire refusé" in forged.text
        bad = await admin.submit(listing, "/membres", email="pas-une-adresse", name="Jules Invité")
        assert bad.status_code == 422 and 'aria-invalid="true"' in bad.text and "Jules Invité" in bad.text
        await asyncio.sleep(0.2)
        assert mails_to(sink, invited_address) == []  # nothing sent, nobody invited
        sent = await admin.submit(listing, "/membres", email=invited_address, name="Jules Invité", role="MEMBER")
        assert sent.status_code == 303 and sent.headers["location"] == "/membres?invite=envoyee"
        after = await admin.get(sent.headers["location"])
        assert "Invitation envoyée" in after.text and "Jules Invité" in after.text
        letter = mails_to(sink, invited_address)[0]
        assert authority["name"] in str(letter["Subject"])

        async with Browser(gateway) as invited:
            path = await link_for(sink, invited_address)
            confirm = await invited.get(path)
            jeton = parse_qs(urlsplit(path).query)["jeton"][0]
            assert (await invited.submit(confirm, "/connexion/lien", jeton=jeton)).status_code == 303
            assert authority["name"] in (await invited.get("/")).text
            refused = await invited.get("/membres")  # a plain member does not manage members
            assert refused.status_code == 403 and "Accès refusé" in refused.text
            invited_session = invited.session

        person_id = re.search(r'name="personne" value="([^"]+)"', after.text)
        assert person_id is not None
        removed = await admin.submit(after, "/membres/retirer", personne=person_id.group(1))
        assert removed.status_code == 303
        assert "Jules Invité" not in (await admin.get("/membres")).text
        async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: invited_session or ""}) as http:
            assert "Se connecter" in (await http.get("/")).text  # removed: its session ended at once

        # In a browser: axe, 375 px, screenshots.
        for width, viewport in (("bureau", DESKTOP), ("telephone", PHONE)):
            page = await new_page(viewport=viewport)
            await page.context.add_cookies([{"name": SESSION_COOKIE, "value": admin.session or "", "url": gateway.url}])
            await page.goto(gateway.url + "/membres")
            assert await page.locator("h1").count() == 1
            assert await accessibility_violations(page) == []
            assert await horizontal_overflow(page) == 0
            await screenshot(page, f"console-membres-{width}")


async def test_members_in_the_graphql_contract_are_for_admins_and_the_actors_admin_members(
    directory: Directory, gateway: Gateway
) -> None:
    actor = await register(gateway, f"Garage solidaire {uuid.uuid4().hex[:6]}")
    address = email()
    person = (await member_of(directory, actor["id"], address, "Karim Garage", "admin"))["person"]
    query = "query($id: ID!) { members(actorId: $id) { person { id name email } role } }"
    listed = await gateway.ok(query, {"id": actor["id"]}, gateway.admin)
    assert listed["members"] == [
        {"person": {"id": person["id"], "name": "Karim Garage", "email": address}, "role": "ADMIN"}
    ]
    own = gateway.bearer(Role.ACTOR, actor["id"], f"person:{person['id']}")
    assert (await gateway.ok(query, {"id": actor["id"]}, own))["members"] == listed["members"]
    for refused in (gateway.bearer(Role.PARTNER), gateway.bearer(Role.ACTOR, actor["id"])):
        answer = await gateway.gql(query, {"id": actor["id"]}, refused)
        assert answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", answer


# --- erasing a person (GDPR art. 17) -------------------------------------------------------------------------

ERASE = """mutation($email: String!) { erasePerson(email: $email) {
    personsDeleted membershipsDeleted claimsDeleted registrationsAnonymised sessionsRevoked signInLinksDeleted } }"""
NOTHING_LEFT = {
    "personsDeleted": 0,
    "membershipsDeleted": 0,
    "claimsDeleted": 0,
    "registrationsAnonymised": 0,
    "sessionsRevoked": 0,
    "signInLinksDeleted": 0,
}
REGISTER_PERSON = (
    """mutation($e: ID!, $input: RegistrationInput!) { registerForEvent(eventId: $e, input: $input) { id } }"""
)
REGISTRATIONS = "query($id: ID!) { event(id: $id) { registrations { personName personEmail status } } }"


async def left_in_the_gateway(gateway: Gateway, address: str, person_id: str) -> dict[str, int]:
    """What the gateway's database still holds of an address and its person."""
    conn = await gateway_db(gateway)
    try:
        return {
            "links": await conn.fetchval("SELECT count(*) FROM sign_in_links WHERE lower(email) = $1", address),
            "requests": await conn.fetchval(
                "SELECT count(*) FROM sign_in_requests WHERE address_hash = $1", address_key(gateway.settings, address)
            ),
            "idle_rows": await conn.fetchval(
                "SELECT count(*) FROM console_sessions WHERE person_id = $1", uuid.UUID(person_id)
            ),
            "open_sessions": await conn.fetchval(
                "SELECT count(*) FROM credentials WHERE subject = $1 AND revoked_at IS NULL", f"person:{person_id}"
            ),
        }
    finally:
        await conn.close()


async def test_erase_person_signs_the_person_out_everywhere_and_leaves_nothing_behind(
    directory: Directory, signing: tuple[Gateway, SmtpSink]
) -> None:
    gateway, sink = signing
    tag = uuid.uuid4().hex[:6]
    authority = await register(gateway, f"Ville de Morez {tag}", kind="local_authority", activities=[])
    actor = await register(gateway, f"Fruitière solidaire {tag}")
    address, kept = email(), email()
    person = (await member_of(directory, authority["id"], address, "Lucie Effacée"))["person"]
    await member_of(directory, actor["id"], address, "Lucie Effacée", "admin")
    kept_person = (await member_of(directory, actor["id"], kept, "Marc Gardé"))["person"]
    event = await publish_event(gateway, actor["id"], title=f"Atelier {tag}", onlineUrl=ONLINE)
    for who, name in ((address, "Lucie Effacée"), (kept, "Marc Gardé")):
        person_input = {"person": {"name": name, "email": who}}
        await gateway.ok(REGISTER_PERSON, {"e": event["id"], "input": person_input}, gateway.admin)
    # Two open sessions of the person, for two actors: the console's (switched to the authority) and a credential
    # for the other actor with an open subscription; a pending sign-in link; the session of a person who stays.
    for_actor = gateway.bearer(Role.ACTOR, actor["id"], f"person:{person['id']}")
    kept_session = gateway.bearer(Role.ACTOR, actor["id"], f"person:{kept_person['id']}")
    me = "{ me { subject } }"
    async with Browser(gateway) as browser, Browser(gateway) as asker, gateway.socket(for_actor) as socket:
        assert (await sign_in(browser, sink, address)).status_code == 303
        spaces = await browser.get("/espace")
        assert (await browser.submit(spaces, "/espace", acteur=authority["id"])).status_code == 303
        assert authority["name"] in (await browser.get("/")).text
        await asker.ask_for_link(address)
        pending = await link_for(sink, address, 2)
        await socket.start("1", "subscription { matchFound { id } }", {})
        await asyncio.sleep(0.2)  # the subscription is registered once the server read the message

        # Nobody but an admin erases, not even the person: refused, and nothing changed.
        for refused in (for_actor, gateway.bearer(Role.PARTNER), gateway.bearer(Role.COLLECTIVITY, authority["id"])):
            answer = await gateway.gql(ERASE, {"email": address}, refused)
            assert answer["data"] is None and answer["errors"][0]["extensions"]["code"] == "FORBIDDEN", answer
        anonymous = await gateway.gql(ERASE, {"email": address})
        assert anonymous["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", anonymous
        assert authority["name"] in (await browser.get("/")).text
        assert (await gateway.ok(me, authorization=for_actor))["me"]["subject"] == f"person:{person['id']}"
        assert (await asker.get(pending)).status_code == 200
        assert (await left_in_the_gateway(gateway, address, person["id"]))["open_sessions"] == 2
        # A bad address is the caller's mistake, named.
        for bad, rule in (("pas une adresse", "format"), ("", "length")):
            answer = await gateway.gql(ERASE, {"email": bad}, gateway.admin)
            assert answer["errors"][0]["extensions"] == {"code": "BAD_USER_INPUT", "field": "email", "rule": rule}

        done = (await gateway.ok(ERASE, {"email": f"  {address.upper()} "}, gateway.admin))["erasePerson"]
        assert done == {
            "personsDeleted": 1,
            "membershipsDeleted": 2,
            "claimsDeleted": 0,
            "registrationsAnonymised": 1,
            "sessionsRevoked": 2,  # the console's and the credential's; the switched-from one was revoked already
            "signInLinksDeleted": 2,  # the used one and the pending one
        }
        # The open subscription ends, as a revoked credential's does.
        await socket.until_closed(timeout_s=10)
        assert socket.close_code == 4403, (socket.close_code, socket.close_reason)

        # Signed out on the next request, the pending link dead.
        after = await browser.get("/")
        assert authority["name"] not in after.text and "Se connecter" in after.text
        assert (await browser.get("/espace")).headers.get("location", "").startswith("/connexion")
        refused_me = await gateway.gql(me, authorization=for_actor, status=401)
        assert refused_me["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED", refused_me
        assert (await asker.get(pending)).status_code == 410
    assert await left_in_the_gateway(gateway, address, person["id"]) == {
        "links": 0,
        "requests": 0,
        "idle_rows": 0,
        "open_sessions": 0,
    }

    # The directory forgot the person and its memberships; the other member stays, signed in.
    as_gateway = service_headers(directory.settings, "gateway")
    async with directory.client() as http:
        found = await http.post("/v1/persons/lookup", json={"email": address}, headers=as_gateway)
        assert found.json() == {"person": None, "memberships": []}
        members = (await http.get(f"/v1/actors/{actor['id']}/members", headers=directory.admin)).json()
        assert [m["person"]["email"] for m in members] == [kept]
        assert (await http.get(f"/v1/actors/{authority['id']}/members", headers=directory.admin)).json() == []
    assert (await gateway.ok(me, authorization=kept_session))["me"]["subject"] == f"person:{kept_person['id']}"

    # Its registration is anonymised, the seat still counted; the other person's is as it was.
    registrations = (await gateway.ok(REGISTRATIONS, {"id": event["id"]}, gateway.admin))["event"]["registrations"]
    assert sorted((r["personEmail"] or "", r["personName"] or "") for r in registrations) == [
        ("", ""),
        (kept, "Marc Gardé"),
    ]

    # Erasing again: nothing left, zeros.
    assert (await gateway.ok(ERASE, {"email": address}, gateway.admin))["erasePerson"] == NOTHING_LEFT
    assert (await gateway.ok(ERASE, {"email": email()}, gateway.admin))["erasePerson"] == NOTHING_LEFT


async def test_the_cli_erases_a_person_through_the_same_operation(
    directory: Directory, signing: tuple[Gateway, SmtpSink], monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from services.launch import cli

    gateway, sink = signing
    actor = await register(gateway, f"Bricothèque {uuid.uuid4().hex[:6]}")
    address = email()
    person = (await member_of(directory, actor["id"], address, "Noé Effacé"))["person"]
    monkeypatch.setattr(cli, "get_settings", lambda: gateway.settings)

    def invoke(*args: str) -> Any:
        return CliRunner().invoke(cli.app, list(args))

    async with Browser(gateway) as browser:
        await sign_in(browser, sink, address)
        assert actor["name"] in (await browser.get("/")).text
        done = await asyncio.to_thread(invoke, "erase", address)
        assert done.exit_code == 0, done.output
        assert (
            f"erased {address}: persons deleted: 1, memberships deleted: 1, claims deleted: 0, "
            "registrations anonymised: 0, sessions revoked: 1, sign-in links deleted: 1"
        ) in done.output
        await asyncio.sleep(0.2)  # this gateway hears of the revocation from PostgreSQL (the CLI is another process)
        assert "Se connecter" in (await browser.get("/")).text
    assert (await left_in_the_gateway(gateway, address, person["id"]))["open_sessions"] == 0
    again = await asyncio.to_thread(invoke, "erase", address)
    assert (
        again.exit_code == 0
        and (
            f"erased {address}: persons deleted: 0, memberships deleted: 0, claims deleted: 0, "
            "registrations anonymised: 0, sessions revoked: 0, sign-in links deleted: 0"
        )
        in again.output
    )
    bad = await asyncio.to_thread(invoke, "erase", "pas une adresse")
    assert bad.exit_code == 2 and "email" in bad.output
