"""Needs published by local authorities and the matches made for them: types, edges, filter and mutations."""

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
    Territory,
    body_of,
    connection_of,
    page_size,
    patch_of,
    status_codes,
)
from services.contracts import territories

if TYPE_CHECKING:
    from gateway.types.actors import Actor


@strawberry.enum
class NeedKind(Enum):
    PARTNERSHIP = "partnership"
    PROCUREMENT = "procurement"
    QUOTE = "quote"
    CALL_FOR_PROJECTS = "call_for_projects"
    VOLUNTEERING = "volunteering"
    PREMISES = "premises"


@strawberry.enum
class NeedStatus(Enum):
    PUBLISHED = "published"
    CLOSED = "closed"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"
    EXPIRED = "expired"


@strawberry.enum(description="How a need ends")
class NeedClosure(Enum):
    CLOSED = "closed"
    FULFILLED = "fulfilled"
    CANCELLED = "cancelled"


@strawberry.enum(description="What the matched actor answers")
class MatchResponse(Enum):
    INTERESTED = "interested"
    DECLINED = "declined"


@strawberry.type(description="Where a need looks for actors")
class Perimeter:
    territories: list[str] = strawberry.field(description="INSEE codes as given (empty: the owner's territory)")
    radius_km: float | None

    @strawberry.field(description="Its territories with their names, in the order of `territories`")
    def places(self) -> list[Territory]:
        return Territory.named(self.territories)


@strawberry.type(description="What a local authority looks for")
class Need:
    id: strawberry.ID
    version: int
    owner_id: strawberry.ID
    title: str
    description: str
    kind: str
    themes: list[str]
    service_types: list[str]
    commune_code: str
    location: GeoPoint
    perimeter: Perimeter

    @strawberry.field(description="The name of the commune of `communeCode`")
    def commune_name(self) -> str | None:
        found = territories.territory_named(f"COM-{self.commune_code}")
        return found.name if found else None

    effective_perimeter: list[str] = strawberry.field(description="The territory codes matching used")
    eligible_kinds: list[str]
    budget_min: float | None
    budget_max: float | None
    deadline: datetime
    qpv_priority: bool
    status: str
    closing_comment: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field(description="The local authority that published it")
    async def collectivity(self, info: GInfo) -> Annotated[Actor, strawberry.lazy("gateway.types.actors")] | None:
        from gateway.types.actors import Actor

        data = await info.context.loaders.actor.load(str(self.owner_id))
        return Actor.of(data) if data else None

    @strawberry.field(
        description="The actors matched to it, best first, in `statuses` when given (its owner, partners and admins)"
    )
    async def matches(
        self, info: GInfo, first: int = 20, statuses: list[MatchStatus] | None = None
    ) -> list[Match] | None:
        require_principal(info)
        key = (str(self.id), page_size(info, first), status_codes(statuses))
        return [Match.of(match) for match in await info.context.loaders.need_matches.load(key)]

    @strawberry.field(
        description="Its matches counted by status (its owner, partners and admins); one call for a whole list of needs"
    )
    async def match_counts(
        self,
        info: GInfo,
        answered_since: Annotated[
            datetime | None,
            strawberry.argument(description="Count the answers (interested, declined) given after this instant"),
        ] = None,
    ) -> MatchCounts | None:
        require_principal(info)
        if answered_since is not None and answered_since.tzinfo is None:
            raise bad_input(
                "answeredSince: give a time zone, e.g. 2027-03-01T18:00:00+01:00", "answeredSince", "time_zone"
            )
        since = answered_since.isoformat() if answered_since is not None else None
        return MatchCounts.of(await info.context.loaders.need_match_counts.load((str(self.id), since)))

    @staticmethod
    def of(data: dict[str, Any]) -> Need:
        return Need(
            id=strawberry.ID(data["id"]),
            version=data["version"],
            owner_id=strawberry.ID(data["owner_id"]),
            title=data["title"],
            description=data["description"],
            kind=data["kind"],
            themes=data["themes"],
            service_types=data["service_types"],
            commune_code=data["commune_code"],
            location=GeoPoint(lat=data["location"]["lat"], lon=data["location"]["lon"]),
            perimeter=Perimeter(
                territories=data["perimeter"]["territories"], radius_km=data["perimeter"].get("radius_km")
            ),
            effective_perimeter=data["effective_perimeter"],
            eligible_kinds=data["eligible_kinds"],
            budget_min=data["budget_min"],
            budget_max=data["budget_max"],
            deadline=datetime.fromisoformat(data["deadline"]),
            qpv_priority=data["qpv_priority"],
            status=data["status"],
            closing_comment=data.get("closing_comment"),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
        )


@strawberry.type(description="How many of a need's matches are in each status")
class MatchCounts:
    total: int
    proposed: int = strawberry.field(description="Stored, not announced: the need had enough interested actors")
    notified: int
    viewed: int
    interested: int
    declined: int
    selected: int
    withdrawn: int
    answered_since: int | None = strawberry.field(
        description="Answers (interested, declined) given after `answeredSince`; null when it was not given"
    )

    @staticmethod
    def of(data: dict[str, Any]) -> MatchCounts:
        return MatchCounts(**{name: data[name] for name in MATCH_COUNT_FIELDS})


MATCH_COUNT_FIELDS = (
    "total",
    "proposed",
    "notified",
    "viewed",
    "interested",
    "declined",
    "selected",
    "withdrawn",
    "answered_since",
)


@strawberry.type(description="One reason behind a score, in French, with its share of the score")
class MatchReason:
    code: str
    text: str
    weight: float


@strawberry.type(description="A need and an actor that can meet it: the score, why, and where they stand")
class Match:
    id: strawberry.ID
    need_id: strawberry.ID
    actor_id: strawberry.ID
    score: float
    reasons: list[MatchReason]
    status: str
    response_comment: str | None
    created_at: datetime
    updated_at: datetime

    @strawberry.field
    async def need(self, info: GInfo) -> Need | None:
        data = await info.context.loaders.need.load(str(self.need_id))
        return Need.of(data) if data else None

    @strawberry.field
    async def actor(self, info: GInfo) -> Annotated[Actor, strawberry.lazy("gateway.types.actors")] | None:
        from gateway.types.actors import Actor

        data = await info.context.loaders.actor.load(str(self.actor_id))
        return Actor.of(data) if data else None

    @staticmethod
    def of(data: dict[str, Any]) -> Match:
        return Match(
            id=strawberry.ID(data["id"]),
            need_id=strawberry.ID(data["need_id"]),
            actor_id=strawberry.ID(data["actor_id"]),
            score=data["score"],
            reasons=[MatchReason(code=r["code"], text=r["text"], weight=r.get("weight", 0.0)) for r in data["reasons"]],
            status=data["status"],
            response_comment=data.get("response_comment"),
            created_at=datetime.fromisoformat(data["created_at"]),
            updated_at=datetime.fromisoformat(data["updated_at"]),
        )


# --- inputs -------------------------------------------------------------------------------------------------


@strawberry.input(description="Which needs (newest first)")
class NeedFilter:
    owner_id: strawberry.ID | None = None
    statuses: list[NeedStatus] | None = None


@strawberry.input
class PerimeterInput:
    territories: list[str] | None = None
    radius_km: float | None = None


@strawberry.input(
    description="The fields to change; the others keep their value (the need is matched again). Null removes an "
    "optional field's value (budgetMin, budgetMax; description, serviceTypes and eligibleKinds become empty); the "
    "other fields take a value, not null (BAD_USER_INPUT, rule `required`)"
)
class UpdateNeedInput:
    # UNSET, not None, by default: a field left out keeps its value, an explicit null removes it (`patch_of`).
    title: str | None = strawberry.UNSET
    kind: NeedKind | None = strawberry.UNSET
    description: str | None = strawberry.field(default=strawberry.UNSET, description="Null: no description")
    themes: list[str] | None = strawberry.UNSET
    service_types: list[str] | None = strawberry.field(default=strawberry.UNSET, description="Null: none")
    commune_code: str | None = strawberry.field(default=strawberry.UNSET, description="INSEE code of the need's place")
    location: GeoPointInput | None = strawberry.UNSET
    perimeter: PerimeterInput | None = strawberry.field(
        default=strawberry.UNSET, description="Replaced whole (a radius left out: none)"
    )
    eligible_kinds: list[str] | None = strawberry.field(
        default=strawberry.UNSET, description="Null or empty: every kind but local authorities"
    )
    budget_min: float | None = strawberry.field(default=strawberry.UNSET, description="Null: no minimum")
    budget_max: float | None = strawberry.field(default=strawberry.UNSET, description="Null: no maximum")
    deadline: datetime | None = strawberry.UNSET
    qpv_priority: bool | None = strawberry.UNSET
    version: int | None = strawberry.field(
        default=None, description="The version you edited: refused with CONFLICT if the need changed since"
    )


@strawberry.input(description="A need of a local authority; matching starts when it is published")
class PublishNeedInput:
    title: str
    kind: NeedKind
    themes: list[str]
    commune_code: str = strawberry.field(description="INSEE code of the need's place")
    location: GeoPointInput
    deadline: datetime
    owner_id: strawberry.ID | None = strawberry.field(
        default=None, description="The publishing local authority (an admin names it; default: the caller's)"
    )
    description: str | None = None
    service_types: list[str] | None = None
    perimeter: PerimeterInput | None = None
    eligible_kinds: list[str] | None = None
    budget_min: float | None = None
    budget_max: float | None = None
    qpv_priority: bool | None = None


# --- resolvers ----------------------------------------------------------------------------------------------


async def need(info: GInfo, id: strawberry.ID) -> Need | None:
    require_principal(info)
    data = await info.context.loaders.need.load(str(id))
    return Need.of(data) if data else None


async def needs(
    info: GInfo, filter: NeedFilter | None = None, first: int | None = None, after: str | None = None
) -> Connection[Need]:
    principal = require_principal(info)
    owner_id = str(filter.owner_id) if filter is not None and filter.owner_id else None
    statuses = [status.value for status in filter.statuses] if filter is not None and filter.statuses else None
    page = await info.context.gateway.clients.matching.search_needs(
        principal, first=page_size(info, first), after=after, owner_id=owner_id, statuses=statuses
    )
    return connection_of(
        zip(page["cursors"], page["items"], strict=True),
        has_next=page["next"] is not None,
        end_cursor=page["cursors"][-1] if page["cursors"] else None,
        total=None,
        loader=info.context.loaders.need,
        of=Need.of,
    )


async def match(info: GInfo, id: strawberry.ID) -> Match | None:
    require_principal(info)
    data = await info.context.loaders.match.load(str(id))
    return Match.of(data) if data else None


async def matches(info: GInfo, ids: list[strawberry.ID]) -> list[Match | None]:
    require_principal(info)
    if len(ids) > info.context.gateway.settings.gateway_max_page_size:
        raise bad_input(
            f"ids: at most {info.context.gateway.settings.gateway_max_page_size}", field="ids", rule="max_page_size"
        )
    found = await info.context.loaders.match.load_many([str(i) for i in ids])
    return [Match.of(data) if data else None for data in found]


async def publish_need(info: GInfo, input: PublishNeedInput, idempotency_key: IdempotencyKey = None) -> Need:
    principal = require_principal(info)
    body = body_of(input)
    body["deadline"] = body["deadline"].isoformat()
    matching = info.context.gateway.clients.matching
    data = await idempotency.create(
        idempotency_key, lambda key: matching.publish_need(body, principal, idempotency_key=key)
    )
    return Need.of(data)


async def update_need(info: GInfo, id: strawberry.ID, input: UpdateNeedInput) -> Need:
    """The matching service changes the given fields only (its PATCH: a null removes a value, or is refused for a
    required field, naming it); `version`, when given, is its If-Match."""
    principal = require_principal(info)
    changes = patch_of(input)
    changes.pop("version", None)
    if not changes:
        raise bad_input("input: give at least one field to change", field="input", rule="not_empty")
    if changes.get("deadline") is not None:  # a null deadline is the service's to refuse (a required field)
        changes["deadline"] = changes["deadline"].isoformat()
    try:
        data = await info.context.gateway.clients.matching.patch_need(
            str(id), changes, principal, version=input.version
        )
    except GraphQLError as exc:
        if exc.extensions is not None and exc.extensions.get("field") == "If-Match":
            exc.extensions["field"] = "version"  # the service names its header; the caller gave `version`
        raise
    return Need.of(data)


async def close_need(info: GInfo, id: strawberry.ID, status: NeedClosure, comment: str | None = None) -> Need:
    principal = require_principal(info)
    data = await info.context.gateway.clients.matching.close_need(str(id), status.value, comment, principal)
    return Need.of(data)


async def respond_to_match(
    info: GInfo, id: strawberry.ID, response: MatchResponse, comment: str | None = None
) -> Match:
    principal = require_principal(info)
    data = await info.context.gateway.clients.matching.respond_to_match(str(id), response.value, comment, principal)
    return Match.of(data)


async def mark_match_viewed(info: GInfo, id: strawberry.ID) -> Match:
    principal = require_principal(info)
    data = await info.context.gateway.clients.matching.mark_match_viewed(str(id), principal)
    return Match.of(data)


async def select_match(info: GInfo, id: strawberry.ID, comment: str | None = None) -> Match:
    principal = require_principal(info)
    data = await info.context.gateway.clients.matching.select_match(str(id), comment, principal)
    return Match.of(data)
