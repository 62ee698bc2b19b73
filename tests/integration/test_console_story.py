"""The console's story in a real browser, two people in two contexts: an authority member signs in with the link from
the mail, publishes a need from the form and sees its matches appear live with reasons; an actor member signs in,
answers interested with a comment; the authority sees the answer appear, selects it and closes the need as fulfilled."""

from __future__ import annotations

import re
import uuid
from datetime import date, timedelta

from playwright.async_api import Page, expect

from tests.integration.browser_fixtures import NewPage, screenshot
from tests.integration.directory_fixtures import Directory
from tests.integration.gateway_fixtures import Gateway
from tests.integration.matching_fixtures import SmtpSink
from tests.integration.test_console_needs import first_match
from tests.integration.test_console_signin import email, link_for, mails_to, member_of, signing
from tests.integration.test_gateway import FOUGERES, credential, publish_need, register

__all__ = ["signing"]  # the module-scoped gateway that mails its links to a sink

WAIT_MS = 20_000  # the machine is shared: generous, explicit waits


async def sign_in(page: Page, gateway: Gateway, sink: SmtpSink, address: str) -> None:
    """Ask for a link in the page, open it from the mail, press its confirming button."""
    sent = len(mails_to(sink, address))
    await page.goto(gateway.url + "/connexion")
    await page.get_by_label("Adresse e-mail").fill(address)
    await page.get_by_role("button", name="Recevoir un lien de connexion").click()
    await expect(page.get_by_role("heading", name="Consultez votre messagerie")).to_be_visible(timeout=WAIT_MS)
    await page.goto(gateway.url + await link_for(sink, address, sent + 1, timeout_s=20))
    await page.get_by_role("button", name="Me connecter").click()
    # One membership: the session acts for it at once and lands on the home page.
    await expect(page.get_by_role("heading", name="Bonjour", level=1)).to_be_visible(timeout=WAIT_MS)


async def test_an_authority_and_an_actor_close_the_cooperation_loop_in_a_browser(
    directory: Directory, signing: tuple[Gateway, SmtpSink], new_page: NewPage
) -> None:
    gateway, sink = signing
    suffix = uuid.uuid4().hex[:6]
    authority = await register(
        gateway, f"Ville de Rennes {suffix}", kind="local_authority", legalForm="Commune", activities=[]
    )
    # Réemploi at Fougères, where few actors stand: the need typed in below matches it.
    actor = await register(gateway, f"Ressourcerie de Bonabry {suffix}", **FOUGERES)
    # An earlier need, so that matching already knows the authority when the form is sent.
    await publish_need(gateway, await credential(gateway, "collectivity", authority["id"]), title="Un premier besoin")
    chargee, benevole = email(), email()
    await member_of(directory, authority["id"], chargee, "Claire Chargée")
    await member_of(directory, actor["id"], benevole, "Bruno Bénévole")

    # The authority member signs in and publishes a need from the form.
    mairie = await new_page()
    await sign_in(mairie, gateway, sink, chargee)
    await screenshot(mairie, "console-histoire-1-accueil-collectivite")
    await mairie.goto(gateway.url + "/besoins/nouveau")
    title = f"Un lieu de réemploi à Bonabry {suffix}"
    await mairie.locator("#champ-title").fill(title)
    await mairie.locator("#champ-description").fill("Collecte et revente d'objets de seconde main, réemploi")
    await mairie.locator("#champ-kind").select_option("PARTNERSHIP")
    await mairie.locator("input[name=themes][value=reemploi]").check()
    await mairie.locator("#champ-commune-recherche").fill("Fougères")
    await expect(mairie.locator("input[name=communeCode][value^='35115|']")).to_be_checked(timeout=WAIT_MS)
    await mairie.locator("#champ-location-lat").fill("48,3524")
    await mairie.locator("#champ-location-lon").fill("-1,1989")
    await mairie.locator("#champ-perimeter-radiusKm").fill("30")
    await mairie.locator("#champ-deadline").fill((date.today() + timedelta(days=30)).isoformat())
    await screenshot(mairie, "console-histoire-2-formulaire")
    await mairie.locator("button[value=enregistrer]").click()
    await mairie.wait_for_url(re.compile(r"/besoins/[0-9a-f-]{36}$"), timeout=WAIT_MS)
    await expect(mairie.locator("h1")).to_have_text(title)
    need_id = mairie.url.rsplit("/", 1)[1]
    await mairie.evaluate("() => { window.pasRecharge = true }")

    # Its match appears on the open page, with its reasons.
    row = mairie.locator(".correspondance", has_text=actor["name"])
    await expect(row).to_be_visible(timeout=WAIT_MS)
    await expect(row.locator(".raisons li").first).to_be_visible(timeout=WAIT_MS)
    await expect(row).to_contain_text("Score")
    await screenshot(mairie, "console-histoire-3-correspondances")
    match = await first_match(gateway, need_id, actor["id"])

    # The actor member, in another context, signs in and answers from its inbox.
    asso = await new_page()
    await sign_in(asso, gateway, sink, benevole)
    await asso.goto(gateway.url + "/propositions")
    await expect(asso.locator(f'a[href="/propositions/{match["id"]}"]').first).to_be_visible(timeout=WAIT_MS)
    await screenshot(asso, "console-histoire-4-propositions")
    await asso.locator(f'a[href="/propositions/{match["id"]}"]').first.click()
    await expect(asso.locator("h1")).to_contain_text(title, timeout=WAIT_MS)
    await asso.locator("#commentaire").fill("Nous pouvons ouvrir en avril.")
    await screenshot(asso, "console-histoire-5-proposition")
    await asso.get_by_role("button", name="Je suis intéressé").click()
    await expect(asso.locator("#resultat")).to_contain_text("Réponse envoyée", timeout=WAIT_MS)
    await screenshot(asso, "console-histoire-6-reponse-envoyee")

    # The authority's open page shows the answer, without reloading.
    await expect(row.locator(".etat")).to_have_text("Intéressé", timeout=WAIT_MS)
    await expect(row).to_contain_text("Nous pouvons ouvrir en avril.", timeout=WAIT_MS)
    assert await mairie.evaluate("() => window.pasRecharge === true")
    await screenshot(mairie, "console-histoire-7-reponse-vue")

    # It selects the actor and closes the need as fulfilled.
    await row.get_by_role("button", name=f"Retenir {actor['name']}").click()
    await expect(mairie.locator(".correspondance", has_text=actor["name"]).locator(".etat")).to_have_text(
        "Retenu", timeout=WAIT_MS
    )
    await mairie.locator("input[name=issue][value=FULFILLED]").check()
    await mairie.locator("#champ-commentaire-cloture").fill("Convention signée avec la ressourcerie")
    await mairie.get_by_role("button", name="Clore le besoin").click()
    await expect(mairie.locator("body")).to_contain_text("Satisfait", timeout=WAIT_MS)
    await screenshot(mairie, "console-histoire-8-besoin-clos")

    data = await gateway.ok(
        "query($n: ID!, $m: ID!) { need(id: $n) { status closingComment } match(id: $m) { status responseComment } }",
        {"n": need_id, "m": match["id"]},
        gateway.admin,
    )
    assert data == {
        "need": {"status": "fulfilled", "closingComment": "Convention signée avec la ressourcerie"},
        "match": {"status": "selected", "responseComment": "Nous pouvons ouvrir en avril."},
    }
