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
