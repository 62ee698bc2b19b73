"""The events model: territorial events, registrations, and the rules their fields obey (pure, no I/O)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator

from services.common.rules import OUT_OF_RANGE, Instant, cross_field_error, storable_instant
from services.contracts import territories
from services.contracts.events import EventV1, GeoPoint, PlaceV1, RegistrationV1
from services.contracts.vocabularies import THEMES_BY_CODE, check_codes

MAX_CAPACITY = 100_000
DEFAULT_TIMEZONE = "Europe/Paris"


class EventKind(StrEnum):
    forum = "forum"
    meeting = "meeting"
    workshop = "workshop"
    webinar = "webinar"
    visit = "visit"
    training = "training"
    conference = "conference"
    other = "other"


class RegistrationMode(StrEnum):
    open = "open"
    approval = "approval"  # an organizer accepts or rejects each registration
    closed = "closed"


class EventStatus(StrEnum):
    draft = "draft"
    published = "published"
    cancelled = "cancelled"


class RegistrationStatus(StrEnum):
    pending = "pending"
    confirmed = "confirmed"
    waitlisted = "waitlisted"
    cancelled = "cancelled"
    rejected = "rejected"


LIVE_REGISTRATION = (RegistrationStatus.pending, RegistrationStatus.confirmed, RegistrationStatus.waitlisted)


class Refusal(StrEnum):
    """Why a registration is not taken (the outcomes of `register_participant` that are not a status)."""

    no_event = "no_event"
    not_published = "not_published"
    closed = "closed"
    started = "started"
    duplicate = "duplicate"


class RegistrationChange(StrEnum):
    """What happened to a registration: the event told and the e-mail written (`emails.MESSAGES`)."""

    pending = "pending"
    confirmed = "confirmed"
    waitlisted = "waitlisted"
    promoted = "promoted"
    cancelled = "cancelled"
    rejected = "rejected"
    event_cancelled = "event_cancelled"


class ParticipantKind(StrEnum):
    actor = "actor"
    person = "person"


class ActorStatus(StrEnum):
    """An organizer's state in the replica of the directory."""

    active = "active"
    archived = "archived"


@dataclass(frozen=True, slots=True)
class EventState:
    """What the workflow rules need to know of an event (read under its row lock when they decide a write)."""

    id: uuid.UUID
    status: EventStatus
    organizer_ids: tuple[str, ...]
    registration_mode: RegistrationMode
    capacity: int | None
    confirmed: int
    waitlisted: int
    starts_at: datetime
    ends_at: datetime
    version: int


@dataclass(frozen=True, slots=True)
class RegistrationState:
    """What the workflow rules need to know of a registration."""

    id: uuid.UUID
    event_id: uuid.UUID
    status: RegistrationStatus
    participant_kind: ParticipantKind
    actor_id: str | None
    created_by: str | None


@dataclass(frozen=True, slots=True)
class ReplicaActor:
    """An actor as the events service knows it (its replica of the directory)."""

    id: uuid.UUID
    name: str
    status: str  # an ActorStatus, or one this service does not know yet (which is not active)


class Place(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    address: str | None = Field(None, max_length=500)
    commune_code: str | None = Field(None, description="INSEE code of the commune")
    location: GeoPoint | None = None

    @field_validator("commune_code")
    @classmethod
    def _commune(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return territories.resolve_commune(value.removeprefix("COM-")).code
        except territories.TerritoryError as exc:
            raise ValueError(str(exc)) from exc

    @field_validator("location")
    @classmethod
    def _location(cls, value: GeoPoint | None) -> GeoPoint | None:
        if value is not None and not (-90 <= value.lat <= 90 and -180 <= value.lon <= 180):
            raise ValueError("lat in [-90, 90] and lon in [-180, 180]")
        return value

    @model_validator(mode="after")
    def _something(self) -> Place:
        if self.address is None and self.commune_code is None and self.location is None:
            raise ValueError("a place needs an address, a commune or coordinates")
        return self


def check_timezone(value: str) -> str:
    # ZoneInfo caches what it loads; available_timezones() would walk the tz database on every call.
    try:
        ZoneInfo(value)
    # OSError: names the file system refuses (too long, bad bytes) before the lookup can say "not found".
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(f"unknown time zone {value!r}: use an IANA name such as Europe/Paris") from exc
    return value


class EventFields(BaseModel):
    """What an organizer writes; shared by creation and replacement."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: Annotated[str, Field(min_length=3, max_length=200)]
    description: str = Field("", max_length=20_000)
    kind: EventKind
    themes: list[str] = Field(default_factory=list, max_length=10)
    organizer_ids: list[str] = Field(min_length=1, max_length=10, description="Actors organizing it, active ones")
    starts_at: Instant = Field(description="With an offset, or local time in `timezone`")
    ends_at: Instant
    timezone: str = Field(DEFAULT_TIMEZONE, description="IANA time zone of the event (feeds show it)")
    place: Place | None = None
    online_url: HttpUrl | None = None
    capacity: int | None = Field(None, ge=0, le=MAX_CAPACITY, description="Seats; none: unlimited")
    registration_mode: RegistrationMode = RegistrationMode.open

    _timezone = field_validator("timezone")(check_timezone)

    @field_validator("themes")
    @classmethod
    def _themes(cls, values: list[str]) -> list[str]:
        return check_codes(values, THEMES_BY_CODE, "theme")

    @field_validator("organizer_ids")
    @classmethod
    def _organizers(cls, values: list[str]) -> list[str]:
        seen: list[str] = []
        for value in values:
            try:
                canonical = str(uuid.UUID(value))
            except ValueError as exc:
                raise ValueError(f"{value!r} is not an actor id") from exc
            if canonical not in seen:
                seen.append(canonical)
        return seen

    @model_validator(mode="after")
    def _coherent(self) -> EventFields:
        zone = ZoneInfo(self.timezone)
        # A time without offset is the event's local time.
        for moment in ("starts_at", "ends_at"):
            if getattr(self, moment).tzinfo is None:
                local = getattr(self, moment).replace(tzinfo=zone)
                try:
                    setattr(self, moment, storable_instant(local))
                except ValueError:
                    raise cross_field_error(moment, "range", OUT_OF_RANGE) from None
        if self.ends_at <= self.starts_at:
            raise cross_field_error("ends_at", "after_start", "ends_at must be after starts_at")
        if self.place is None and self.online_url is None:
            raise cross_field_error("place", "place_or_url", "an event needs a place, an online_url or both")
        return self


class EventCreate(EventFields):
    publish: bool = Field(False, description="Publish at once instead of keeping a draft")


class EventUpdate(EventFields):
    pass


class EventCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=2000)


class Organizer(BaseModel):
    id: str
    name: str | None
    kind: str | None
    status: str  # active | archived | unknown (not in the replica any more)


class EventRead(BaseModel):
    id: str
    version: int
    title: str
    description: str
    kind: str
    themes: list[str]
    organizer_ids: list[str]
    organizers: list[Organizer]
    flags: list[str] = Field(description="organizer_archived when an organizer left the directory since")
    starts_at: datetime
    ends_at: datetime
    timezone: str
    place: PlaceV1 | None
    online_url: str | None
    capacity: int | None
    registration_mode: str
    status: EventStatus
    cancel_reason: str | None = None
    confirmed: int
    waitlisted: int
    seats_left: int | None
    distance_km: float | None = None
    created_at: datetime
    updated_at: datetime

    def to_contract(self) -> EventV1:
        return EventV1(
            id=self.id,
            version=self.version,
            title=self.title,
            description=self.description,
            kind=self.kind,
            themes=self.themes,
            organizer_ids=self.organizer_ids,
            starts_at=self.starts_at.isoformat(),
            ends_at=self.ends_at.isoformat(),
            timezone=self.timezone,
            place=self.place,
            online_url=self.online_url,
            capacity=self.capacity,
            registration_mode=self.registration_mode,
            status=self.status.value,
            confirmed=self.confirmed,
            waitlisted=self.waitlisted,
            updated_at=self.updated_at.isoformat(),
        )


class Person(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: Annotated[str, Field(min_length=1, max_length=200)]
    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


class RegistrationCreate(BaseModel):
    """Either an actor (by id) or a person (name and e-mail)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    actor_id: str | None = None
    person: Person | None = None
    comment: str | None = Field(None, max_length=2000)

    @field_validator("actor_id")
    @classmethod
    def _actor(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return str(uuid.UUID(value))
        except ValueError as exc:
            raise ValueError(f"{value!r} is not an actor id") from exc

    @model_validator(mode="after")
    def _one(self) -> RegistrationCreate:
        if (self.actor_id is None) == (self.person is None):
            raise cross_field_error("actor_id", "actor_or_person", "give either actor_id or person, not both")
        return self


class RegistrationDecision(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=2000)


class RegistrationRead(BaseModel):
    """A registration; the person's name and e-mail only for the event's organizers and admins."""

    id: str
    event_id: str
    participant_kind: str
    actor_id: str | None
    person_name: str | None = None
    person_email: str | None = None
    erased: bool = False
    status: RegistrationStatus
    position: int | None = Field(None, description="Place on the waiting list (1 = next promoted)")
    comment: str | None = None
    created_at: datetime
    updated_at: datetime

    def to_contract(self) -> RegistrationV1:
        return RegistrationV1(
            id=self.id,
            event_id=self.event_id,
            participant_kind=self.participant_kind,
            actor_id=self.actor_id,
            status=self.status.value,
            updated_at=self.updated_at.isoformat(),
        )


def seats_left(capacity: int | None, confirmed: int) -> int | None:
    return None if capacity is None else max(capacity - confirmed, 0)


def json_ld(event: EventRead, url: str, organizers: list[dict[str, Any]]) -> dict[str, Any]:
    """The schema.org `Event` of a public event (https://schema.org/Event)."""
    status = {
        EventStatus.published: "https://schema.org/EventScheduled",
        EventStatus.cancelled: "https://schema.org/EventCancelled",
        EventStatus.draft: "https://schema.org/EventScheduled",
    }[event.status]
    locations: list[dict[str, Any]] = []
    if event.place is not None:
        place: dict[str, Any] = {"@type": "Place"}
        address: dict[str, Any] = {"@type": "PostalAddress", "addressCountry": "FR"}
        if event.place.address:
            address["streetAddress"] = event.place.address
        if event.place.commune_code:
            commune = territories.resolve_commune(event.place.commune_code)
            address["addressLocality"] = commune.name
            place["name"] = event.place.address or commune.name
        else:
            place["name"] = event.place.address or event.title
        place["address"] = address
        if event.place.location is not None:
            place["geo"] = {
                "@type": "GeoCoordinates",
                "latitude": event.place.location.lat,
                "longitude": event.place.location.lon,
            }
        locations.append(place)
    if event.online_url:
        locations.append({"@type": "VirtualLocation", "url": event.online_url})
    if event.place is not None and event.online_url:
        attendance = "https://schema.org/MixedEventAttendanceMode"
    elif event.online_url:
        attendance = "https://schema.org/OnlineEventAttendanceMode"
    else:
        attendance = "https://schema.org/OfflineEventAttendanceMode"
    zone = ZoneInfo(event.timezone)
    document: dict[str, Any] = {
        "@context": "https://schema.org",
        "@type": "Event",
        "@id": url,
        "url": url,
        "name": event.title,
        "description": event.description,
        "startDate": event.starts_at.astimezone(zone).isoformat(),
        "endDate": event.ends_at.astimezone(zone).isoformat(),
        "eventStatus": status,
        "eventAttendanceMode": attendance,
        "location": locations[0] if len(locations) == 1 else locations,
        "organizer": organizers,
        "keywords": ",".join(event.themes),
        "inLanguage": "fr",
    }
    if event.capacity is not None:
        document["maximumAttendeeCapacity"] = event.capacity
        document["remainingAttendeeCapacity"] = event.seats_left
    return document
