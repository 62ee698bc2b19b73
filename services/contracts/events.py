"""Event payload models: versioned pydantic classes, one per CloudEvents type, shared by producers and consumers."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict

TYPE_PREFIX = "org.maillage."


class EventPayload(BaseModel):
    """Base of every payload: unknown fields are ignored so producers can add fields safely."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    ce_type: ClassVar[str]
    topic: ClassVar[str]


PayloadT = TypeVar("PayloadT", bound=type[EventPayload])

REGISTRY: dict[str, type[EventPayload]] = {}


def event_type(ce_type: str, topic: str) -> Callable[[PayloadT], PayloadT]:
    """Decorator registering a payload model under its CloudEvents type and topic."""

    def register(cls: PayloadT) -> PayloadT:
        if ce_type in REGISTRY and REGISTRY[ce_type] is not cls:
            raise ValueError(f"event type {ce_type} registered twice")
        cls.ce_type = ce_type
        cls.topic = topic
        REGISTRY[ce_type] = cls
        return cls

    return register


# --- directory: actors ---------------------------------------------------------------
ACTOR_TOPIC = "maillage.directory.actor.v1"


class GeoPoint(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    lat: float
    lon: float


class InterventionArea(BaseModel):
    """Where an activity is offered: listed territories, a radius around the actor, or all of France."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    kind: str  # "territories" | "radius" | "national"
    territories: list[str] = []
    radius_km: float | None = None


class ActivityV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    theme: str
    service_type: str
    area: InterventionArea


class ActorV1(BaseModel):
    """The whole public state of an actor (event-carried state transfer); no personal contact data."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    version: int
    name: str
    description: str = ""
    kind: str
    legal_form: str | None = None
    siret: str | None = None
    rna: str | None = None
    local_register: str | None = None
    themes: list[str] = []
    service_types: list[str] = []
    activities: list[ActivityV1] = []
    commune_code: str
    commune_name: str | None = None
    postal_code: str | None = None
    departement: str
    region: str
    epci: str | None = None
    territories: list[str] = []
    location: GeoPoint | None = None
    qpv_code: str | None = None
    website: str | None = None
    networks: list[str] = []
    status: str = "active"
    updated_at: str


@event_type("org.maillage.directory.actor.registered", ACTOR_TOPIC)
class ActorRegistered(EventPayload):
    actor: ActorV1


@event_type("org.maillage.directory.actor.updated", ACTOR_TOPIC)
class ActorUpdated(EventPayload):
    actor: ActorV1


@event_type("org.maillage.directory.actor.archived", ACTOR_TOPIC)
class ActorArchived(EventPayload):
    actor: ActorV1


# --- matching: needs and matches --------------------------------------------------------------
NEED_TOPIC = "maillage.matching.need.v1"
MATCH_TOPIC = "maillage.matching.match.v1"


class PerimeterV1(BaseModel):
    """Where a need looks for actors: INSEE territory codes and/or a radius around its place."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    territories: list[str] = []
    radius_km: float | None = None


class NeedV1(BaseModel):
    """The whole public state of a need published by a local authority."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    version: int
    owner_id: str
    title: str
    description: str = ""
    kind: str
    themes: list[str] = []
    service_types: list[str] = []
    commune_code: str
    location: GeoPoint
    perimeter: PerimeterV1
    eligible_kinds: list[str] = []
    budget_min: float | None = None
    budget_max: float | None = None
    deadline: str
    qpv_priority: bool = False
    status: str
    updated_at: str


@event_type("org.maillage.matching.need.published", NEED_TOPIC)
class NeedPublished(EventPayload):
    need: NeedV1


@event_type("org.maillage.matching.need.updated", NEED_TOPIC)
class NeedUpdated(EventPayload):
    need: NeedV1


@event_type("org.maillage.matching.need.closed", NEED_TOPIC)
class NeedClosed(EventPayload):
    """Closed by its owner (closed, fulfilled, cancelled) or expired at its deadline."""

    need: NeedV1
    comment: str | None = None


class MatchReasonV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    code: str  # kind | perimeter | activity | themes | service_types | distance | qpv | text
    text: str  # for a person, in French
    weight: float = 0.0  # its share of the score


class MatchV1(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    need_id: str
    actor_id: str
    owner_id: str
    need_title: str
    score: float
    reasons: list[MatchReasonV1] = []
    status: str
    response_comment: str | None = None
    updated_at: str
    created_at: str | None = None  # added later: absent from the records of older producers


@event_type("org.maillage.matching.match.found", MATCH_TOPIC)
class MatchFound(EventPayload):
    match: MatchV1


@event_type("org.maillage.matching.match.viewed", MATCH_TOPIC)
class MatchViewed(EventPayload):
    """The actor saw the need for the first time (seeing it again publishes nothing)."""

    match: MatchV1


@event_type("org.maillage.matching.match.responded", MATCH_TOPIC)
class MatchResponded(EventPayload):
    """The actor said interested or declined (with its reason)."""

    match: MatchV1


@event_type("org.maillage.matching.match.selected", MATCH_TOPIC)
class MatchSelected(EventPayload):
    match: MatchV1


@event_type("org.maillage.matching.match.withdrawn", MATCH_TOPIC)
class MatchWithdrawn(EventPayload):
    """The need closed before the actor was selected."""

    match: MatchV1


# --- events: territorial events and their registrations ------------------------------
EVENT_TOPIC = "maillage.events.event.v1"
REGISTRATION_TOPIC = "maillage.events.registration.v1"


class PlaceV1(BaseModel):
    """Where an event happens; no personal data (an organizer's address is public)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    address: str | None = None
    commune_code: str | None = None
    location: GeoPoint | None = None


class EventV1(BaseModel):
    """The whole public state of a territorial event; seats are counts, never people."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    version: int
    title: str
    description: str = ""
    kind: str
    themes: list[str] = []
    organizer_ids: list[str]
    starts_at: str  # ISO 8601 in UTC
    ends_at: str
    timezone: str = "Europe/Paris"
    place: PlaceV1 | None = None
    online_url: str | None = None
    capacity: int | None = None
    registration_mode: str
    status: str
    confirmed: int = 0
    waitlisted: int = 0
    updated_at: str


@event_type("org.maillage.events.event.published", EVENT_TOPIC)
class EventPublished(EventPayload):
    event: EventV1


@event_type("org.maillage.events.event.updated", EVENT_TOPIC)
class EventUpdated(EventPayload):
    event: EventV1


@event_type("org.maillage.events.event.cancelled", EVENT_TOPIC)
class EventCancelled(EventPayload):
    event: EventV1
    reason: str | None = None


class RegistrationV1(BaseModel):
    """A registration without the person: a person participant is only `participant_kind = person`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    event_id: str
    participant_kind: str  # "actor" | "person"
    actor_id: str | None = None  # an organisation, public like the directory's actors
    status: str  # pending | confirmed | waitlisted | cancelled | rejected
    updated_at: str


@event_type("org.maillage.events.registration.requested", REGISTRATION_TOPIC)
class RegistrationRequested(EventPayload):
    """On an event taking registrations on approval: waits for an organizer."""

    registration: RegistrationV1


@event_type("org.maillage.events.registration.confirmed", REGISTRATION_TOPIC)
class RegistrationConfirmed(EventPayload):
    registration: RegistrationV1


@event_type("org.maillage.events.registration.waitlisted", REGISTRATION_TOPIC)
class RegistrationWaitlisted(EventPayload):
    registration: RegistrationV1


@event_type("org.maillage.events.registration.promoted", REGISTRATION_TOPIC)
class RegistrationPromoted(EventPayload):
    """A seat freed up: the first of the waiting list is now confirmed."""

    registration: RegistrationV1


@event_type("org.maillage.events.registration.cancelled", REGISTRATION_TOPIC)
class RegistrationCancelled(EventPayload):
    """Cancelled by the participant, by an organizer, rejected, or because the event was cancelled."""

    registration: RegistrationV1
    reason: str | None = None
