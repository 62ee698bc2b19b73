"""iCalendar (RFC 5545) documents of public events, built with the icalendar library: one event or a feed.

icalendar escapes TEXT values but lets carriage returns and control characters through into the content lines
(and an organizer's name with a line feed fails to serialise): names are made one line, and descriptions get
line feeds as their only line breaks, before they reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import icalendar

from services.common.encoding import one_line, text_lines
from services.contracts import territories
from services.contracts.vocabularies import THEMES_BY_CODE
from services.events.model import EventRead, EventStatus

PRODID = "-//Maillage//Événements territoriaux//FR"
UID_DOMAIN = "maillage"


def uid(event_id: str) -> str:
    return f"{event_id}@{UID_DOMAIN}"


def _location(event: EventRead) -> str | None:
    if event.place is None:
        return event.online_url
    parts = [event.place.address] if event.place.address else []
    if event.place.commune_code:
        name = territories.resolve_commune(event.place.commune_code).name
        if not any(name.lower() in part.lower() for part in parts):
            parts.append(name)
    return one_line(", ".join(parts)) or event.online_url


def vevent(event: EventRead, url: str, stamp: datetime) -> icalendar.Event:
    zone = ZoneInfo(event.timezone)
    item = icalendar.Event()
    item.add("uid", uid(event.id))
    item.add("dtstamp", stamp)
    item.add("sequence", event.version)
    item.add("summary", one_line(event.title))
    if event.description:
        item.add("description", text_lines(event.description))
    item.add("dtstart", event.starts_at.astimezone(zone))
    item.add("dtend", event.ends_at.astimezone(zone))
    item.add("status", "CANCELLED" if event.status == EventStatus.cancelled else "CONFIRMED")
    item.add("last-modified", event.updated_at.astimezone(UTC))
    item.add("created", event.created_at.astimezone(UTC))
    location = _location(event)
    if location:
        item.add("location", location)
    if event.place is not None and event.place.location is not None:
        item.add("geo", (event.place.location.lat, event.place.location.lon))
    if event.themes:
        item.add("categories", [THEMES_BY_CODE[t].label if t in THEMES_BY_CODE else t for t in event.themes])
    item.add("url", url)
    if event.online_url:
        item.add("conference", event.online_url, parameters={"VALUE": "URI"})
    for organizer in event.organizers[:1]:
        item.add("organizer", f"urn:uuid:{organizer.id}", parameters={"CN": one_line(organizer.name or organizer.id)})
    return item


def calendar(events: Sequence[EventRead], name: str, url_of: dict[str, str]) -> bytes:
    """A VCALENDAR of these events with the VTIMEZONE of every zone they use."""
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    cal.add("calscale", "GREGORIAN")
    cal.add("method", "PUBLISH")
    cal.add("x-wr-calname", one_line(name))
    cal.add("x-wr-timezone", "Europe/Paris")
    stamp = datetime.now(UTC).replace(microsecond=0)
    for event in events:
        cal.add_component(vevent(event, url_of[event.id], stamp))
    cal.add_missing_timezones()
    data: bytes = cal.to_ical()
    return data
