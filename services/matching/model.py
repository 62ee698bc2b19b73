"""The matching model: needs, matches and webhook endpoints, and the rules their fields obey (pure, no I/O)."""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from pydantic_core import PydanticCustomError

from services.common.rules import Instant, cross_field_error
from services.contracts import territories
from services.contracts.events import GeoPoint, MatchReasonV1, MatchV1, NeedV1, PerimeterV1
from services.contracts.territories import normalize_territories
from services.contracts.vocabularies import ACTOR_KINDS_BY_CODE, SERVICE_TYPES_BY_CODE, THEMES_BY_CODE, check_codes

MAX_RADIUS_KM = 300.0
MAX_BUDGET = 999_999_999_999  # euros: what the numeric(14, 2) columns hold


class NeedKind(StrEnum):
    partnership = "partnership"
    procurement = "procurement"
    quote = "quote"
    call_for_projects = "call_for_projects"
    volunteering = "volunteering"
    premises = "premises"


class NeedStatus(StrEnum):
    published = "published"
    closed = "closed"
    fulfilled = "fulfilled"
    cancelled = "cancelled"
    expired = "expired"


class NeedClosure(StrEnum):
    closed = "closed"
    fulfilled = "fulfilled"
    cancelled = "cancelled"


class MatchStatus(StrEnum):
    proposed = "proposed"  # stored, not notified (the need already has enough interested actors)
    notified = "notified"
    viewed = "viewed"
    interested = "interested"
    declined = "declined"
    selected = "selected"
    withdrawn = "withdrawn"


class ReplicaStatus(StrEnum):
    """An actor's status in the replica, as the directory publishes it."""

    active = "active"
    archived = "archived"


class Perimeter(BaseModel):
    """Where the need looks for actors; empty means the owner's own territory."""

    model_config = ConfigDict(extra="forbid")

    territories: list[str] = Field(
        default_factory=list, max_length=100, description="INSEE codes: COM-25056, EPCI-<siren>, DEP-25, REG-27"
    )
    radius_km: float | None = Field(None, gt=0, le=MAX_RADIUS_KM, description="Around the need's place")

    _territories = field_validator("territories")(normalize_territories)


Title = Annotated[str, Field(min_length=3, max_length=200)]


class NeedFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: str = Field("", max_length=10_000)
    themes: list[str] = Field(min_length=1, max_length=10)
    service_types: list[str] = Field(default_factory=list, max_length=9)
    perimeter: Perimeter = Field(default_factory=Perimeter)
    eligible_kinds: list[str] = Field(default_factory=list, description="Empty: every kind but local authorities")
    budget_min: float | None = Field(None, ge=0, le=MAX_BUDGET)
    budget_max: float | None = Field(None, ge=0, le=MAX_BUDGET)
    qpv_priority: bool = Field(False, description="Favour actors located in a quartier prioritaire")

    @field_validator("themes")
    @classmethod
    def _themes(cls, values: list[str]) -> list[str]:
        return check_codes(values, THEMES_BY_CODE, "theme")

    @field_validator("service_types")
    @classmethod
    def _service_types(cls, values: list[str]) -> list[str]:
        return check_codes(values, SERVICE_TYPES_BY_CODE, "service type")

    @field_validator("eligible_kinds")
    @classmethod
    def _kinds(cls, values: list[str]) -> list[str]:
        return check_codes(values, ACTOR_KINDS_BY_CODE, "actor kind")

    @model_validator(mode="after")
    def _budget(self) -> NeedFields:
        if self.budget_min is not None and self.budget_max is not None and self.budget_min > self.budget_max:
            raise cross_field_error("budget_max", "budget_range", "budget_max must not be below budget_min")
        return self


def _future(value: datetime) -> datetime:
    if value.tzinfo is None:
        raise ValueError("deadline needs a time zone, e.g. 2027-03-01T18:00:00+01:00")
    if value <= datetime.now(UTC):
        raise ValueError("deadline must be in the future")
    return value


def _commune(value: str) -> str:
    try:
        return territories.resolve_commune(value.removeprefix("COM-")).code
    except territories.TerritoryError as exc:
        raise ValueError(str(exc)) from exc


class NeedCreate(NeedFields):
    owner_id: str | None = Field(None, description="The local authority publishing it (default: the caller's)")
    title: Title
    kind: NeedKind
    commune_code: str = Field(description="INSEE code of the need's place")
    location: GeoPoint = Field(description="Coordinates of the need's place")
    deadline: Instant

    _deadline = field_validator("deadline")(_future)
    _commune_code = field_validator("commune_code")(_commune)

    @field_validator("location")
    @classmethod
    def _location(cls, value: GeoPoint) -> GeoPoint:
        if not (-90 <= value.lat <= 90 and -180 <= value.lon <= 180):
            raise ValueError("lat in [-90, 90] and lon in [-180, 180]")
        return value


class NeedUpdate(NeedFields):
    title: Title
    kind: NeedKind
    commune_code: str
    location: GeoPoint
    deadline: Instant

    _deadline = field_validator("deadline")(_future)
    _commune_code = field_validator("commune_code")(_commune)


class NeedPatch(BaseModel):
    """A partial edit (PATCH): only the fields given change, each obeying the rules of `NeedUpdate`.

    Which fields were given is `model_fields_set`; the need the patch makes is validated as a whole
    (`rules.patched_need`), so that a rule across fields (the budget range) sees the stored values too. A
    required field is changed, never removed: null is refused for them. Null removes an optional field's value:
    the budgets become none, the description and the lists empty (as a need published without them).
    """

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    title: str | None = None
    kind: NeedKind | None = None
    description: str | None = None
    themes: list[str] | None = None
    service_types: list[str] | None = None
    commune_code: str | None = None
    location: GeoPoint | None = None
    perimeter: Perimeter | None = None
    eligible_kinds: list[str] | None = None
    budget_min: float | None = None
    budget_max: float | None = None
    deadline: Instant | None = None
    qpv_priority: bool | None = None

    @field_validator(
        "title", "kind", "themes", "commune_code", "location", "perimeter", "deadline", "qpv_priority", mode="before"
    )
    @classmethod
    def _required(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("required", "a required field can be changed, not removed")
        return value

    @field_validator("description", mode="before")
    @classmethod
    def _emptied_text(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("service_types", "eligible_kinds", mode="before")
    @classmethod
    def _emptied_list(cls, value: object) -> object:
        return [] if value is None else value


class MatchCounts(BaseModel):
    """How many matches a need has in each status, and how many answers came after a given instant."""

    total: int = 0
    proposed: int = 0
    notified: int = 0
    viewed: int = 0
    interested: int = 0
    declined: int = 0
    selected: int = 0
    withdrawn: int = 0
    answered_since: int | None = Field(None, description="Interested or declined after `answered_since` (if asked)")


class NeedClose(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: NeedClosure
    comment: str | None = Field(None, max_length=2000)


class NeedRead(BaseModel):
    id: str
    version: int
    owner_id: str
    title: str
    description: str
    kind: str
    themes: list[str]
    service_types: list[str]
    commune_code: str
    location: GeoPoint
    perimeter: Perimeter
    effective_perimeter: list[str] = Field(description="The territory codes matching used (the owner's by default)")
    eligible_kinds: list[str]
    budget_min: float | None
    budget_max: float | None
    deadline: datetime
    qpv_priority: bool
    status: NeedStatus
    closing_comment: str | None = None
    created_at: datetime
    updated_at: datetime

    def to_contract(self) -> NeedV1:
        return NeedV1(
            id=self.id,
            version=self.version,
            owner_id=self.owner_id,
            title=self.title,
            description=self.description,
            kind=self.kind,
            themes=self.themes,
            service_types=self.service_types,
            commune_code=self.commune_code,
            location=self.location,
            perimeter=PerimeterV1(territories=self.effective_perimeter, radius_km=self.perimeter.radius_km),
            eligible_kinds=self.eligible_kinds,
            budget_min=self.budget_min,
            budget_max=self.budget_max,
            deadline=self.deadline.isoformat(),
            qpv_priority=self.qpv_priority,
            status=self.status.value,
            updated_at=self.updated_at.isoformat(),
        )


class MatchRead(BaseModel):
    id: str
    need_id: str
    actor_id: str
    actor_name: str | None = None
    score: float
    reasons: list[MatchReasonV1]
    status: MatchStatus
    response_comment: str | None = None
    created_at: datetime
    updated_at: datetime

    def to_contract(self, owner_id: str, need_title: str) -> MatchV1:
        return MatchV1(
            id=self.id,
            need_id=self.need_id,
            actor_id=self.actor_id,
            owner_id=owner_id,
            need_title=need_title,
            score=self.score,
            reasons=self.reasons,
            status=self.status.value,
            response_comment=self.response_comment,
            updated_at=self.updated_at.isoformat(),
            created_at=self.created_at.isoformat(),
        )


class MatchResponse(BaseModel):
    model_config = ConfigDict(extra="forbid")

    response: Literal["interested", "declined"]
    comment: str | None = Field(None, max_length=2000, description="Why (required when declining)")

    @model_validator(mode="after")
    def _reason(self) -> MatchResponse:
        if self.response == "declined" and not (self.comment or "").strip():
            raise cross_field_error("comment", "required", "a declined match says why")
        return self


class MatchSelect(BaseModel):
    model_config = ConfigDict(extra="forbid")

    comment: str | None = Field(None, max_length=2000)


# --- webhooks --------------------------------------------------------------------------------------

# The public event types a partner's endpoint may subscribe to. Each endpoint names its own, so a type added here
# reaches no endpoint until its partner asks for it. `match.viewed` is offered as `match.responded` is: both are
# steps of a match's life taken by its actor, carry the match and no personal data, and tell a partner nothing
# its role does not already read through the API (partners read every need's matches).
WEBHOOK_EVENT_TYPES = (
    "need.published",
    "need.updated",
    "need.closed",
    "match.found",
    "match.viewed",
    "match.responded",
    "match.selected",
    "match.withdrawn",
    "actor.registered",
    "actor.updated",
    "actor.archived",
    "event.published",
    "event.updated",
    "event.cancelled",
    "registration.confirmed",
    "registration.waitlisted",
    "registration.cancelled",
)


def public_type(ce_type: str) -> str:
    """`org.maillage.matching.match.found` → `match.found` (the names partners subscribe to)."""
    parts = ce_type.split(".")
    return ".".join(parts[-2:])


def _check_event_types(values: list[str] | None) -> list[str] | None:
    if values is None:
        return None
    unknown = [v for v in values if v not in WEBHOOK_EVENT_TYPES]
    if unknown:
        raise ValueError(f"unknown event type(s): {', '.join(unknown)}; known: {', '.join(WEBHOOK_EVENT_TYPES)}")
    return list(dict.fromkeys(values))


class EndpointStatus(StrEnum):
    active = "active"
    disabled = "disabled"  # by its owner, or after the receiver answered 410 Gone


class WebhookFields(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: HttpUrl = Field(description="https:// (or http:// when private targets are allowed)")
    event_types: list[str] = Field(min_length=1, max_length=len(WEBHOOK_EVENT_TYPES))
    description: str = Field("", max_length=500)

    _types = field_validator("event_types")(_check_event_types)


class WebhookCreate(WebhookFields):
    pass


class WebhookUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    url: HttpUrl | None = None
    event_types: list[str] | None = Field(None, min_length=1)
    description: str | None = Field(None, max_length=500)
    enabled: bool | None = Field(None, description="Re-enable an endpoint disabled after a 410, or pause one")

    _types = field_validator("event_types")(_check_event_types)


class WebhookRead(BaseModel):
    id: str
    url: str
    event_types: list[str]
    description: str
    status: Literal["active", "disabled"]
    disabled_reason: str | None = None
    created_at: datetime
    updated_at: datetime


class WebhookWithSecret(WebhookRead):
    secret: str = Field(description="Shown once: verify signatures with it (Standard Webhooks, whsec_…)")


class DeliveryRead(BaseModel):
    id: str = Field(description="The webhook-id header, the same on every attempt")
    endpoint_id: str
    event_id: str
    event_type: str
    status: Literal["pending", "delivered", "failed", "abandoned"]
    attempts: int
    next_attempt_at: datetime | None
    last_error: str | None
    created_at: datetime
    delivered_at: datetime | None


class AttemptRead(BaseModel):
    attempt: int
    at: datetime
    status_code: int | None
    error: str | None
    duration_ms: float
