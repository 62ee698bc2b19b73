"""What people reach from links goes through the gateway, the one public port: cancel links, event pages, JSON-LD.

The events service's links lead to the session's gateway (tests/integration/events_fixtures.py picks its port first),
and its public port serves neither metrics nor API docs: those are on an internal port.
"""

from __future__ import annotations

import html
import re
import uuid
from urllib.parse import urlsplit

import httpx
import pytest

from services.common.embedded import free_port
from services.common.settings import Settings
from services.events import emails
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events
from tests.integration.gateway_fixtures import Gateway, running_gateway
from tests.integration.matching_fixtures import Matching
from tests.integration.test_events import mails_to, new_event, organizers, register_person

pytestmark = pytest.mark.asyncio
URL = re.compile(r"https?://[^\s\"'<>]+")


def service_addresses(*urls: str) -> list[str]:
    """What a link to a service would contain: its base URL and its port after any host."""
    return [*urls, *(f":{urlsplit(url).port}/" for url in urls)]


async def test_an_emailed_cancel_link_leads_to_the_gateway_and_cancels_there(
    directory: Directory, events: Events, matching: Matching, gateway: Gateway
) -> None:
    who = await organizers(directory, events)
    event = await new_event(events, who["city"]["id"], capacity=1)
    email = f"lea-{uuid.uuid4().hex[:6]}@example.org"
    await register_person(events, event["id"], email)
    (confirmation,) = await mails_to(events, email, 1)
    text = confirmation.get_content()
    links = URL.findall(text)
    assert links, text
    assert all(link.startswith(gateway.url + "/") for link in links), links
    for address in service_addresses(directory.url, events.url, matching.url):
        assert address not in text
    (link,) = [link for link in links if "/cancel?token=" in link]

    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(link)
        assert page.status_code == 200, page.text
        assert page.headers["content-type"].startswith("text/html") and "Annuler" in page.text
        found = re.search(r'<form method="post" action="([^"]+)"', page.text)
        assert found, page.text
        action = html.unescape(found.group(1))
        assert action.startswith("/v1/registrations/"), "the button posts back to the host that served the page"
        forged = await http.post(gateway.url + action[:-4] + "0000")
        assert forged.status_code == 403 and forged.json()["code"] == "FORBIDDEN"
        cancelled = await http.post(gateway.url + action)
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        again = await http.post(gateway.url + action)
        assert again.status_code == 409
        assert "déjà cancelled" in (await http.get(link)).text
        without_token = await http.post(gateway.url + action.split("?")[0])
        assert without_token.status_code == 422, "through the gateway a cancel needs the link's token"
    told = await mails_to(events, email, 2)
    assert any(mail["Subject"].startswith("Inscription annulée") for mail in told)


async def test_a_link_emailed_before_this_change_works_once_its_old_host_leads_to_the_gateway(
    directory: Directory, events: Events, gateway: Gateway
) -> None:
    who = await organizers(directory, events)
    event = await new_event(events, who["city"]["id"])
    registration = await register_person(events, event["id"], f"marc-{uuid.uuid4().hex[:6]}@example.org")
    rid = registration["id"]
    # Built as services/events/emails.py built them then: on MAILLAGE_PUBLIC_EVENTS_URL, the events service's host.
    old_base = "https://evenements.maillage.example.org"
    old_link = f"{old_base}/v1/registrations/{rid}/cancel?token={emails.cancel_token(events.settings, rid)}"
    old_event_url = f"{old_base}/v1/events/{event['id']}"  # in JSON-LD and calendars
    # The operator routes that host to the gateway; the request keeps its path, its query and its Host.
    old = urlsplit(old_link)
    headers = {"Host": old.netloc}
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        page = await http.get(f"{old.path}?{old.query}", headers=headers)
        assert page.status_code == 200 and "<form" in page.text, page.text
        cancelled = await http.post(f"{old.path}?{old.query}", headers=headers)
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled", cancelled.text
        shown = await http.get(urlsplit(old_event_url).path, headers=headers)
        assert shown.status_code == 200 and shown.json()["id"] == event["id"]


async def test_event_pages_and_json_ld_come_from_the_gateway_and_link_only_to_it(
    directory: Directory, events: Events, matching: Matching, gateway: Gateway
) -> None:
    who = await organizers(directory, events)
    event = await new_event(events, who["city"]["id"])
    draft = await new_event(events, who["city"]["id"], publish=False)
    page_url = f"{gateway.url}/v1/events/{event['id']}"
    async with httpx.AsyncClient(timeout=30) as http:
        page = await http.get(page_url)
        ld = await http.get(page_url, headers={"Accept": "application/ld+json"})
        jsonld = await http.get(f"{page_url}/jsonld")
        calendar = await http.get(f"{gateway.url}/ical/events/{event['id']}.ics")
        hidden = await http.get(f"{gateway.url}/v1/events/{draft['id']}")
    assert page.status_code == 200 and page.json()["title"] == event["title"]
    assert page.headers["etag"] == f'"{event["version"]}"'
    assert ld.headers["content-type"].startswith("application/ld+json")
    assert ld.json()["url"] == page_url and jsonld.json() == ld.json()
    assert calendar.status_code == 200 and f"URL:{page_url}" in calendar.text.replace("\r\n ", "")
    assert hidden.status_code == 404, "the gateway shows the public view: no draft"
    for response in (page, ld, jsonld, calendar):
        for address in service_addresses(directory.url, events.url, matching.url):
            assert address not in response.text


async def test_only_the_pages_people_need_are_proxied_not_the_events_api(events: Events, gateway: Gateway) -> None:
    some = str(uuid.uuid4())
    token = emails.cancel_token(events.settings, some)
    async with httpx.AsyncClient(base_url=gateway.url, timeout=30) as http:
        answers = {
            ("GET", "/v1/events"): await http.get("/v1/events"),
            ("POST", "/v1/events"): await http.post("/v1/events", json={}),
            ("POST", "/v1/events/batch"): await http.post("/v1/events/batch", json={"ids": [some]}),
            ("GET", f"/v1/events/{some}.ics"): await http.get(f"/v1/events/{some}.ics"),
            ("GET", f"/v1/events/{some}/registrations"): await http.get(f"/v1/events/{some}/registrations"),
            ("GET", f"/v1/registrations/{some}"): await http.get(f"/v1/registrations/{some}"),
            ("POST", "/v1/erasures"): await http.post("/v1/erasures", json={"email": "a@example.org"}),
            ("GET", "/v1/feeds/themes/reemploi.ics"): await http.get("/v1/feeds/themes/reemploi.ics"),
            ("GET", "/v1/me"): await http.get("/v1/me"),
        }
        unknown = await http.get(f"/v1/registrations/{some}/cancel", params={"token": token})
    refused = {
        route: response.status_code for route, response in answers.items() if response.status_code not in (404, 405)
    }
    assert refused == {}, "the gateway serves none of the events REST API"
    assert unknown.status_code == 404 and unknown.json()["code"] == "NOT_FOUND", "a real token of no registration"


async def test_the_public_port_has_no_metrics_or_docs_and_the_internal_port_has_the_metrics(gateway: Gateway) -> None:
    async with httpx.AsyncClient(timeout=30) as http:
        await http.post(gateway.url + "/graphql", json={"query": "{ themes { code } }"})
        hidden = {
            path: (await http.get(gateway.url + path)).status_code
            for path in ("/metrics", "/docs", "/redoc", "/openapi.json")
        }
        probes = [(await http.get(gateway.url + path)).status_code for path in ("/healthz", "/readyz")]
        metrics = await http.get(gateway.metrics_url)
    assert hidden == dict.fromkeys(hidden, 404)
    assert probes == [200, 200]
    assert metrics.status_code == 200
    assert 'route="/graphql",service="gateway",status="200"' in metrics.text
    assert urlsplit(gateway.metrics_url).port != urlsplit(gateway.url).port


async def test_a_stopped_events_service_makes_the_pages_say_so(gateway_settings: Settings, events: Events) -> None:
    rid = str(uuid.uuid4())
    token = emails.cancel_token(events.settings, rid)
    async with (
        running_gateway(gateway_settings, events_url=f"http://127.0.0.1:{free_port()}") as alone,
        httpx.AsyncClient(base_url=alone.url, timeout=30) as http,
    ):
        page = await http.get(f"/v1/registrations/{rid}/cancel", params={"token": token})
    assert page.status_code == 503 and page.headers["retry-after"] == "5"
    assert page.json()["code"] == "UNAVAILABLE" and "events service" in page.json()["detail"]


async def test_the_calendar_feeds_answer_their_refusals_as_problem_bodies(
    gateway_settings: Settings, events: Events
) -> None:
    async with (
        running_gateway(gateway_settings, events_url=f"http://127.0.0.1:{free_port()}") as alone,
        httpx.AsyncClient(base_url=alone.url, timeout=30) as http,
    ):
        down = await http.get("/ical/themes/reemploi.ics")
        unknown = await http.get("/ical/nope/x.ics")
    assert down.status_code == 503 and down.headers["retry-after"] == "5"
    assert down.headers["content-type"] == "application/problem+json"
    assert down.json()["code"] == "UNAVAILABLE" and "events service" in down.json()["detail"]
    assert unknown.status_code == 404 and unknown.headers["content-type"] == "application/problem+json"
    assert unknown.json()["code"] == "NOT_FOUND" and unknown.json()["instance"] == "/ical/nope/x.ics"
