"""Names and titles with line breaks, over the real stack: iCalendar feeds still parse, the CSV export runs no
formula, e-mails gain no header and the senders keep sending."""

from __future__ import annotations

import csv
import io
import uuid
from email.message import EmailMessage
from typing import Any

import icalendar
import pytest

from services.common.encoding import one_line
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events
from tests.integration.matching_fixtures import Matching
from tests.integration.test_directory_api import create
from tests.integration.test_events import in_replica, mails_to, new_event, register_person
from tests.integration.test_matching import eventually, publish, setting

pytestmark = pytest.mark.asyncio

INJECTED = "\r\nBcc: pirate@example.org\r\nX-Injected: oui\u2028\x85END:VEVENT\nBEGIN:VALARM"
HEADERS = {"From", "To", "Subject", "Message-ID", "Content-Type", "Content-Transfer-Encoding", "MIME-Version"}
FORMULAS = ['=HYPERLINK("https://pirate.example","?")', "+33 6 12", "-2+3", "@SUM(A1:A2)", "\x1c=1+1"]


def assert_one_header_each(mail: EmailMessage, subject_words: str) -> None:
    assert set(mail.keys()) == HEADERS, "no header added by a name or a title"
    assert len(mail["To"].addresses) == 1
    subject = str(mail["Subject"])
    assert "\r" not in subject and "\n" not in subject and subject_words in subject


def parse_calendar(body: bytes) -> icalendar.Calendar:
    assert all(b"\r" not in line and b"\n" not in line for line in body.split(b"\r\n")), "no bare CR or LF"
    return icalendar.Calendar.from_ical(body)


async def test_feeds_exports_and_emails_of_an_event_named_with_line_breaks(
    directory: Directory, events: Events
) -> None:
    tag = uuid.uuid4().hex[:6]
    organizer = await create(
        directory,
        name=f"Tiers-lieu {tag}{INJECTED}",
        commune_code="67482",
        location={"lat": 48.5734, "lon": 7.7521},
        themes=["culture"],
        service_types=["prestation_service"],
        activities=[],
        qpv_code=None,
    )
    await in_replica(events, organizer["id"])
    event = await new_event(
        events,
        organizer["id"],
        title=f"Forum {tag}{INJECTED}",
        description=f"Première ligne\r\ndeuxième\u2028troisième{INJECTED}",
        place={"address": f"12 rue du Pont{INJECTED}", "commune_code": "67482"},
        themes=["culture"],
    )
    async with events.client() as http:
        ics = await http.get(f"/v1/events/{event['id']}.ics")
        feed = await http.get(f"/v1/feeds/organizers/{organizer['id']}.ics")
    assert ics.status_code == 200 and feed.status_code == 200, (ics.text, feed.text)
    (vevent,) = parse_calendar(ics.content).walk("VEVENT")
    assert str(vevent["SUMMARY"]) == one_line(event["title"])
    assert "VALARM" not in [c.name for c in vevent.subcomponents]
    assert vevent["ORGANIZER"].params["CN"] == one_line(organizer["name"])
    assert str(vevent["DESCRIPTION"]).split("\n")[:3] == ["Première ligne", "deuxième", "troisième"]
    calendar = parse_calendar(feed.content)
    assert str(calendar["X-WR-CALNAME"]) == one_line(f"Maillage — {organizer['name']}")
    assert [str(v["UID"]) for v in calendar.walk("VEVENT")] == [f"{event['id']}@maillage"]

    addresses = [f"inscrit-{tag}-{i}@example.org" for i in range(len(FORMULAS))]
    for name, address in zip(FORMULAS, addresses, strict=True):
        await register_person(events, event["id"], address, name=name)
    async with events.client() as http:
        export = await http.get(f"/v1/events/{event['id']}/registrations.csv", headers=events.admin)
    assert export.status_code == 200, export.text
    rows = list(csv.DictReader(io.StringIO(export.text.removeprefix("\ufeff"), newline=""), delimiter=";"))
    assert sorted(row["name"] for row in rows) == sorted("'" + name for name in FORMULAS)

    for address in addresses:
        (mail,) = await mails_to(events, address, 1)
        assert_one_header_each(mail, f"Forum {tag}")
        assert "pirate@example.org" not in [str(a.addr_spec) for a in mail["To"].addresses]
    # The e-mail sender is still running: a later, ordinary registration is told too.
    plain = await new_event(events, organizer["id"], title=f"Atelier {tag}", themes=["culture"])
    await register_person(events, plain["id"], f"ensuite-{tag}@example.org")
    (later,) = await mails_to(events, f"ensuite-{tag}@example.org", 1)
    assert_one_header_each(later, f"Atelier {tag}")


async def test_match_emails_of_a_need_titled_with_line_breaks(own_matching: tuple[Directory, Matching]) -> None:
    # A stack of its own: on the shared one, this test's e-mails wait behind every other test's (see own_matching).
    directory, matching = own_matching
    actors = await setting(directory, matching)
    tag = actors["near"]["name"].split()[-1]
    need = await publish(matching, actors["authority"]["id"], title=f"Ressourcerie {tag}{INJECTED}")

    async def mails(address: str) -> list[Any]:
        return [m for m in matching.smtp.messages if m["To"] == address and tag in str(m["Subject"])]

    for address in (f"proche-{tag}@example.org", f"mairie-{tag}@example.org"):
        for mail in await eventually(lambda address=address: mails(address)):  # type: ignore[misc]
            assert_one_header_each(mail, f"Ressourcerie {tag}")
            assert one_line(need["title"]) in mail.get_content()
