"""An actor member's console pages on the real stack: the inbox of its matches with their reasons, a need's page
and its answer (interested, or declined with a reason), refusals (another actor's match, forged CSRF) that change
nothing, the profile edited field by field, and the pages in a real browser (keyboard, axe, a phone's width)."""

from __future__ import annotations

import html
import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest

from gateway.console.web import SESSION_COOKIE
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
from tests.integration.test_gateway import FOUGERES, credential, publish_need, register
from tests.integration.test_matching import eventually

NEED_MATCHES = """
query($id: ID!) { need(id: $id) { matches { id actorId status responseComment } } }
"""


@dataclass
class World:
    """A local authority, two actors matched to each of its needs, and a session for each actor."""

    authority: dict[str, Any]
    as_authority: str
    first: dict[str, Any]
    second: dict[str, Any]
    needs: list[dict[str, Any]]
    matches: dict[tuple[str, str], str]  # (need id, actor id) → match id

    def session(self, actor: dict[str, Any]) -> str:
        return self.tokens[actor["id"]]

    tokens: dict[str, str]


@pytest.fixture(scope="module")
async def world(gateway: Gateway) -> World:
    tag = uuid.uuid4().hex[:6]
    authority = await register(
        gateway,
        f"Ville de Rennes {tag}",
        kind="local_authority",
        legalForm="Commune",
        themes=[],
        serviceTypes=[],
        activities=[],
    )
    first = await register(gateway, f"Ressourcerie des Champs {tag}", **FOUGERES)
    second = await register(gateway, f"Recyclerie du Thabor {tag}", **FOUGERES)
    as_authority = await credential(gateway, "collectivity", authority["id"])
    titles = [f"{title} {tag}" for title in ("Collecte de meubles", "Boutique solidaire", "Atelier réemploi")]
    needs = [{**await publish_need(gateway, as_authority, title=title, **FOUGERES), "title": title} for title in titles]

    async def all_matched() -> dict[tuple[str, str], str] | None:
        found: dict[tuple[str, str], str] = {}
        for need in needs:
            data = await gateway.ok(NEED_MATCHES, {"id": need["id"]}, as_authority)
            for match in data["need"]["matches"]:
                found[(need["id"], match["actorId"])] = match["id"]
        wanted = {(need["id"], actor["id"]) for need in needs for actor in (first, second)}
        return found if wanted <= found.keys() else None

    matches = await eventually(all_matched, timeout_s=30)
    tokens = {
        actor["id"]: credential_token(gateway.settings, Role.ACTOR, actor["id"], f"person:{uuid.uuid4()}")
        for actor in (first, second)
    }
    return World(authority, as_authority, first, second, needs, matches, tokens)


def client(gateway: Gateway, token: str | None) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway.url, cookies={SESSION_COOKIE: token} if token else {}, timeout=30)


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the page"
    return found.group(1)


async def match_state(gateway: Gateway, world: World, need_id: str, actor_id: str) -> dict[str, Any]:
    """The match as its authority sees it through GraphQL."""
    data = await gateway.ok(NEED_MATCHES, {"id": need_id}, world.as_authority)
    [match] = [m for m in data["need"]["matches"] if m["actorId"] == actor_id]
    return dict(match)


async def test_the_inbox_lists_the_actors_matches_with_their_authority_and_reasons(
    gateway: Gateway, world: World
) -> None:
    async with client(gateway, world.session(world.first)) as http:
        inbox = await http.get("/propositions")
        pending = await http.get("/propositions", params={"statut": "a-traiter"})
        declined = await http.get("/propositions", params={"statut": "decline"})
    assert inbox.status_code == 200 and '<html lang="fr">' in inbox.text
    for need in world.needs:
        match_id = world.matches[(need["id"], world.first["id"])]
        assert f'href="/propositions/{match_id}"' in inbox.text
        assert need["title"] in pending.text and need["title"] not in declined.text
    # Newest proposal first: by when each match was made (on Kafka, needs on different partitions may be matched in
    # another order than they were published, and an actor whose registration reaches matching after the needs joins
    # them all in one transaction: matches made together share a time, and the inbox keeps them best first).
    made = {}
    for need in world.needs:
        data = await gateway.ok(
            "query($id: ID!) { match(id: $id) { createdAt } }",
            {"id": world.matches[(need["id"], world.first["id"])]},
            gateway.admin,
        )
        made[need["title"]] = datetime.fromisoformat(data["match"]["createdAt"])
    times_as_listed = [made[title] for title in sorted(made, key=inbox.text.index)]
    assert times_as_listed == sorted(times_as_listed, reverse=True)
    assert world.authority["name"] in inbox.text and "Pourquoi vous" in inbox.text
    assert "Correspondance" in inbox.text and "Rennes" in inbox.text
    # The reasons are the API's, in French.
    data = await gateway.ok(
        "query($id: ID!) { match(id: $id) { reasons { text } } }",
        {"id": world.matches[(world.needs[0]["id"], world.first["id"])]},
        world.as_authority,
    )
    for reason in data["match"]["reasons"]:
        assert html.escape(reason["text"][:1].upper() + reason["text"][1:]) in inbox.text
    assert 'aria-current="page">À traiter' in pending.text and "Aucun besoin dans l" in declined.text
    # The other actor's inbox does not show this one's match ids.
    async with client(gateway, world.session(world.second)) as http:
        theirs = await http.get("/propositions")
    assert world.matches[(world.needs[0]["id"], world.first["id"])] not in theirs.text


async def test_opening_a_match_marks_it_viewed_and_answering_interested_with_a_comment_changes_it(
    gateway: Gateway, world: World
) -> None:
    need = world.needs[0]
    match_id = world.matches[(need["id"], world.first["id"])]
    async with client(gateway, world.session(world.first)) as http:
        shown = await http.get(f"/propositions/{match_id}")
        assert shown.status_code == 200
        assert need["title"] in shown.text and "Pourquoi votre structure a été proposée" in shown.text
        assert "Partenariat" in shown.text and "Je suis intéressé" in shown.text and "Je décline" in shown.text
        assert (await match_state(gateway, world, need["id"], world.first["id"]))["status"] == "viewed"
        answered = await http.post(
            f"/propositions/{match_id}",
            data={"csrf": csrf_of(shown.text), "reponse": "interested", "commentaire": "Nous collectons dès mars."},
        )
        assert answered.status_code == 303
        assert answered.headers["location"] == f"/propositions/{match_id}?envoye=interested#resultat"
        result = await http.get(answered.headers["location"])
    assert "Réponse envoyée" in result.text and "Nous collectons dès mars." in result.text
    state = await match_state(gateway, world, need["id"], world.first["id"])
    assert state["status"] == "interested" and state["responseComment"] == "Nous collectons dès mars."


async def test_declining_without_a_reason_says_so_beside_the_field_and_changes_nothing(
    gateway: Gateway, world: World
) -> None:
    need = world.needs[1]
    match_id = world.matches[(need["id"], world.first["id"])]
    async with client(gateway, world.session(world.first)) as http:
        shown = await http.get(f"/propositions/{match_id}")
        before = await match_state(gateway, world, need["id"], world.first["id"])
        refused = await http.post(
            f"/propositions/{match_id}", data={"csrf": csrf_of(shown.text), "reponse": "declined", "precision": "  "}
        )
        assert refused.status_code == 422
        assert (
            'id="raisons-erreur"' in refused.text and 'aria-describedby="raisons-aide raisons-erreur"' in refused.text
        )
        assert "Dites pourquoi vous déclinez" in refused.text and 'href="#raisons"' in refused.text
        assert await match_state(gateway, world, need["id"], world.first["id"]) == before
        declined = await http.post(
            f"/propositions/{match_id}",
            data={
                "csrf": csrf_of(shown.text),
                "reponse": "declined",
                "raison": "capacite",
                "precision": "Pas avant juin",
            },
        )
        assert declined.status_code == 303
    state = await match_state(gateway, world, need["id"], world.first["id"])
    assert state["status"] == "declined"
    assert state["responseComment"] == "Nous n'avons pas la capacité en ce moment — Pas avant juin"


async def test_another_actors_match_is_refused_with_a_clear_page_and_nothing_changes(
    gateway: Gateway, world: World
) -> None:
    need = world.needs[1]
    theirs = world.matches[(need["id"], world.second["id"])]
    before = await match_state(gateway, world, need["id"], world.second["id"])
    async with client(gateway, world.session(world.first)) as http:
        shown = await http.get(f"/propositions/{theirs}")
        assert shown.status_code == 404 and "Proposition introuvable" in shown.text
        assert "autre structure" in shown.text and need["title"] not in shown.text
        mine = await http.get("/propositions")
        answered = await http.post(
            f"/propositions/{theirs}", data={"csrf": csrf_of(mine.text), "reponse": "interested"}
        )
        assert answered.status_code == 403 and "Accès refusé" in answered.text
        for unknown_id in (uuid.uuid4(), "pas-un-identifiant"):
            unknown = await http.get(f"/propositions/{unknown_id}")
            assert unknown.status_code == 404 and "Proposition introuvable" in unknown.text
    assert await match_state(gateway, world, need["id"], world.second["id"]) == before  # not even viewed


async def test_a_forged_or_missing_csrf_token_is_refused_and_changes_nothing(gateway: Gateway, world: World) -> None:
    need = world.needs[2]
    match_id = world.matches[(need["id"], world.second["id"])]
    other = credential_token(gateway.settings, Role.ACTOR, world.second["id"], f"person:{uuid.uuid4()}")
    async with client(gateway, other) as http:
        foreign = csrf_of((await http.get("/propositions")).text)
    async with client(gateway, world.session(world.second)) as http:
        mine = csrf_of((await http.get("/propositions")).text)
        before = await match_state(gateway, world, need["id"], world.second["id"])
        profile_before = await gateway.ok(
            "query($id: ID!) { actor(id: $id) { version description } }", {"id": world.second["id"]}
        )
        for token in (None, "", foreign, mine[:-2] + "xx"):
            form = {"reponse": "interested", "commentaire": "forgé"} | ({"csrf": token} if token is not None else {})
            refused = await http.post(f"/propositions/{match_id}", data=form)
            assert refused.status_code == 403 and "Formulaire refusé" in refused.text, token
            profile_form = {"version": "1", "description": "forgée"} | ({"csrf": token} if token is not None else {})
            refused = await http.post("/profil", data=profile_form)
            assert refused.status_code == 403 and "Formulaire refusé" in refused.text, token
    assert await match_state(gateway, world, need["id"], world.second["id"]) == before
    profile_after = await gateway.ok(
        "query($id: ID!) { actor(id: $id) { version description } }", {"id": world.second["id"]}
    )
    assert profile_after == profile_before


def form_fields(page: str) -> list[tuple[str, str]]:
    """What a browser would post from the profile form as it is shown (checked boxes, selected options)."""
    form = page[page.index('<form method="post" action="/profil"') :]
    form = form[: form.index("</form>")]
    fields: list[tuple[str, str]] = []
    for tag in re.findall(r"<input\b[^>]*>", form):
        attrs = dict(re.findall(r'(\w[\w-]*)="([^"]*)"', tag))
        kind = attrs.get("type", "text")
        if "name" not in attrs or kind == "submit":
            continue
        if kind in ("checkbox", "radio") and " checked" not in tag:
            continue
        fields.append((attrs["name"], html.unescape(attrs.get("value", ""))))
    for name, body in re.findall(r'<textarea[^>]*name="([^"]+)"[^>]*>(.*?)</textarea>', form, re.S):
        fields.append((name, html.unescape(body)))
    for name, options in re.findall(r'<select[^>]*name="([^"]+)"[^>]*>(.*?)</select>', form, re.S):
        chosen = re.search(r'<option value="([^"]*)" selected>', options)
        fields.append((name, chosen.group(1) if chosen else ""))
    return fields


async def post_form(http: httpx.AsyncClient, path: str, fields: list[tuple[str, str]]) -> httpx.Response:
    """POST a form whose names repeat (checkboxes), as a browser encodes it."""
    headers = {"Content-Type": "application/x-www-form-urlencoded"}
    return await http.post(path, content=urlencode(fields), headers=headers)


def replaced(fields: list[tuple[str, str]], name: str, value: str) -> list[tuple[str, str]]:
    return [(key, value if key == name else old) for key, old in fields]


ACTOR_STATE = """
query($id: ID!) {
  actor(id: $id) {
    version name description website contact { name email phone } themes serviceTypes
    activities { theme serviceType area { kind territories radiusKm } }
  }
}
"""


async def test_the_profile_edit_changes_the_given_fields_only_and_errors_stand_beside_their_field(
    gateway: Gateway,
) -> None:
    actor = await register(gateway, f"Atelier vélo du Colombier {uuid.uuid4().hex[:6]}")
    token = credential_token(gateway.settings, Role.ACTOR, actor["id"], f"person:{uuid.uuid4()}")
    before = (await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin))["actor"]
    async with client(gateway, token) as http:
        shown = await http.get("/profil")
        assert shown.status_code == 200 and 'value="' + actor["name"] + '"' in shown.text
        fields = form_fields(shown.text)
        assert ("activities.0.area.kind", "radius") in fields and ("activities.0.area.radiusKm", "30") in fields

        # A bad e-mail: refused beside its field, with a summary linking to it, and what was typed kept.
        bad = await post_form(http, "/profil", replaced(fields, "contact.email", "pas-une-adresse"))
        assert bad.status_code == 422
        assert 'id="champ-contact-email-erreur"' in bad.text and 'href="#champ-contact-email"' in bad.text
        assert 'value="pas-une-adresse"' in bad.text and 'aria-invalid="true"' in bad.text
        assert (await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin))["actor"] == before

        # Nothing changed: nothing sent.
        same = await post_form(http, "/profil", fields)
        assert same.status_code == 200 and "Rien n'a changé" in html.unescape(same.text)
        assert (await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin))["actor"] == before

        edited = await post_form(http, "/profil", replaced(fields, "description", "Réparation de vélos, le samedi."))
        assert edited.status_code == 303 and edited.headers["location"] == "/profil?enregistre=1"
        assert "Votre profil est enregistré" in (await http.get(edited.headers["location"])).text
        after = (await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin))["actor"]
        assert after == {**before, "description": "Réparation de vélos, le samedi.", "version": before["version"] + 1}

        # The form of the first version, sent again: stale, said so, and nothing saved.
        stale = await post_form(http, "/profil", replaced(fields, "name", "Autre nom"))
        assert stale.status_code == 409 and "Recharger le profil" in stale.text and 'value="Autre nom"' in stale.text
        assert (await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin))["actor"] == after


async def test_emptying_the_website_on_the_profile_removes_it(gateway: Gateway) -> None:
    actor = await register(
        gateway, f"Atelier vélo du Blosne {uuid.uuid4().hex[:6]}", website="https://velo-blosne.example.org/"
    )
    token = credential_token(gateway.settings, Role.ACTOR, actor["id"], f"person:{uuid.uuid4()}")
    before = (await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin))["actor"]
    assert before["website"] == "https://velo-blosne.example.org/"
    async with client(gateway, token) as http:
        fields = form_fields((await http.get("/profil")).text)
        assert ("website", "https://velo-blosne.example.org/") in fields
        emptied = await post_form(http, "/profil", replaced(fields, "website", ""))
        assert emptied.status_code == 303, emptied.text[-3000:]
        assert 'value="https://velo-blosne.example.org/"' not in (await http.get("/profil")).text
    after = (await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin))["actor"]
    assert after == {**before, "website": None, "version": before["version"] + 1}


async def test_areas_take_territories_found_by_name_without_javascript_and_as_one_types(gateway: Gateway) -> None:
    actor = await register(gateway, f"Tiers-lieu de Bréquigny {uuid.uuid4().hex[:6]}")
    token = credential_token(gateway.settings, Role.ACTOR, actor["id"], f"person:{uuid.uuid4()}")
    async with client(gateway, token) as http:
        fields = form_fields((await http.get("/profil")).text)
        fields = replaced(fields, "activities.0.area.kind", "territories")
        searched = await post_form(
            http, "/profil", [*fields, ("activities.0.search", "Rennes Métropole"), ("action", "chercher-0")]
        )
        assert searched.status_code == 200 and "Territoires trouvés pour" in searched.text
        code = re.search(r'name="activities\.0\.area\.territories" value="(EPCI-\d+)"', searched.text)
        assert code is not None, "Rennes Métropole not found"
        # Without a territory, a "territories" area is refused beside its field.
        refused = await post_form(http, "/profil", fields)
        assert refused.status_code == 422 and 'id="champ-activities-0-area-territories-erreur"' in refused.text
        picked = await post_form(
            http, "/profil", [*form_fields(searched.text), ("activities.0.area.territories", code.group(1))]
        )
        assert picked.status_code == 303, picked.text
        suggestions = await http.get("/profil/territoires", params={"activite": "1", "activities.1.search": "Ille-et"})
    assert 'name="activities.1.area.territories" value="DEP-35"' in suggestions.text
    assert "<html" not in suggestions.text  # a fragment
    stored = await gateway.ok(ACTOR_STATE, {"id": actor["id"]}, gateway.admin)
    assert stored["actor"]["activities"][0]["area"] == {
        "kind": "TERRITORIES",
        "territories": [code.group(1)],
        "radiusKm": None,
    }


async def test_an_actor_answers_from_the_page_with_the_keyboard_and_every_page_passes_axe_on_a_phone(
    gateway: Gateway, world: World, new_page: NewPage
) -> None:
    need = world.needs[2]
    match_id = world.matches[(need["id"], world.first["id"])]
    token = world.session(world.first)
    pages = {
        "propositions": "/propositions",
        "propositions-filtre": "/propositions?statut=a-traiter",
        "proposition": f"/propositions/{match_id}",
        "profil": "/profil",
    }
    for width, viewport in (("bureau", DESKTOP), ("telephone", PHONE)):
        page = await new_page(viewport=viewport)
        await page.context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": gateway.url}])
        for name, path in pages.items():
            await page.goto(gateway.url + path)
            assert await page.locator("h1").count() == 1, path
            assert await accessibility_violations(page) == [], path
            assert await horizontal_overflow(page) == 0, path
            await screenshot(page, f"console-{name}-{width}")
        # A decline without a reason, refused beside its field (the match is unchanged: still to answer).
        await page.goto(gateway.url + f"/propositions/{match_id}")
        await page.get_by_role("button", name="Je décline").click()
        await page.wait_for_selector("#raisons-erreur")
        assert await accessibility_violations(page) == []
        assert await horizontal_overflow(page) == 0
        await screenshot(page, f"console-proposition-erreur-{width}")
        # The profile with an error beside a field, and a territory search's results.
        await page.goto(gateway.url + "/profil")
        await page.fill("#champ-contact-email", "pas-une-adresse")
        await page.locator("button[value=enregistrer]").first.click()
        await page.wait_for_selector("#champ-contact-email-erreur")
        assert await accessibility_violations(page) == []
        assert await horizontal_overflow(page) == 0
        await screenshot(page, f"console-profil-erreur-{width}")
        await page.goto(gateway.url + "/profil")
        await page.fill("#champ-activities-1-search", "Rennes")
        await page.wait_for_selector("#suggestions-1 input[type=checkbox]")  # htmx, as one types
        assert await accessibility_violations(page) == []
        assert await horizontal_overflow(page) == 0
        await screenshot(page, f"console-profil-territoires-{width}")

    # Answering with the keyboard only: tab to the message, type it, tab to the button, press Enter.
    page = await new_page(viewport=PHONE)
    await page.context.add_cookies([{"name": SESSION_COOKIE, "value": token, "url": gateway.url}])
    await page.goto(gateway.url + f"/propositions/{match_id}")
    for _ in range(60):
        await page.keyboard.press("Tab")
        if await page.evaluate("() => document.activeElement && document.activeElement.id") == "commentaire":
            break
    else:
        raise AssertionError("the message field is not reachable with Tab")
    await page.keyboard.type("Disponibles en avril, contact au local.")
    await page.keyboard.press("Tab")
    assert await page.evaluate("() => document.activeElement.textContent.trim()") == "Je suis intéressé"
    await page.keyboard.press("Enter")
    await page.wait_for_selector("#resultat")
    assert "Réponse envoyée" in await page.locator("#resultat").inner_text()
    assert await accessibility_violations(page) == []
    assert await horizontal_overflow(page) == 0
    await screenshot(page, "console-proposition-repondue-telephone")
    state = await match_state(gateway, world, need["id"], world.first["id"])
    assert state["status"] == "interested" and state["responseComment"] == "Disponibles en avril, contact au local."
