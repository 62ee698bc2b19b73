"""Territorial events over the real stack: organizers from the replica, registrations under load, e-mails, feeds."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import asyncpg
import icalendar
import pytest

from services.common.auth import Role
from services.common.replica import rebuild
from services.contracts.topics import EVENT, REGISTRATION
from services.contracts.vocabularies import THEMES_BY_CODE
from services.events.consumers import apply_actor
from tests.integration.directory_fixtures import Directory
from tests.integration.events_fixtures import Events
from tests.integration.kafka_tools import read_topic
from tests.integration.test_directory_api import create
from tests.integration.test_matching import eventually

pytestmark = pytest.mark.asyncio
PARIS = ZoneInfo("Europe/Paris")


async def in_replica(events: Events, *actor_ids: str, status: str = "active") -> None:
    conn = await asyncpg.connect(events.database_url)
    try:

        async def probe() -> bool:
            count = await conn.fetchval(
                "SELECT count(*) FROM actors WHERE id = ANY($1::uuid[]) AND status = $2", list(actor_ids), status
            )
            return bool(count == len(actor_ids))

        await eventually(probe)
    finally:
        await conn.close()


async def organizers(directory: Directory, events: Events) -> dict[str, dict[str, Any]]:
    """A city, an association co-organizing with it, and an unrelated actor, all in the events replica.

    They live in Strasbourg with a theme of their own, so that they never compete with the actors
    the matching tests expect in Besançon (every test shares one directory and one broker).
    """
    tag = uuid.uuid4().hex[:6]
    elsewhere = {
        "commune_code": "67482",
        "location": {"lat": 48.5734, "lon": 7.7521},
        "themes": ["culture"],
        "service_types": ["prestation_service"],
        "activities": [],
        "qpv_code": None,
    }
    city = await create(
        directory,
        **{**elsewhere, "themes": [], "service_types": []},
        name=f"Ville de Strasbourg {tag}",
        kind="local_authority",
        legal_form="Commune",
    )
    association = await create(directory, **elsewhere, name=f"Tiers-lieu La Fabrique {tag}")
    other = await create(directory, **elsewhere, name=f"Autre association {tag}")
    await in_replica(events, city["id"], association["id"], other["id"])
    return {"city": city, "association": association, "other": other}


def event_body(organizer_ids: list[str], **overrides: Any) -> dict[str, Any]:
    start = (datetime.now(PARIS) + timedelta(days=20)).replace(hour=9, minute=30, second=0, microsecond=0)
    body: dict[str, Any] = {
        "title": "Forum de l'ESS du Doubs",
        "description": "Rencontres entre collectivités et acteurs du réemploi et de la réparation.",
        "kind": "forum",
        "themes": ["reemploi", "reparation"],
        "organizer_ids": organizer_ids,
        "starts_at": start.replace(tzinfo=None).isoformat(),  # local time in the event's zone
        "ends_at": (start + timedelta(hours=8)).replace(tzinfo=None).isoformat(),
        "timezone": "Europe/Paris",
        "place": {
            "address": "Kursaal, place du Théâtre, Besançon",
            "commune_code": "25056",
            "location": {"lat": 47.2395, "lon": 6.0238},
        },
        "capacity": 100,
        "registration_mode": "open",
        "publish": True,
    }
    body.update(overrides)
    return body


async def new_event(events: Events, organizer_id: str, **overrides: Any) -> dict[str, Any]:
    body = event_body([organizer_id], **overrides)
    async with events.client() as http:
        response = await http.post("/v1/events", json=body, headers=events.token(Role.ACTOR, organizer_id))
    assert response.status_code == 201, response.text
    return dict(response.json())


async def register_person(events: Events, event_id: str, email: str, name: str = "Claude Dupont") -> dict[str, Any]:
    async with events.client() as http:
        response = await http.post(
            f"/v1/events/{event_id}/registrations",
            json={"person": {"name": name, "email": email}},
            headers=events.token(Role.PARTNER, subject="partner:portail"),
        )
    assert response.status_code == 201, response.text
    return dict(response.json())


async def registrations(events: Events, event_id: str) -> list[dict[str, Any]]:
    async with events.client() as http:
        response = await http.get(f"/v1/events/{event_id}/registrations", headers=events.admin)
    assert response.status_code == 200, response.text
    return list(response.json())


async def mails_to(events: Events, address: str, count: int) -> list[Any]:
    async def probe() -> list[Any]:
        found = [m for m in events.smtp.messages if m["To"] == address]
        return found if len(found) >= count else []

    return await eventually(probe)


class TestEvents:
    async def test_a_draft_is_private_until_published_then_public_with_json_ld(
        self, directory: Directory, events: Events
    ) -> None:
        who = await organizers(directory, events)
        city, association = who["city"]["id"], who["association"]["id"]
        async with events.client() as http:
            response = await http.post(
                "/v1/events",
                json=event_body([city, association], publish=False),
                headers=events.token(Role.COLLECTIVITY, city),
            )
            assert response.status_code == 201, response.text
            draft = response.json()
            assert draft["status"] == "draft" and draft["version"] == 1
            assert [o["name"] for o in draft["organizers"]] == [who["city"]["name"], who["association"]["name"]]
            start = datetime.fromisoformat(draft["starts_at"])
            assert start.utcoffset() == timedelta(0), "stored and returned in UTC"
            assert start.astimezone(PARIS).hour == 9 and start.astimezone(PARIS).minute == 30

            assert (await http.get(f"/v1/events/{draft['id']}")).status_code == 404, "a draft is not public"
            other = events.token(Role.ACTOR, who["other"]["id"])
            assert (await http.get(f"/v1/events/{draft['id']}", headers=other)).status_code == 404
            co = events.token(Role.ACTOR, association)
            assert (await http.get(f"/v1/events/{draft['id']}", headers=co)).status_code == 200

            refused = await http.post(f"/v1/events/{draft['id']}/publish", headers=events.token(Role.PARTNER))
            assert refused.status_code in (403, 404)
            published = await http.post(f"/v1/events/{draft['id']}/publish", headers=co)
            assert published.status_code == 200, published.text
            assert published.json()["status"] == "published" and published.json()["version"] == 2

            public = await http.get(f"/v1/events/{draft['id']}")
            assert public.status_code == 200 and public.headers["etag"] == '"2"'
            ld = await http.get(f"/v1/events/{draft['id']}", headers={"Accept": "application/ld+json"})
            assert ld.headers["content-type"].startswith("application/ld+json")
            doc = ld.json()
            assert doc["@type"] == "Event" and doc["name"] == "Forum de l'ESS du Doubs"
            assert doc["startDate"].startswith(start.astimezone(PARIS).strftime("%Y-%m-%dT09:30:00"))
            assert doc["location"]["address"]["addressLocality"] == "Besançon"
            assert doc["location"]["geo"]["latitude"] == 47.2395
            assert {o["name"] for o in doc["organizer"]} == {who["city"]["name"], who["association"]["name"]}
            assert doc["eventStatus"] == "https://schema.org/EventScheduled"
            assert doc["maximumAttendeeCapacity"] == 100
            assert (await http.get(f"/v1/events/{draft['id']}/jsonld")).json() == doc

        records = await read_topic(events.settings, EVENT, expect=1, timeout_s=20)
        mine = [r for r in records if r.key == draft["id"].encode()]
        assert mine, "the publication went through the outbox to the event topic"
        headers = {k: v.decode() for k, v in mine[0].headers}
        assert headers["ce_type"] == "org.maillage.events.event.published"
        assert json.loads(mine[0].value)["event"]["organizer_ids"] == [city, association]

    async def test_bad_events_get_a_clear_error_naming_the_field(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        city = who["city"]["id"]
        headers = events.token(Role.COLLECTIVITY, city)
        start = datetime.now(UTC) + timedelta(days=3)
        cases: dict[str, tuple[dict[str, Any], str]] = {
            "end before start": (
                {"starts_at": start.isoformat(), "ends_at": (start - timedelta(hours=1)).isoformat()},
                "ends_at must be after starts_at",
            ),
            "negative capacity": ({"capacity": -1}, "capacity"),
            "unknown theme": ({"themes": ["astrologie"]}, "astrologie"),
            "unknown time zone": ({"timezone": "Europe/Besancon"}, "timezone"),
            "unknown commune": (
                {"place": {"address": "ici", "commune_code": "99999", "location": {"lat": 47.0, "lon": 6.0}}},
                "commune_code",
            ),
            "no place nor url": ({"place": None}, "place, an online_url"),
            "unknown organizer": ({"organizer_ids": [city, str(uuid.uuid4())]}, "organizer_ids"),
            "bad organizer id": ({"organizer_ids": ["not-an-id"]}, "organizer_ids"),
            "over already": (
                {
                    "starts_at": (datetime.now(UTC) - timedelta(days=2)).isoformat(),
                    "ends_at": (datetime.now(UTC) - timedelta(days=1)).isoformat(),
                },
                "ends_at",
            ),
        }
        async with events.client() as http:
            for name, (overrides, mention) in cases.items():
                response = await http.post("/v1/events", json={**event_body([city]), **overrides}, headers=headers)
                assert response.status_code == 422, (name, response.text)
                problem = response.json()
                assert problem["status"] == 422 and problem["errors"], name
                assert mention in json.dumps(problem), (name, problem)

            event = await new_event(events, city)
            url = f"/v1/events/{event['id']}"
            body = event_body([city], publish=None, title="Forum de l'ESS, édition 2")
            body.pop("publish")
            assert (await http.put(url, json=body, headers=headers)).status_code == 428
            stale = await http.put(url, json=body, headers={**headers, "If-Match": '"7"'})
            assert stale.status_code == 409 and stale.json()["errors"][0]["field"] == "If-Match"
            other = await http.put(
                url, json=body, headers={**events.token(Role.ACTOR, who["other"]["id"]), "If-Match": '"1"'}
            )
            assert other.status_code == 403
            ok = await http.put(url, json=body, headers={**headers, "If-Match": '"1"'})
            assert ok.status_code == 200 and ok.json()["version"] == 2
            again = await http.put(url, json=body, headers={**headers, "If-Match": '"1"'})
            assert again.status_code == 409

            # Nobody else's name on an event: a caller organizes only as one of the organizers.
            foreign = await http.post(
                "/v1/events", json=event_body([who["association"]["id"]]), headers=events.token(Role.ACTOR, city)
            )
            assert foreign.status_code == 403
            stored = await http.get(url)
            assert stored.json()["title"] == "Forum de l'ESS, édition 2", "refused edits changed nothing"

    async def test_an_organizer_archived_later_leaves_its_events_visible_but_flagged(
        self, directory: Directory, events: Events
    ) -> None:
        who = await organizers(directory, events)
        association = who["association"]["id"]
        event = await new_event(events, association)
        assert event["flags"] == []
        async with directory.client() as http:
            archived = await http.post(f"/v1/actors/{association}/archive", json={}, headers=directory.admin)
            assert archived.status_code == 200, archived.text
        await in_replica(events, association, status="archived")
        async with events.client() as http:
            seen = (await http.get(f"/v1/events/{event['id']}")).json()
            assert seen["flags"] == ["organizer_archived"]
            assert seen["organizers"][0]["status"] == "archived"
            refused = await http.post(
                "/v1/events", json=event_body([association]), headers=events.token(Role.ACTOR, association)
            )
            assert refused.status_code == 422 and "archived" in refused.json()["detail"]


class TestRegistrations:
    async def test_200_simultaneous_registrations_for_50_seats(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        event = await new_event(events, who["city"]["id"], capacity=50)
        tag = uuid.uuid4().hex[:6]
        partner = events.token(Role.PARTNER, subject="partner:burst")
        async with events.client() as http:

            async def one(i: int) -> Any:
                return await http.post(
                    f"/v1/events/{event['id']}/registrations",
                    json={"person": {"name": f"Participant {i}", "email": f"p{i}-{tag}@example.org"}},
                    headers=partner,
                )

            responses = await asyncio.gather(*(one(i) for i in range(200)))
        assert [r.status_code for r in responses] == [201] * 200, [r.text for r in responses if r.status_code != 201]
        statuses = Counter(r.json()["status"] for r in responses)
        assert statuses == {"confirmed": 50, "waitlisted": 150}
        positions = sorted(r.json()["position"] for r in responses if r.json()["status"] == "waitlisted")
        assert positions == list(range(1, 151)), "every waiting place given once"
        stored = await registrations(events, event["id"])
        assert Counter(r["status"] for r in stored) == statuses, "none lost"
        async with events.client() as http:
            seen = (await http.get(f"/v1/events/{event['id']}")).json()
        assert (seen["confirmed"], seen["waitlisted"], seen["seats_left"]) == (50, 150, 0)

    async def test_cancelling_promotes_the_waiting_list_in_order_and_persons_are_told(
        self, directory: Directory, events: Events
    ) -> None:
        who = await organizers(directory, events)
        event = await new_event(events, who["city"]["id"], capacity=2)
        tag = uuid.uuid4().hex[:6]
        people = [f"{name}-{tag}@example.org" for name in ("anne", "bruno", "chloe", "david", "emma")]
        regs = [await register_person(events, event["id"], email) for email in people]
        assert [r["status"] for r in regs] == ["confirmed", "confirmed", "waitlisted", "waitlisted", "waitlisted"]
        assert [r["position"] for r in regs[2:]] == [1, 2, 3]
        assert all(r["person_email"] is None for r in regs), "a partner does not read back e-mail addresses"

        # Anne cancels from her e-mail's link, without an account.
        (confirmation,) = await mails_to(events, people[0], 1)
        assert "est confirmée" in confirmation.get_content()
        link = re.search(r"(http://\S+/cancel\?token=\w+)", confirmation.get_content())
        assert link, confirmation.get_content()
        assert link.group(1).startswith(events.settings.public_url + "/v1/"), "links lead to the gateway"
        path = link.group(1).removeprefix(events.settings.public_url)  # the same path on the events service
        async with events.client() as http:
            page = await http.get(path)
            assert page.status_code == 200 and "<form" in page.text and "Annuler" in page.text
            forged = await http.post(path[:-4] + "0000")
            assert forged.status_code == 403
            other = await http.post(f"/v1/registrations/{regs[1]['id']}/cancel?token={path.rsplit('=', 1)[1]}")
            assert other.status_code == 403, "a link cancels its own registration only"
            cancelled = await http.post(path)
            assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
            assert (await http.post(path)).status_code == 409
        stored = {r["id"]: r for r in await registrations(events, event["id"])}
        assert stored[regs[2]["id"]]["status"] == "confirmed", "the first on the waiting list is promoted"
        assert [stored[r["id"]]["position"] for r in regs[3:]] == [1, 2]

        # Bruno is cancelled by an organizer: David, next in line, gets the seat.
        async with events.client() as http:
            response = await http.post(
                f"/v1/registrations/{regs[1]['id']}/cancel", headers=events.token(Role.COLLECTIVITY, who["city"]["id"])
            )
            assert response.status_code == 200
        stored = {r["id"]: r for r in await registrations(events, event["id"])}
        assert [stored[r["id"]]["status"] for r in regs] == [
            "cancelled",
            "cancelled",
            "confirmed",
            "confirmed",
            "waitlisted",
        ]
        promoted = await mails_to(events, people[2], 2)
        subjects = [m["Subject"] for m in promoted]
        assert subjects[0].startswith("Liste d'attente") and subjects[1].startswith("Une place s'est libérée")
        assert "position 1" in promoted[0].get_content()
        (emma,) = await mails_to(events, people[4], 1)
        assert "position 3" in emma.get_content()
        ids = [m["Message-ID"] for m in events.smtp.messages]
        assert len(ids) == len(set(ids)), "one Message-ID per e-mail"

        records = await read_topic(events.settings, REGISTRATION, expect=1, timeout_s=20, idle_s=1)
        mine = [
            {k: v.decode() for k, v in r.headers}["ce_type"].rsplit(".", 1)[1]
            for r in records
            if r.key == event["id"].encode()
        ]
        assert mine == [
            "confirmed",
            "confirmed",
            "waitlisted",
            "waitlisted",
            "waitlisted",
            "cancelled",
            "promoted",
            "cancelled",
            "promoted",
        ], "one event's registrations stay in order on its key"

    async def test_registrations_on_approval(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        city = who["city"]["id"]
        event = await new_event(events, city, capacity=1, registration_mode="approval")
        tag = uuid.uuid4().hex[:6]
        a = await register_person(events, event["id"], f"a-{tag}@example.org")
        b = await register_person(events, event["id"], f"b-{tag}@example.org")
        c = await register_person(events, event["id"], f"c-{tag}@example.org")
        assert {a["status"], b["status"], c["status"]} == {"pending"}
        organizer = events.token(Role.COLLECTIVITY, city)
        async with events.client() as http:
            seen = (await http.get(f"/v1/events/{event['id']}")).json()
            assert seen["confirmed"] == 0 and seen["seats_left"] == 1, "pending requests take no seat"
            outsider = await http.post(
                f"/v1/registrations/{a['id']}/approve", json={}, headers=events.token(Role.ACTOR, who["other"]["id"])
            )
            assert outsider.status_code == 403
            first = await http.post(f"/v1/registrations/{a['id']}/approve", json={}, headers=organizer)
            assert first.status_code == 200 and first.json()["status"] == "confirmed"
            second = await http.post(f"/v1/registrations/{b['id']}/approve", json={}, headers=organizer)
            assert second.json()["status"] == "waitlisted", "approved but the only seat is taken"
            rejected = await http.post(
                f"/v1/registrations/{c['id']}/reject", json={"comment": "complet"}, headers=organizer
            )
            assert rejected.json()["status"] == "rejected"
            twice = await http.post(f"/v1/registrations/{c['id']}/approve", json={}, headers=organizer)
            assert twice.status_code == 409
        (received, refused) = await mails_to(events, f"c-{tag}@example.org", 2)
        assert received["Subject"].startswith("Demande d'inscription reçue")
        assert refused["Subject"].startswith("Inscription non retenue")
        assert "Annulez" not in refused.get_content(), "no cancel link once it is over"

    async def test_registration_rules(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        city, association, other = who["city"]["id"], who["association"]["id"], who["other"]["id"]
        event = await new_event(events, city)
        url = f"/v1/events/{event['id']}/registrations"
        tag = uuid.uuid4().hex[:6]
        async with events.client() as http:
            own = await http.post(url, json={"actor_id": association}, headers=events.token(Role.ACTOR, association))
            assert own.status_code == 201 and own.json()["participant_kind"] == "actor"
            twice = await http.post(url, json={"actor_id": association}, headers=events.token(Role.ACTOR, association))
            assert twice.status_code == 409 and twice.json()["errors"][0]["field"] == "actor_id"
            for_another = await http.post(url, json={"actor_id": other}, headers=events.token(Role.ACTOR, association))
            assert for_another.status_code == 403
            unknown = await http.post(url, json={"actor_id": str(uuid.uuid4())}, headers=events.admin)
            assert unknown.status_code == 422 and unknown.json()["errors"][0]["field"] == "actor_id"
            person = {"person": {"name": "Dominique", "email": f"Dom-{tag}@Example.org"}}
            assert (await http.post(url, json=person, headers=events.admin)).status_code == 201
            same = {"person": {"name": "Dom", "email": f"dom-{tag}@example.org"}}
            dup = await http.post(url, json=same, headers=events.admin)
            assert dup.status_code == 409, "the same e-mail, whatever its case"
            both = await http.post(url, json={**person, "actor_id": association}, headers=events.admin)
            assert both.status_code == 422
            bad_mail = await http.post(url, json={"person": {"name": "X", "email": "nope"}}, headers=events.admin)
            assert bad_mail.status_code == 422 and "email" in json.dumps(bad_mail.json())
            assert (await http.post(url, json=person)).status_code == 401
            nul = await http.post(
                url, json={"person": {"name": "A\u0000B", "email": f"n-{tag}@x.fr"}}, headers=events.admin
            )
            assert nul.status_code == 422 and "NUL" in nul.json()["detail"], "PostgreSQL cannot store it: a 422"
            nul_erasure = await http.post("/v1/erasures", json={"email": "a\u0000@b.fr"}, headers=events.admin)
            assert nul_erasure.status_code == 422

            # Re-registering after a cancellation is allowed.
            cancelled = await http.post(
                f"/v1/registrations/{own.json()['id']}/cancel", headers=events.token(Role.ACTOR, association)
            )
            assert cancelled.status_code == 200
            again = await http.post(url, json={"actor_id": association}, headers=events.token(Role.ACTOR, association))
            assert again.status_code == 201

            closed = await new_event(events, city, registration_mode="closed")
            shut = await http.post(f"/v1/events/{closed['id']}/registrations", json=person, headers=events.admin)
            assert shut.status_code == 409 and shut.json()["errors"][0]["rule"] == "closed"

            draft = await new_event(events, city, publish=False)
            early = await http.post(f"/v1/events/{draft['id']}/registrations", json=person, headers=events.admin)
            assert early.status_code == 409

            # An event that has started takes no more registrations.
            started = await new_event(events, city)
            conn = await asyncpg.connect(events.database_url)
            try:
                await conn.execute(
                    "UPDATE events SET starts_at = now() - interval '1 hour' WHERE id = $1", uuid.UUID(started["id"])
                )
            finally:
                await conn.close()
            late = await http.post(f"/v1/events/{started['id']}/registrations", json=person, headers=events.admin)
            assert late.status_code == 409 and late.json()["errors"][0]["rule"] == "not_started"

            # Capacity cannot go under the confirmed registrations; raising it promotes the waiting list.
            small = await new_event(events, city, capacity=1)
            for i in range(3):
                await register_person(events, small["id"], f"s{i}-{tag}@example.org")
            body = event_body([city], capacity=0)
            body.pop("publish")
            organizer = {**events.token(Role.COLLECTIVITY, city), "If-Match": '"1"'}
            under = await http.put(f"/v1/events/{small['id']}", json=body, headers=organizer)
            assert under.status_code == 409 and under.json()["errors"][0]["field"] == "capacity"
            body["capacity"] = 2
            raised = await http.put(f"/v1/events/{small['id']}", json=body, headers=organizer)
            assert raised.status_code == 200 and (raised.json()["confirmed"], raised.json()["waitlisted"]) == (2, 1)

    async def test_cancelling_an_event_cancels_its_registrations(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        city = who["city"]["id"]
        event = await new_event(events, city, capacity=1)
        tag = uuid.uuid4().hex[:6]
        await register_person(events, event["id"], f"x-{tag}@example.org")
        await register_person(events, event["id"], f"y-{tag}@example.org")
        async with events.client() as http:
            response = await http.post(
                f"/v1/events/{event['id']}/cancel",
                json={"reason": "Salle indisponible"},
                headers=events.token(Role.COLLECTIVITY, city),
            )
            assert response.status_code == 200, response.text
            assert response.json()["status"] == "cancelled" and response.json()["confirmed"] == 0
            assert (
                await http.post(f"/v1/events/{event['id']}/cancel", json={}, headers=events.admin)
            ).status_code == 409
            late = await http.post(
                f"/v1/events/{event['id']}/registrations",
                json={"person": {"name": "Z", "email": f"z-{tag}@example.org"}},
                headers=events.admin,
            )
            assert late.status_code == 409
        assert {r["status"] for r in await registrations(events, event["id"])} == {"cancelled"}
        for who_ in ("x", "y"):
            mails = await mails_to(events, f"{who_}-{tag}@example.org", 2)
            assert mails[-1]["Subject"].startswith("Événement annulé")

    async def test_organizers_export_registrations_as_csv(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        city = who["city"]["id"]
        event = await new_event(events, city, capacity=1)
        tag = uuid.uuid4().hex[:6]
        await register_person(events, event["id"], f"first-{tag}@example.org", name="=HYPERLINK(1)")
        await register_person(events, event["id"], f"second-{tag}@example.org", name="Léa Müller")
        async with events.client() as http:
            url = f"/v1/events/{event['id']}/registrations.csv"
            assert (await http.get(url, headers=events.token(Role.PARTNER))).status_code == 403
            response = await http.get(url, headers=events.token(Role.COLLECTIVITY, city))
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/csv")
        lines = response.content.decode("utf-8-sig").splitlines()
        assert lines[0].split(";")[:3] == ["id", "status", "position"]
        rows = [line.split(";") for line in lines[1:]]
        assert [r[1] for r in rows] == ["confirmed", "waitlisted"] and rows[1][2] == "1"
        assert rows[0][6] == "'=HYPERLINK(1)", "a formula is neutralised"
        assert rows[1][6] == "Léa Müller" and rows[1][7] == f"second-{tag}@example.org"


class TestPrivacy:
    async def test_no_personal_email_in_any_public_output_or_event(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        event = await new_event(events, who["city"]["id"])
        tag = uuid.uuid4().hex[:8]
        email = f"secret-{tag}@example.org"
        registration = await register_person(events, event["id"], email, name=f"Nom Secret {tag}")
        async with events.client() as http:
            outputs = [
                await http.get(f"/v1/events/{event['id']}"),
                await http.get(f"/v1/events/{event['id']}.ics"),
                await http.get(f"/v1/events/{event['id']}/jsonld"),
                await http.get("/v1/events", params={"themes": "reemploi", "first": 100}),
                await http.get(f"/v1/feeds/organizers/{who['city']['id']}.ics"),
                await http.get("/v1/feeds/territories/DEP-25.ics"),
                await http.get("/v1/feeds/themes/reemploi.ics"),
                await http.get(f"/v1/registrations/{registration['id']}", headers=events.token(Role.PARTNER)),
                await http.post("/v1/events/batch", json={"ids": [event["id"]]}),
            ]
            organizer_view = await http.get(
                f"/v1/events/{event['id']}/registrations", headers=events.token(Role.COLLECTIVITY, who["city"]["id"])
            )
            outsider = await http.get(
                f"/v1/events/{event['id']}/registrations", headers=events.token(Role.ACTOR, who["other"]["id"])
            )
        for response in outputs:
            assert response.status_code == 200, response.text
            assert email not in response.text and tag not in response.text.replace(event["id"], "")
        assert outsider.status_code == 403
        assert email in organizer_view.text, "organizers do see it"
        records = await read_topic(events.settings, REGISTRATION, expect=1, timeout_s=20, idle_s=1)
        records += await read_topic(events.settings, EVENT, expect=1, timeout_s=20)
        mine = [r for r in records if r.key == event["id"].encode()]
        assert mine
        assert all(tag.encode() not in r.value for r in mine)

    async def test_erasing_a_person_anonymises_their_registrations_and_keeps_the_counts(
        self, directory: Directory, events: Events
    ) -> None:
        who = await organizers(directory, events)
        first = await new_event(events, who["city"]["id"], capacity=5)
        second = await new_event(events, who["city"]["id"], capacity=5)
        tag = uuid.uuid4().hex[:8]
        email = f"effacer-{tag}@example.org"
        await register_person(events, first["id"], email, name=f"Alex {tag}")
        await register_person(events, second["id"], email, name=f"Alex {tag}")
        await register_person(events, first["id"], f"garder-{tag}@example.org")
        async with events.client() as http:
            refused = await http.post("/v1/erasures", json={"email": email}, headers=events.token(Role.PARTNER))
            assert refused.status_code == 403
            done = await http.post("/v1/erasures", json={"email": email.upper()}, headers=events.admin)
            assert done.status_code == 200 and done.json() == {"registrations_anonymised": 2}
            seen = (await http.get(f"/v1/events/{first['id']}")).json()
            csv_text = (await http.get(f"/v1/events/{first['id']}/registrations.csv", headers=events.admin)).text
        assert seen["confirmed"] == 2, "counts kept"
        regs = await registrations(events, first["id"])
        erased = [r for r in regs if r["erased"]]
        assert len(erased) == 1 and erased[0]["person_email"] is None and erased[0]["person_name"] is None
        assert erased[0]["status"] == "confirmed"
        assert email not in csv_text and tag in csv_text  # the other person stays
        conn = await asyncpg.connect(events.database_url)
        try:
            left = await conn.fetchval(
                "SELECT count(*) FROM registrations r JOIN emails e ON e.registration_id = r.id "
                "WHERE r.erased_at IS NOT NULL AND (e.to_address IS NOT NULL OR e.body <> '')"
            )
            assert left == 0, "the e-mails written to them are forgotten too"
        finally:
            await conn.close()


class TestSearchAndFeeds:
    async def test_search_by_date_place_theme_territory_organizer_and_text(
        self, directory: Directory, events: Events
    ) -> None:
        who = await organizers(directory, events)
        city = who["city"]["id"]
        soon = datetime.now(PARIS) + timedelta(days=400 + (uuid.uuid4().int % 300))
        created = []
        for i, (commune, lat, lon) in enumerate(
            [("25056", 47.24, 6.02), ("25056", 47.25, 6.03), ("75056", 48.86, 2.35), ("39300", 46.67, 5.55)]
        ):
            created.append(
                await new_event(
                    events,
                    city,
                    title=f"Atelier réparation numéro {i}" if i != 1 else "Café citoyen",
                    description="Ouvert à toutes et à tous.",
                    themes=["reparation"] if i != 3 else ["mobilite"],
                    starts_at=(soon + timedelta(days=i)).isoformat(),
                    ends_at=(soon + timedelta(days=i, hours=2)).isoformat(),
                    place={"address": f"Salle {i}", "commune_code": commune, "location": {"lat": lat, "lon": lon}},
                )
            )
        ids = [e["id"] for e in created]
        window = {"from": soon.isoformat(), "to": (soon + timedelta(days=5)).isoformat(), "organizer_id": city}

        async def found(**params: Any) -> list[str]:
            async with events.client() as http:
                response = await http.get("/v1/events", params={**window, **params})
            assert response.status_code == 200, response.text
            return [edge["node"]["id"] for edge in response.json()["edges"]]

        assert await found() == ids
        assert await found(lat=47.24, lon=6.02, radius_km=20) == ids[:2]
        assert await found(lat=47.24, lon=6.02, radius_km=20, themes="reparation") == ids[:2]
        assert await found(themes="mobilite") == ids[3:]
        assert await found(territory="DEP-75") == ids[2:3]
        assert await found(territory="COM-25056") == ids[:2]
        assert await found(text="reparations") == [ids[0], ids[2], ids[3]], "French stemming"
        narrow = {"to": (soon + timedelta(days=1, hours=1)).isoformat()}
        assert await found(**narrow) == ids[:2]

        async with events.client() as http:
            page1 = (await http.get("/v1/events", params={**window, "first": 3, "with_total": "true"})).json()
            assert page1["total_count"] == 4 and page1["page_info"]["has_next_page"]
            page2 = (
                await http.get("/v1/events", params={**window, "first": 3, "after": page1["page_info"]["end_cursor"]})
            ).json()
            assert [e["node"]["id"] for e in page1["edges"] + page2["edges"]] == ids
            assert not page2["page_info"]["has_next_page"]
            bad = await http.get("/v1/events", params={"after": "garbage"})
            assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "after"
            half = await http.get("/v1/events", params={"lat": 47.0})
            assert half.status_code == 422
            theme = await http.get("/v1/events", params={"themes": "astrologie"})
            assert theme.status_code == 422 and theme.json()["errors"][0]["field"] == "themes"
            batch = (await http.post("/v1/events/batch", json={"ids": [ids[2], "nope", str(uuid.uuid4())]})).json()
            assert [b and b["id"] for b in batch["items"]] == [ids[2], None, None]
            mine = (await http.get(f"/v1/actors/{city}/events", params={"first": 100})).json()
            assert set(ids) <= {e["node"]["id"] for e in mine["edges"]}

    async def test_icalendar_feeds_parse_back_field_by_field(self, directory: Directory, events: Events) -> None:
        who = await organizers(directory, events)
        city = who["city"]["id"]
        start = datetime(2031, 3, 30, 9, 30, tzinfo=PARIS)  # the day after the switch to summer time
        winter = datetime(2031, 1, 15, 18, 0, tzinfo=PARIS)
        summer_event = await new_event(
            events, city, starts_at=start.isoformat(), ends_at=(start + timedelta(hours=3)).isoformat()
        )
        montreal = ZoneInfo("America/Montreal")
        remote_start = datetime(2031, 1, 15, 12, 0, tzinfo=montreal)
        remote = await new_event(
            events,
            city,
            title="Webinaire avec le Chantier de l'économie sociale",
            kind="webinar",
            themes=["mobilite"],
            timezone="America/Montreal",
            place=None,
            online_url="https://visio.example.org/ess",
            starts_at=remote_start.replace(tzinfo=None).isoformat(),
            ends_at=(remote_start + timedelta(hours=1)).replace(tzinfo=None).isoformat(),
        )
        cancelled = await new_event(
            events, city, starts_at=winter.isoformat(), ends_at=(winter + timedelta(hours=2)).isoformat()
        )
        async with events.client() as http:
            await http.post(f"/v1/events/{cancelled['id']}/cancel", json={}, headers=events.admin)
            single = await http.get(f"/v1/events/{summer_event['id']}.ics")
            feeds = {
                "organizer": await http.get(f"/v1/feeds/organizers/{city}.ics"),
                "territory": await http.get("/v1/feeds/territories/COM-25056.ics"),
                "theme": await http.get("/v1/feeds/themes/reemploi.ics"),
            }
            assert (await http.get("/v1/feeds/themes/astrologie.ics")).status_code == 404
            assert (await http.get("/v1/feeds/territories/DEP-999.ics")).status_code == 404
        assert single.headers["content-type"].startswith("text/calendar")
        cal = icalendar.Calendar.from_ical(single.content)
        (vevent,) = cal.walk("VEVENT")
        assert str(vevent["UID"]) == f"{summer_event['id']}@maillage"
        assert str(vevent["SUMMARY"]) == "Forum de l'ESS du Doubs"
        assert vevent.decoded("DTSTART") == start and vevent["DTSTART"].params["TZID"] == "Europe/Paris"
        assert vevent.decoded("DTSTART").utcoffset() == timedelta(hours=2), "summer time"
        assert vevent.decoded("DTEND") == start + timedelta(hours=3)
        assert str(vevent["STATUS"]) == "CONFIRMED"
        assert "Kursaal" in str(vevent["LOCATION"]) and "Besançon" in str(vevent["LOCATION"])
        geo: Any = vevent["GEO"]
        categories: Any = vevent["CATEGORIES"]
        assert (geo.latitude, geo.longitude) == (47.2395, 6.0238)
        assert [str(c) for c in categories.cats] == [
            THEMES_BY_CODE["reemploi"].label,
            THEMES_BY_CODE["reparation"].label,
        ]
        assert str(vevent["URL"]).endswith(f"/v1/events/{summer_event['id']}")
        assert [str(tz["TZID"]) for tz in cal.walk("VTIMEZONE")] == ["Europe/Paris"]

        organizer_cal = icalendar.Calendar.from_ical(feeds["organizer"].content)
        by_uid = {str(v["UID"]).split("@")[0]: v for v in organizer_cal.walk("VEVENT")}
        assert {summer_event["id"], remote["id"], cancelled["id"]} <= set(by_uid)
        assert str(by_uid[cancelled["id"]]["STATUS"]) == "CANCELLED"
        assert by_uid[cancelled["id"]].decoded("DTSTART").utcoffset() == timedelta(hours=1), "winter time"
        assert by_uid[remote["id"]]["DTSTART"].params["TZID"] == "America/Montreal"
        assert by_uid[remote["id"]].decoded("DTSTART") == remote_start
        assert "visio.example.org" in str(by_uid[remote["id"]]["LOCATION"])
        assert {str(tz["TZID"]) for tz in organizer_cal.walk("VTIMEZONE")} == {"Europe/Paris", "America/Montreal"}
        for name in ("territory", "theme"):
            uids = {
                str(v["UID"]).split("@")[0] for v in icalendar.Calendar.from_ical(feeds[name].content).walk("VEVENT")
            }
            assert summer_event["id"] in uids and remote["id"] not in uids, name

    async def test_the_replica_is_rebuilt_from_the_directory_snapshot(
        self, directory: Directory, events: Events
    ) -> None:
        who = await organizers(directory, events)
        association = who["association"]["id"]
        conn = await asyncpg.connect(events.database_url)
        try:
            await conn.execute("DELETE FROM actors WHERE id = $1", uuid.UUID(association))
            await conn.execute("UPDATE actors SET version = 0 WHERE id = $1", uuid.UUID(who["other"]["id"]))
            report = await rebuild(events.settings, "events", apply_actor)
            assert report.applied >= 2 and report.read >= report.applied
            rows = await conn.fetch(
                "SELECT id, version FROM actors WHERE id = ANY($1::uuid[])", [association, who["other"]["id"]]
            )
            assert sorted(r["version"] for r in rows) == [1, 1]
            again = await rebuild(events.settings, "events", apply_actor)
            assert again.applied == 0, "nothing is newer the second time"
        finally:
            await conn.close()


async def test_a_date_outside_what_the_database_holds_is_bad_input(events: Events) -> None:
    async with events.client() as http:
        for params in ({"from": "0001-01-01T00:00:00+01:00"}, {"to": "9999-12-31T23:59:59-01:00"}):
            response = await http.get("/v1/events", params=params)
            assert response.status_code == 422, response.text
            assert response.json()["errors"][0]["rule"] == "range"
