"""A local authority's needs in the console, on the real stack: publishing from the form (errors beside their
fields, nothing created), another authority's need refused, a match selected and the need closed, and in a real
browser matches that appear and change live, the form completed with the keyboard, axe, phones, screenshots."""

from __future__ import annotations

import asyncio
import contextlib
import re
import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg
import httpx
from playwright.async_api import Page, expect

from gateway.console.needs import SESSION_CHECK_S, STREAMS_PER_SESSION
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
from tests.integration.test_console_frame import session_token
from tests.integration.test_gateway import REDON, SAINT_MALO, credential, publish_need, register
from tests.integration.test_matching import eventually

DEADLINE = (date.today() + timedelta(days=30)).isoformat()
FORM: dict[str, Any] = {
    "title": "Un lieu de réemploi à Maurepas",
    "description": "Collecte et revente d'objets de seconde main, réemploi",
    "kind": "PARTNERSHIP",
    "themes": ["reemploi"],
    "serviceTypes": ["fourniture_biens"],
    "communeCode": "35238|Rennes (35)",
    "location.lat": "48,1113",
    "location.lon": "-1.68",
    "perimeter.radiusKm": "30",
    "deadline": DEADLINE,
    "action": "enregistrer",
}
NEEDS_OF = "query($o: ID!) { needs(filter: {ownerId: $o}) { edges { node { id title status } } } }"


async def authority(gateway: Gateway, town: str) -> tuple[dict[str, Any], str]:
    """A local authority at Rennes and a session of one of its members."""
    actor = await register(
        gateway, f"{town} {uuid.uuid4().hex[:6]}", kind="local_authority", legalForm="Commune", activities=[]
    )
    return actor, session_token(gateway, Role.COLLECTIVITY, actor["id"])


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def needs_of(gateway: Gateway, owner_id: str) -> list[dict[str, Any]]:
    data = await gateway.ok(NEEDS_OF, {"o": owner_id}, gateway.admin)
    return [edge["node"] for edge in data["needs"]["edges"]]


async def publish_from_form(http: httpx.AsyncClient, form: dict[str, Any]) -> httpx.Response:
    """POST the form as a browser does; matching learns of a just-registered authority from the broker."""

    async def attempt() -> httpx.Response | None:
        page = await http.get("/besoins/nouveau")
        answer = await http.post("/besoins/nouveau", data={**form, "csrf": csrf_of(page.text)})
        if answer.status_code == 422 and "not an active local authority" in answer.text:
            return None
        return answer

    return await eventually(attempt)


async def test_a_need_published_from_the_form_exists_and_bad_input_is_shown_beside_its_fields(
    gateway: Gateway,
) -> None:
    owner, token = await authority(gateway, "Ville de Rennes")
    async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: token}) as http:
        empty = await http.get("/besoins")
        assert empty.status_code == 200 and "Aucun besoin publié" in empty.text
        # A new need starts at the authority's commune and point.
        page = await http.get("/besoins/nouveau")
        assert 'value="35238|Rennes" checked' in page.text
        assert 'value="48,1113"' in page.text and 'value="-1,68"' in page.text
        # Bad input: each error beside its field, the values kept, nothing created.
        bad = {**FORM, "title": "", "location.lat": "nord", "themes": [], "deadline": "31 décembre"}
        refused = await http.post("/besoins/nouveau", data={**bad, "csrf": csrf_of(page.text)})
        assert refused.status_code == 422
        for name in ("title", "location-lat", "themes", "deadline"):
            assert f'id="erreur-champ-{name}"' in refused.text, name
            assert f'href="#champ-{name}"' in refused.text, name  # the summary links to the field
        assert 'value="nord"' in refused.text and "Collecte et revente" in refused.text
        assert 'aria-invalid="true"' in refused.text
        # The API's own refusals are beside their fields too: a deadline already past.
        past = {**FORM, "deadline": (date.today() - timedelta(days=3)).isoformat()}
        late = await publish_from_form(http, past)
        assert late.status_code == 422 and 'id="erreur-champ-deadline"' in late.text, late.text[-3000:]
        assert await needs_of(gateway, owner["id"]) == []
        # A forged token changes nothing either.
        forged = await http.post("/besoins/nouveau", data={**FORM, "csrf": "forged"})
        assert forged.status_code == 403 and "Formulaire refusé" in forged.text
        assert await needs_of(gateway, owner["id"]) == []
        # The commune search works without JavaScript: a button of the form, the values kept.
        searched = await http.post(
            "/besoins/nouveau",
            data={
                **FORM,
                "communeCode": "",
                "commune_recherche": "Rennes",
                "action": "chercher-commune",
                "csrf": csrf_of(page.text),
            },
        )
        assert searched.status_code == 200 and 'value="35238|' in searched.text
        assert "Collecte et revente" in searched.text and await needs_of(gateway, owner["id"]) == []
        published = await publish_from_form(http, FORM)
        assert published.status_code == 303, re.findall(r"<li>(?:<a [^>]*>)?([^<]*)", published.text)[:12]
        need_id = published.headers["location"].rsplit("/", 1)[1]
        [need] = await needs_of(gateway, owner["id"])
        assert need == {"id": need_id, "title": FORM["title"], "status": "published"}
        listed = await http.get("/besoins")
        assert str(FORM["title"]) in listed.text and f"/besoins/{need_id}" in listed.text and "Ouvert" in listed.text
        # Edit: only what changed is sent.
        edit = await http.get(f"/besoins/{need_id}/modifier")
        assert edit.status_code == 200 and 'value="48,1113"' in edit.text
        changed = await http.post(
            f"/besoins/{need_id}/modifier",
            data={**FORM, "communeCode": "35238|35238", "title": "Réemploi à Maurepas", "csrf": csrf_of(edit.text)},
        )
        assert changed.status_code == 303, changed.text[-3000:]
        data = await gateway.ok("query($n: ID!) { need(id: $n) { title version } }", {"n": need_id}, gateway.admin)
        assert data["need"] == {"title": "Réemploi à Maurepas", "version": 2}


async def test_emptying_the_budget_and_the_radius_on_the_edit_form_removes_them(gateway: Gateway) -> None:
    _, token = await authority(gateway, "Ville de Cesson-Sévigné")
    budgeted = {**FORM, "budgetMin": "1000", "budgetMax": "5 000"}
    async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: token}) as http:
        published = await publish_from_form(http, budgeted)
        assert published.status_code == 303, published.text[-3000:]
        need_id = published.headers["location"].rsplit("/", 1)[1]
        shown = await http.get(f"/besoins/{need_id}")
        assert "<dt>Budget</dt>" in shown.text and "30 km autour du lieu" in shown.text
        edit = await http.get(f"/besoins/{need_id}/modifier")
        emptied = {**budgeted, "budgetMin": "", "budgetMax": "", "perimeter.radiusKm": "", "csrf": csrf_of(edit.text)}
        changed = await http.post(f"/besoins/{need_id}/modifier", data=emptied)
        assert changed.status_code == 303, changed.text[-3000:]
        data = await gateway.ok(
            "query($n: ID!) { need(id: $n) { version budgetMin budgetMax perimeter { radiusKm } } }",
            {"n": need_id},
            gateway.admin,
        )
        assert data["need"] == {"version": 2, "budgetMin": None, "budgetMax": None, "perimeter": {"radiusKm": None}}
        shown = await http.get(f"/besoins/{need_id}")
        assert shown.status_code == 200
        # The need's own details, not its matches: a match found before the edit keeps its reasons ("dans le
        # rayon de 30,0 km autour du lieu"), and whether it is there yet depends on the broker's timing.
        details = re.search(r'<dl class="details">(.*?)</dl>', shown.text, re.DOTALL)
        assert details is not None, shown.text[-3000:]
        assert "<dt>Budget</dt>" not in details.group(1) and "km autour du lieu" not in details.group(1)
        again = await http.get(f"/besoins/{need_id}/modifier")
        for name in ("budgetMin", "budgetMax", "perimeter.radiusKm"):
            assert re.search(rf'name="{re.escape(name)}"[^>]*value=""', again.text), name


async def test_another_authoritys_need_page_is_refused_with_a_clear_page(gateway: Gateway) -> None:
    owner, _ = await authority(gateway, "Ville de Vitré")
    _, other = await authority(gateway, "Ville de Fougères")
    need = await publish_need(gateway, await credential(gateway, "collectivity", owner["id"]))
    async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: other}) as http:
        for path in (f"/besoins/{need['id']}", f"/besoins/{need['id']}/modifier", f"/besoins/{need['id']}/flux"):
            refused = await http.get(path)
            assert refused.status_code == 403, path
            assert "Accès refusé" in refused.text and '<html lang="fr">' in refused.text
        page = await http.get("/besoins")
        closing = await http.post(
            f"/besoins/{need['id']}/cloture", data={"issue": "CANCELLED", "csrf": csrf_of(page.text)}
        )
        assert closing.status_code == 403 and "Accès refusé" in closing.text
    data = await gateway.ok("query($n: ID!) { need(id: $n) { status } }", {"n": need["id"]}, gateway.admin)
    assert data["need"]["status"] == "published"
    unknown = await httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: other}).get(
        f"/besoins/{uuid.uuid4()}"
    )
    assert unknown.status_code == 404 and "Page introuvable" in unknown.text


async def first_match(gateway: Gateway, need_id: str, actor_id: str) -> dict[str, Any]:
    async def probe() -> dict[str, Any] | None:
        data = await gateway.ok(
            "query($n: ID!) { need(id: $n) { matches(first: 50) { id actorId status } } }",
            {"n": need_id},
            gateway.admin,
        )
        return next((m for m in data["need"]["matches"] or [] if m["actorId"] == actor_id), None)

    return await eventually(probe, timeout_s=20)


async def test_selecting_a_match_and_closing_the_need_change_their_state(gateway: Gateway) -> None:
    owner, token = await authority(gateway, "Ville de Redon")
    actor = await register(gateway, f"Ressourcerie de Redon {uuid.uuid4().hex[:6]}", **REDON)
    need = await publish_need(gateway, await credential(gateway, "collectivity", owner["id"]), **REDON)
    match = await first_match(gateway, need["id"], actor["id"])
    await gateway.ok(
        "mutation($id: ID!) { respondToMatch(id: $id, response: INTERESTED) { id } }",
        {"id": match["id"]},
        await credential(gateway, "actor", actor["id"]),
    )
    async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: token}) as http:
        page = await http.get(f"/besoins/{need['id']}")
        assert page.status_code == 200 and actor["name"] in page.text and "Score" in page.text
        assert "Redon (47,6514 ; -2,0843)" in page.text  # the need's place by its commune's name
        assert f'value="{match["id"]}"' in page.text  # its "select" form
        chosen = await http.post(
            f"/besoins/{need['id']}/selection", data={"correspondance": match["id"], "csrf": csrf_of(page.text)}
        )
        assert chosen.status_code == 303
        closed = await http.post(
            f"/besoins/{need['id']}/cloture",
            data={"issue": "FULFILLED", "commentaire": "Convention signée", "csrf": csrf_of(page.text)},
        )
        assert closed.status_code == 303
        after = await http.get(f"/besoins/{need['id']}")
        assert "Satisfait" in after.text and "Retenu" in after.text and "Convention signée" in after.text
    data = await gateway.ok(
        "query($n: ID!, $m: ID!) { need(id: $n) { status closingComment } match(id: $m) { status } }",
        {"n": need["id"], "m": match["id"]},
        gateway.admin,
    )
    assert data == {
        "need": {"status": "fulfilled", "closingComment": "Convention signée"},
        "match": {"status": "selected"},
    }


async def signed_in_page(new_page: NewPage, gateway: Gateway, token: str, **options: Any) -> Page:
    page = await new_page(**options)
    await page.context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": gateway.url}])
    return page


async def test_matches_appear_and_change_on_the_open_page_without_reload(gateway: Gateway, new_page: NewPage) -> None:
    owner, token = await authority(gateway, "Ville de Saint-Malo")
    need = await publish_need(
        gateway, await credential(gateway, "collectivity", owner["id"]), title="Réemploi pour Saint-Malo", **SAINT_MALO
    )
    page = await signed_in_page(new_page, gateway, token)
    await page.goto(f"{gateway.url}/besoins/{need['id']}")
    await page.evaluate("() => { window.pasRecharge = true }")
    await expect(page.locator("#correspondances")).to_be_attached()
    await page.wait_for_timeout(500)  # the stream opens and listens
    latecomer = await register(gateway, f"Recyclerie du Rosais {uuid.uuid4().hex[:6]}", **SAINT_MALO)
    row = page.locator(".correspondance", has_text=latecomer["name"])
    await expect(row).to_be_visible(timeout=20_000)  # found while the page was open
    await expect(row.locator(".raisons li").first).to_be_visible()
    # The counts above the list follow it: as many proposed as rows shown, none interested yet.
    shown = await page.locator(".correspondance").count()
    counts = page.locator("#compte-correspondances")
    await expect(counts).to_have_text(f"{shown} proposé{'s' if shown > 1 else ''}, 0 intéressé.")
    match = await first_match(gateway, need["id"], latecomer["id"])
    as_actor = await credential(gateway, "actor", latecomer["id"])
    await gateway.ok("mutation($id: ID!) { markMatchViewed(id: $id) { id } }", {"id": match["id"]}, as_actor)
    await expect(row.locator(".etat")).to_have_text("Vu", timeout=10_000)  # the actor opened the need
    await expect(row).to_have_attribute("data-statut", "viewed")
    await gateway.ok(
        'mutation($id: ID!) { respondToMatch(id: $id, response: INTERESTED, comment: "Nous venons") { id } }',
        {"id": match["id"]},
        as_actor,
    )
    await expect(row.locator(".etat")).to_have_text("Intéressé", timeout=10_000)
    await expect(row).to_contain_text("Nous venons")
    await expect(counts).to_have_text(f"{shown} proposé{'s' if shown > 1 else ''}, 1 intéressé.")
    assert await page.evaluate("() => window.pasRecharge === true")  # the same page: no reload


async def tab_to(page: Page, selector: str, presses: int = 250) -> None:
    """Tab until the element focused is `selector` (the keyboard only: no click, no focus() call)."""
    for _ in range(presses):
        if await page.evaluate("(s) => document.activeElement && document.activeElement.matches(s)", selector):
            return
        await page.keyboard.press("Tab")
    raise AssertionError(f"{selector} not reached with the keyboard")


async def test_the_publish_form_is_completed_with_the_keyboard_only(gateway: Gateway, new_page: NewPage) -> None:
    owner, token = await authority(gateway, "Ville de Cesson")
    await publish_need(gateway, await credential(gateway, "collectivity", owner["id"]))  # matching knows it
    page = await signed_in_page(new_page, gateway, token)
    await page.goto(f"{gateway.url}/besoins/nouveau")
    await tab_to(page, "#champ-title")
    await page.keyboard.type("Ateliers de réparation")
    await tab_to(page, "#champ-description")
    await page.keyboard.type("Réparation et réemploi d'objets")
    await tab_to(page, "#champ-kind")
    await page.keyboard.press("ArrowDown")  # the first kind
    await tab_to(page, "input[name=themes][value=reemploi]")
    await page.keyboard.press("Space")
    await tab_to(page, "#champ-commune-recherche")
    await page.keyboard.type("Rennes")
    await expect(page.locator("input[name=communeCode][value^='35238|']")).to_be_checked(timeout=10_000)
    # The point is the authority's own until the person changes it.
    await expect(page.locator("#champ-location-lat")).to_have_value("48,1113")
    await tab_to(page, "#champ-location-lon")
    await page.keyboard.press("Control+A")
    await page.keyboard.type("-1,6801")
    deadline = date.today() + timedelta(days=40)
    await tab_to(page, "#champ-deadline")
    await page.keyboard.type(deadline.strftime("%d%m%Y"))
    await tab_to(page, "button[value=enregistrer]")
    await page.keyboard.press("Enter")
    await page.wait_for_url(re.compile(r"/besoins/[0-9a-f-]{36}$"), timeout=15_000)
    await expect(page.locator("h1")).to_have_text("Ateliers de réparation")
    titles = {n["title"] for n in await needs_of(gateway, owner["id"])}
    assert "Ateliers de réparation" in titles


async def test_every_needs_page_passes_axe_fits_a_phone_and_is_photographed(
    gateway: Gateway, new_page: NewPage
) -> None:
    owner, token = await authority(gateway, "Ville de Bruz")
    actor = await register(gateway, f"Ressourcerie de Bruz {uuid.uuid4().hex[:6]}")
    need = await publish_need(gateway, await credential(gateway, "collectivity", owner["id"]), title="Réemploi à Bruz")
    await first_match(gateway, need["id"], actor["id"])
    # A need nobody here answers: its page says why it has no match.
    unanswered = await publish_need(
        gateway,
        await credential(gateway, "collectivity", owner["id"]),
        title="Un centre de santé dentaire à Bruz",
        description="Ouvrir un centre de santé dentaire avec des dentistes salariés",
        themes=["sante"],
        serviceTypes=["prestation_service"],
    )
    pages = {
        "liste": "/besoins",
        "nouveau": "/besoins/nouveau",
        "besoin": f"/besoins/{need['id']}",
        "modifier": f"/besoins/{need['id']}/modifier",
        "sans-reponse": f"/besoins/{unanswered['id']}",
    }
    for width, viewport in (("bureau", DESKTOP), ("telephone", PHONE)):
        page = await signed_in_page(new_page, gateway, token, viewport=viewport)
        for name, path in pages.items():
            await page.goto(gateway.url + path)
            if name == "besoin":
                await expect(page.locator(".correspondance").first).to_be_visible()
            if name == "sans-reponse":
                await expect(page.locator(".zone-correspondances .vide")).to_contain_text("Partager un thème ne suffit")
            assert await page.locator("h1").count() == 1, name
            assert await accessibility_violations(page) == [], (name, width)
            assert await horizontal_overflow(page) == 0, (name, width)
            await screenshot(page, f"console-besoins-{name}-{width}")
        # The form sent with mistakes: the summary, each error beside its field.
        await page.goto(gateway.url + "/besoins/nouveau")
        await page.locator("#champ-location-lat").fill("nord")
        await page.locator("button[value=enregistrer]").click()
        await expect(page.locator(".resume-erreurs")).to_be_visible()
        assert await accessibility_violations(page) == [], ("erreurs", width)
        assert await horizontal_overflow(page) == 0, ("erreurs", width)
        await screenshot(page, f"console-besoins-erreurs-{width}")


def test_dates_are_days_in_france() -> None:
    from gateway.console.needs import NeedForm, day_of

    assert day_of("2026-12-31T23:00:00+00:00") == "01/01/2027"
    form = NeedForm(
        {
            **NeedForm.empty().values,
            "title": "t",
            "kind": "QUOTE",
            "themes": ["x"],
            "commune": ("1", "1"),
            "location.lat": "1",
            "location.lon": "2",
            "perimeter.radiusKm": "",
            "budgetMin": "1 500,5",
            "budgetMax": "",
            "deadline": "2027-01-31",
            "description": "",
            "qpvPriority": False,
        }
    )
    built = form.graphql_input()
    assert built["budgetMin"] == 1500.5 and built["deadline"].startswith("2027-01-31T23:59:59")
    assert datetime.fromisoformat(built["deadline"]).astimezone(UTC).hour == 22


async def test_a_revoked_session_ends_its_open_streams_and_a_session_opens_a_few_only(gateway: Gateway) -> None:
    owner, token = await authority(gateway, "Ville de Dinan")
    need = await publish_need(gateway, await credential(gateway, "collectivity", owner["id"]))
    path = f"/besoins/{need['id']}/flux"
    async with httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: token}, timeout=15) as http:
        async with contextlib.AsyncExitStack() as stack:
            opened = [await stack.enter_async_context(http.stream("GET", path)) for _ in range(STREAMS_PER_SESSION)]
            assert all(s.status_code == 200 for s in opened)
            assert opened[0].headers["content-type"].startswith("text/event-stream")
            oldest = opened[0].aiter_lines()
            assert await anext(oldest) == "event: liste"
            # One session, a few tabs, not hundreds of streams: one more ends the oldest.
            newest = await stack.enter_async_context(http.stream("GET", path))
            assert newest.status_code == 200
            assert "event: fin" in [line async for line in oldest]
            lines = opened[1].aiter_lines()
            assert await anext(lines) == "event: liste"
            conn = await asyncpg.connect(gateway.settings.database_url_for("gateway"))
            try:
                await conn.execute(
                    "UPDATE credentials SET revoked_at = now(), revoked_by = 'test' WHERE id = $1",
                    Console.token_id(token),
                )
            finally:
                await conn.close()
            started = asyncio.get_running_loop().time()
            rest = [line async for line in lines]  # the stream ends by itself
            assert asyncio.get_running_loop().time() - started < SESSION_CHECK_S + 3
            assert "event: fin" in rest
        gone = await http.get(path)
        assert gone.status_code == 204  # an EventSource stops reconnecting
