"""Actors of the directory: the type, its cross-service edges (events, matches), the filter and the mutations."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Any

import strawberry
from graphql import GraphQLError

from gateway import idempotency
from gateway.context import GInfo, require_principal
from gateway.errors import bad_input
from gateway.idempotency import IdempotencyKey
from gateway.types.common import (
    Connection,
    GeoPoint,
    GeoPointInput,
    MatchStatus,
    NearInput,
    body_of,
    page_size,
    patch_of,
    relay_page,
    status_codes,
    wants_total,
)

if TYPE_CHECKING:
    from gateway.types.events import Event
    from gateway.types.matching import Match


@strawberry.enum(description="Where an activity is offered")
class AreaKind(Enum):
    TERRITORIES = "territories"
    RADIUS = "radius"
    NATIONAL = "national"


@strawberry.type(description="Where an activity is offered: INSEE territories, a radius around the actor, or France")
class Area:
    kind: AreaKind
    territories: list[str]
    radius_km: float | None


@strawberry.type(description="A theme and service type offered over an area")
class Activity:
    theme: str
    service_type: str
    area: Area


@strawberry.type(description="How to reach an actor (admins, partners and the actor itself)")
class Contact:
    name: str | None
    email: str | None
    phone: str | None


@strawberry.type(description="An actor of the social and solidarity economy, or a local authority")
class Actor:
    id: strawberry.ID
    version: int
    name: str
    description: str
    kind: str
    legal_form: str | None
    siret: str | None
    rna: str | None
    local_register: str | None
    themes: list[str]
    service_types: list[str]
    activities: list[Activity]
    street: str | None
    postal_code: str | None
    commune_code: str
    commune_name: str | None
    departement: str
    region: str
    epci: str | None
    territories: list[str]
    location: GeoPoint | None
    qpv_code: str | None
    website: str | None
    networks: list[str]
    contact: Contact | None
    status: str
    created_at: datetime
    updated_at: datetime
    distance_km: float | None = strawberry.field(description="From the `near` point, when searched by it")

    @strawberry.field(description="The next events it organizes, soonest first")
    async def events(
        self, info: GInfo, first: int = 5
    ) -> list[Annotated[Event, strawberry.lazy("gateway.types.events")]] | None:
        from gateway.types.events import Event

        size = page_size(info, first)
        return [Event.of(event) for event in await info.context.loaders.actor_events.load((str(self.id), size))]

    @strawberry.field(
        description="The needs it was matched to, best first, in `statuses` when given: its inbox (the actor "
        "itself, partners and admins)"
    )
    async def matches(
        self, info: GInfo, first: int = 20, statuses: list[MatchStatus] | None = None
    ) -> list[Annotated[Match, strawberry.lazy("gateway.types.matching")]] | None:
        from gateway.types.matching import Match

        require_principal(info)
        key = (str(self.id), page_size(info, first), status_codes(statuses))
        return [Match.of(match) for match in await info.context.loaders.actor_matches.load(key)]

    @staticmethod
    def of(data: dict[str, Any]) -> Actor:
        contact = data.get("contact")
        return Actor(
            id=strawberry.ID(data["id"]),
            version=data["version"],
            name=data["name"],
            description=data["description"],
            kind=data["kind"],
            legal_form=data["legal_form"],
            siret=data["siret"],
            rna=data["rna"],
            local_register=data["local_register"],
            themes=data["themes"],
            service_types=data["service_types"],
            activities=[
                Activity(
                    theme=a["theme"],
                    service_type=a["service_type"],
                    area=Area(
                        kind=AreaKind(a["area"]["kind"]),
                        territories=a["area"].get("territories") or [],
                        radius_km=a["area"].get("radius_km"),
                    ),
                )
                for a in data["activities"]
            ],
            street=data["street"],
            postal_code=data["postal_code"],
            commune_code=data["commune_code"],
            commune_name=data["commune_name"],
            departement=data["departement"],
            region=data["region"],
            epci=data["epci"],
            territories=data["territories"],
            location=GeoPoint.of(data["location"]),
            qpv_code=data["qpv_code"],
            website=data["website"],
            networks=data["networks"],
            contact=Contact(name=contact.get("name"), email=contact.get("email"), phone=contact.get("phone"))
            if contact
            else None,
            status=data["status"],
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
            distance_km=data.get("distance_km"),
        )


# --- inputs -------------------------------------------------------------------------------------------------


@strawberry.input(description="Which actors: every criterion given must hold")
class ActorFilter:
    text: str | None = strawberry.field(default=None, description="French full text, accents and typos tolerated")
    kinds: list[str] | None = None
    themes: list[str] | None = None
    service_types: list[str] | None = None
    near: NearInput | None = None
    territory: list[str] | None = strawberry.field(default=None, description="INSEE codes: COM-25056, DEP-25…")
    in_qpv: bool | None = None


@strawberry.input
class AreaInput:
    kind: AreaKind
    territories: list[str] | None = None
    radius_km: float | None = None


@strawberry.input
class ActivityInput:
    theme: str
    service_type: str
    area: AreaInput


@strawberry.input
class ContactInput:
    name: str | None = None
    email: str | None = None
    phone: str | None = None


@strawberry.input(description="An actor's descriptive fields, shared by registering and updating")
class ActorFieldsInput:
    # UNSET, not None, by default: an update keeps a field left out and removes one given as null (`patch_of`);
    # registering leaves both out (the directory's defaults).
    description: str | None = strawberry.UNSET
    legal_form: str | None = strawberry.UNSET
    siret: str | None = strawberry.UNSET
    rna: str | None = strawberry.UNSET
    local_register: str | None = strawberry.UNSET
    themes: list[str] | None = strawberry.UNSET
    service_types: list[str] | None = strawberry.UNSET
    activities: list[ActivityInput] | None = strawberry.UNSET
    street: str | None = strawberry.UNSET
    postal_code: str | None = strawberry.UNSET
    location: GeoPointInput | None = strawberry.UNSET
    qpv_code: str | None = strawberry.UNSET
    website: str | None = strawberry.UNSET
    networks: list[str] | None = strawberry.UNSET
    contact: ContactInput | None = strawberry.UNSET


@strawberry.input(description="A new actor of the directory")
class RegisterActorInput(ActorFieldsInput):
    name: str
    kind: str
    commune_code: str
    source_id: str | None = strawberry.UNSET


@strawberry.input(
    description="The fields to change; the others keep their value (contact, location and activities are replaced "
    "whole). Null removes an optional field's value (the description and the lists become empty); name, kind and "
    "communeCode take a value, not null (BAD_USER_INPUT, rule `required`)"
)
class UpdateActorInput(ActorFieldsInput):
    version: int | None = strawberry.field(
        default=None, description="The version you edited: refused with CONFLICT if the actor changed since"
    )
    name: str | None = strawberry.UNSET
    kind: str | None = strawberry.UNSET
    commune_code: str | None = strawberry.UNSET


# --- resolvers ----------------------------------------------------------------------------------------------


async def actor(info: GInfo, id: strawberry.ID) -> Actor | None:
    data = await info.context.loaders.actor.load(str(id))
    return Actor.of(data) if data else None


async def actors(
    info: GInfo, filter: ActorFilter | None = None, first: int | None = None, after: str | None = None
) -> Connection[Actor]:
    size = page_size(info, first)
    criteria: dict[str, Any] = {}
    if filter is not None:
        near = filter.near
        criteria = {
            "text": filter.text,
            "kinds": filter.kinds,
            "themes": filter.themes,
            "service_types": filter.service_types,
            "territory": filter.territory,
            "near": (near.lat, near.lon, near.radius_km) if near is not None else None,
            "in_qpv": filter.in_qpv,
        }
    page = await info.context.gateway.clients.directory.search_actors(
        info.context.principal, first=size, after=after, with_total=wants_total(info), **criteria
    )
    return relay_page(page, info.context.loaders.actor, Actor.of)


async def register_actor(info: GInfo, input: RegisterActorInput, idempotency_key: IdempotencyKey = None) -> Actor:
    principal = require_principal(info)
    directory = info.context.gateway.clients.directory
    body = body_of(input)
    data = await idempotency.create(
        idempotency_key, lambda key: directory.register_actor(body, principal, idempotency_key=key)
    )
    return Actor.of(data)


async def update_actor(info: GInfo, id: strawberry.ID, input: UpdateActorInput) -> Actor:
    """The directory changes the given fields only (a null removes a value, or is refused for a required field,
    naming it); `version`, when given, is checked by it (its If-Match)."""
    principal = require_principal(info)
    changes = patch_of(input)
    changes.pop("version", None)
    if not changes:
        raise bad_input("input: give at least one field to change", field="input", rule="not_empty")
    try:
        data = await info.context.gateway.clients.directory.patch_actor(
            str(id), changes, principal, version=input.version
        )
    except GraphQLError as exc:
        if exc.extensions is not None and exc.extensions.get("field") == "If-Match":
            exc.extensions["field"] = "version"  # the service names its header; the caller gave `version`
        raise
    return Actor.of(data)


async def archive_actor(info: GInfo, id: strawberry.ID) -> Actor:
    """The directory's archive route decides who may (admins, the actor itself, partners with directory:write);
    archiving twice answers the archived actor."""
    principal = require_principal(info)
    data = await info.context.gateway.clients.directory.archive_actor(str(id), principal)
    return Actor.of(data)
