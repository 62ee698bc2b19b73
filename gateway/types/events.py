"""Territorial events and their registrations: types, edges to organizers, the filter and the mutations."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry

from gateway import idempotency
from gateway.context import GInfo, require_principal
from gateway.idempotency import IdempotencyKey
from gateway.types.common import (
    Connection,
    GeoPoint,
    GeoPointInput,
    NearInput,
    body_of,
    page_size,
    relay_page,
    wants_total,
)

if TYPE_CHECKING:
    from gateway.types.actors import Actor


@strawberry.enum(description="What kind of event (values: the events service's codes)")
class EventKind(Enum):
    FORUM = "forum"
    MEETING = "meeting"
    WORKSHOP = "workshop"
    WEBINAR = "webinar"
    VISIT = "visit"
    TRAINING = "training"
    CONFERENCE = "conference"
    OTHER = "other"


@strawberry.enum(description="open: first come first served; approval: organizers accept each one")
class RegistrationMode(Enum):
    OPEN = "open"
    APPROVAL = "approval"
    CLOSED = "closed"


@strawberry.type(description="Where an event happens")
class Place:
    address: str | None
    commune_code: str | None
    location: GeoPoint | None


@strawberry.type(description="A territorial event: a forum, a meeting, a workshop…")
class Event:
    id: strawberry.ID
    version: int
    title: str
    description: str
    kind: str
    themes: list[str]
    organizer_ids: list[strawberry.ID]
    flags: list[str] = strawberry.field(description="organizer_archived when an organizer left the directory")
    starts_at: datetime
    ends_at: datetime
    timezone: str
    place: Place | None
    online_url: str | None
    capacity: int | None
    registration_mode: str
    status: str
    cancel_reason: str | None
    confirmed: int
    waitlisted: int
    seats_left: int | None
    distance_km: float | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The organizing actors (an archived one still shows)")
    async def organizers(self, info: GInfo) -> list[Annotated[Actor, strawberry.lazy("gateway.types.actors")]] | None:
        from gateway.types.actors import Actor

        found = await info.context.loaders.actor.load_many([str(oid) for oid in self.organizer_ids])
        return [Actor.of(data) for data in found if data is not None]

    @strawberry.field(description="Its registrations in arrival order (organizers and admins only)")
    async def registrations(self, info: GInfo) -> list[Registration] | None:
        require_principal(info)
        return [Registration.of(row) for row in await info.context.loaders.event_registrations.load(str(self.id))]

    @strawberry.field(description="Its iCalendar file (public URL)")
    def ical_url(self, info: GInfo) -> str:
        return info.context.gateway.settings.public_link(f"/ical/events/{self.id}.ics")

    @staticmethod
    def of(data: dict[str, Any]) -> Event:
        place = data.get("place")
        return Event(
            id=strawberry.ID(data["id"]),
            version=data["version"],
            title=data["title"],
            description=data["description"],
            kind=data["kind"],
            themes=data["themes"],
            organizer_ids=[strawberry.ID(o) for o in data["organizer_ids"]],
            flags=data["flags"],
            starts_at=datetime.fromisoformat(data["starts_at"]),
            ends_at=datetime.fromisoformat(data["ends_at"]),
            timezone=data["timezone"],
            place=Place(
                address=place.get("address"),
                commune_code=place.get("commune_code"),
                location=GeoPoint.of(place.get("location")),
            )
            if place
            else None,
            online_url=data["online_url"],
            capacity=data["capacity"],
            registration_mode=data["registration_mode"],
            status=data["status"],
            cancel_reason=data.get("cancel_reason"),
            confirmed=data["confirmed"],
            waitlisted=data["waitlisted"],
            seats_left=data["seats_left"],
            distance_km=data.get("distance_km"),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
        )


@strawberry.type(description="A seat asked for an event by an actor or a person")
class Registration:
    id: strawberry.ID
    event_id: strawberry.ID
    participant_kind: str
    actor_id: strawberry.ID | None
    person_name: str | None = strawberry.field(description="Organizers and admins only")
    person_email: str | None = strawberry.field(description="Organizers and admins only")
    status: str
    position: int | None = strawberry.field(description="Place on the waiting list (1 = next promoted)")
    comment: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def event(self, info: GInfo) -> Event | None:
        data = await info.context.loaders.event.load(str(self.event_id))
        return Event.of(data) if data else None

    @strawberry.field
    async def actor(self, info: GInfo) -> Annotated[Actor, strawberry.lazy("gateway.types.actors")] | None:
        from gateway.types.actors import Actor

        if self.actor_id is None:
            return None
        data = await info.context.loaders.actor.load(str(self.actor_id))
        return Actor.of(data) if data else None

    @staticmethod
    def of(data: dict[str, Any]) -> Registration:
        return Registration(
            id=strawberry.ID(data["id"]),
            event_id=strawberry.ID(data["event_id"]),
            participant_kind=data["participant_kind"],
            actor_id=strawberry.ID(data["actor_id"]) if data.get("actor_id") else None,
            person_name=data.get("person_name"),
            person_email=data.get("person_email"),
            status=data["status"],
            position=data.get("position"),
            comment=data.get("comment"),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
        )


# --- inputs -------------------------------------------------------------------------------------------------


@strawberry.input(description="Which events: every criterion given must hold (chronological order)")
class EventFilter:
    starts_after: datetime | None = strawberry.field(default=None, description="Not over at this time (default: now)")
    starts_before: datetime | None = None
    themes: list[str] | None = None
    near: NearInput | None = None
    territory: list[str] | None = None
    organizer_id: strawberry.ID | None = None
    text: str | None = None
    include_cancelled: bool | None = None


@strawberry.input
class PlaceInput:
    address: str | None = None
    commune_code: str | None = None
    location: GeoPointInput | None = None


@strawberry.input(description="A new event; published at once unless draft is true")
class PublishEventInput:
    title: str
    kind: EventKind
    organizer_ids: list[strawberry.ID]
    starts_at: datetime = strawberry.field(description="With an offset, or local time in `timezone`")
    ends_at: datetime
    description: str | None = None
    themes: list[str] | None = None
    timezone: str | None = None
    place: PlaceInput | None = None
    online_url: str | None = None
    capacity: int | None = None
    registration_mode: RegistrationMode | None = None
    draft: bool = False


@strawberry.input
class PersonInput:
    name: str
    email: str


@strawberry.input(description="Who takes the seat: an actor (by id) or a person")
class RegistrationInput:
    actor_id: strawberry.ID | None = None
    person: PersonInput | None = None
    comment: str | None = None


# --- resolvers ----------------------------------------------------------------------------------------------


async def event(info: GInfo, id: strawberry.ID) -> Event | None:
    data = await info.context.loaders.event.load(str(id))
    return Event.of(data) if data else None


async def events(
    info: GInfo, filter: EventFilter | None = None, first: int | None = None, after: str | None = None
) -> Connection[Event]:
    size = page_size(info, first)
    criteria: dict[str, Any] = {}
    if filter is not None:
        near = filter.near
        criteria = {
            "starts_after": filter.starts_after.isoformat() if filter.starts_after is not None else None,
            "starts_before": filter.starts_before.isoformat() if filter.starts_before is not None else None,
            "themes": filter.themes,
            "territory": filter.territory,
            "text": filter.text,
            "organizer_id": str(filter.organizer_id) if filter.organizer_id else None,
            "near": (near.lat, near.lon, near.radius_km) if near is not None else None,
            "include_cancelled": bool(filter.include_cancelled),
        }
    page = await info.context.gateway.clients.events.search_events(
        info.context.principal, first=size, after=after, with_total=wants_total(info), **criteria
    )
    return relay_page(page, info.context.loaders.event, Event.of)


async def publish_event(info: GInfo, input: PublishEventInput, idempotency_key: IdempotencyKey = None) -> Event:
    principal = require_principal(info)
    body = body_of(input)
    body["publish"] = not body.pop("draft", False)
    for moment in ("starts_at", "ends_at"):
        body[moment] = body[moment].isoformat()
    events = info.context.gateway.clients.events
    data = await idempotency.create(
        idempotency_key, lambda key: events.publish_event(body, principal, idempotency_key=key)
    )
    return Event.of(data)


async def register_for_event(
    info: GInfo, event_id: strawberry.ID, input: RegistrationInput, idempotency_key: IdempotencyKey = None
) -> Registration:
    principal = require_principal(info)
    events = info.context.gateway.clients.events
    body = body_of(input)
    data = await idempotency.create(
        idempotency_key, lambda key: events.register_participant(str(event_id), body, principal, idempotency_key=key)
    )
    return Registration.of(data)


async def cancel_registration(info: GInfo, id: strawberry.ID) -> Registration:
    principal = require_principal(info)
    data = await info.context.gateway.clients.events.cancel_registration(str(id), principal)
    return Registration.of(data)


async def cancel_event(info: GInfo, id: strawberry.ID, reason: str | None = None) -> Event:
    """The events service's cancel route decides who may (admins and the event's organizers) and tells the
    registrants."""
    principal = require_principal(info)
    data = await info.context.gateway.clients.events.cancel_event(str(id), reason, principal)
    return Event.of(data)
