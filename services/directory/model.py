"""The actor model: what an ESS actor or local authority is, and the rules its fields obey (pure, no I/O)."""

from __future__ import annotations

import re
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, field_validator, model_validator
from pydantic_core import PydanticCustomError
from stdnum.exceptions import ValidationError as StdnumError
from stdnum.fr import siret as siret_number

from services.common.rules import EMAIL_MAX_LENGTH, EMAIL_PATTERN, cross_field_error
from services.contracts import territories
from services.contracts.events import ActivityV1, ActorV1, GeoPoint, InterventionArea
from services.contracts.vocabularies import (
    ACTOR_KINDS_BY_CODE,
    SERVICE_TYPES_BY_CODE,
    THEMES_BY_CODE,
    check_codes,
)

RNA_PATTERN = re.compile(r"^W\d{9}$")
QPV_PATTERN = re.compile(r"^QN\d{5}[A-Z]?$|^QP\d{3}\d{3}$")
# Associations of Bas-Rhin, Haut-Rhin and Moselle are registered at the tribunal judiciaire.
ALSACE_MOSELLE = frozenset({"57", "67", "68"})
MAX_RADIUS_KM = 500.0


class ActorStatus(StrEnum):
    active = "active"
    archived = "archived"


def normalize_siret(value: str) -> str:
    try:
        return str(siret_number.validate(value))
    except StdnumError as exc:
        raise ValueError(f"not a valid SIRET ({exc})") from exc


class Area(BaseModel):
    """Where an activity is offered."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["territories", "radius", "national"]
    territories: list[str] = Field(default_factory=list, description="INSEE codes: COM-25056, EPCI-…, DEP-25, REG-27")
    radius_km: float | None = Field(None, gt=0, le=MAX_RADIUS_KM, description="Around the actor's location")

    @model_validator(mode="after")
    def _consistent(self) -> Area:
        if self.kind == "territories":
            if not self.territories:
                raise cross_field_error(
                    "territories", "required", "an area of kind 'territories' lists at least one territory code"
                )
            self.territories = territories.normalize_territories(self.territories)
        elif self.kind == "radius" and self.radius_km is None:
            raise cross_field_error("radius_km", "required", "an area of kind 'radius' needs radius_km")
        return self


class Activity(BaseModel):
    model_config = ConfigDict(extra="forbid")

    theme: str
    service_type: str
    area: Area

    @field_validator("theme")
    @classmethod
    def _theme(cls, value: str) -> str:
        return check_codes([value], THEMES_BY_CODE, "theme")[0]

    @field_validator("service_type")
    @classmethod
    def _service_type(cls, value: str) -> str:
        return check_codes([value], SERVICE_TYPES_BY_CODE, "service type")[0]


class Contact(BaseModel):
    """How to reach the actor: personal data, never published in events."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = Field(None, max_length=200)
    email: str | None = Field(None, max_length=EMAIL_MAX_LENGTH, pattern=EMAIL_PATTERN)
    phone: str | None = Field(None, max_length=30, pattern=r"^\+?[0-9 .()-]{6,30}$")


Name = Annotated[str, Field(min_length=2, max_length=200)]


class ActorFields(BaseModel):
    """Fields an actor is created with; shared by creation and update."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    description: str = Field("", max_length=5000)
    legal_form: str | None = Field(None, max_length=100)
    siret: str | None = Field(None, description="14 digits, checksum verified")
    rna: str | None = Field(None, description="RNA number: W + 9 digits")
    local_register: str | None = Field(
        None,
        max_length=100,
        description="Alsace-Moselle associations: the tribunal's register reference (e.g. 'TJ Strasbourg VOL 85 n°12')",
    )
    themes: list[str] = Field(default_factory=list, max_length=30)
    service_types: list[str] = Field(default_factory=list, max_length=20)
    activities: list[Activity] = Field(default_factory=list, max_length=50)
    street: str | None = Field(None, max_length=300)
    postal_code: str | None = Field(None, pattern=r"^\d{5}$")
    location: GeoPoint | None = None
    qpv_code: str | None = Field(None, description="Declared quartier prioritaire code, e.g. QN02501M")
    website: HttpUrl | None = None
    networks: list[str] = Field(default_factory=list, max_length=30)
    contact: Contact | None = None
    source_id: str | None = Field(None, max_length=200, description="Identifier in an imported source")

    @field_validator("siret")
    @classmethod
    def _siret(cls, value: str | None) -> str | None:
        return normalize_siret(value) if value else None

    @field_validator("rna")
    @classmethod
    def _rna(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = value.upper().replace(" ", "")
        if not RNA_PATTERN.match(value):
            raise ValueError("an RNA number is W followed by 9 digits")
        return value

    @field_validator("themes")
    @classmethod
    def _themes(cls, value: list[str]) -> list[str]:
        return check_codes(value, THEMES_BY_CODE, "theme")

    @field_validator("service_types")
    @classmethod
    def _service_types(cls, value: list[str]) -> list[str]:
        return check_codes(value, SERVICE_TYPES_BY_CODE, "service type")

    @field_validator("qpv_code")
    @classmethod
    def _qpv(cls, value: str | None) -> str | None:
        if not value:
            return None
        value = value.upper().strip()
        if not QPV_PATTERN.match(value):
            raise ValueError("a QPV code looks like QN02501M (2024 list) or QP025001")
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: GeoPoint | None) -> GeoPoint | None:
        if value is not None and not (-90 <= value.lat <= 90 and -180 <= value.lon <= 180):
            raise ValueError("lat must be within [-90, 90] and lon within [-180, 180]")
        return value

    @field_validator("networks")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        return list(dict.fromkeys(v.strip() for v in value if v.strip()))


def check_kind(value: str) -> str:
    return check_codes([value], ACTOR_KINDS_BY_CODE, "actor kind")[0]


def resolve_commune_code(value: str) -> str:
    code = value.strip().upper().removeprefix("COM-")
    try:
        return territories.resolve_commune(code).code
    except territories.TerritoryError as exc:
        raise ValueError(str(exc)) from exc


COMMUNE_CODE_DESCRIPTION = "INSEE code of the commune (former communes resolve to the current one)"


class ActorCreate(ActorFields):
    name: Name
    kind: str
    commune_code: str = Field(description=COMMUNE_CODE_DESCRIPTION)

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str) -> str:
        return check_kind(value)

    @field_validator("commune_code")
    @classmethod
    def _commune(cls, value: str) -> str:
        return resolve_commune_code(value)

    @model_validator(mode="after")
    def _register(self) -> ActorCreate:
        check_local_register(self.local_register, self.commune_code)
        return self


class ActorUpdate(ActorCreate):
    """A full replacement of the editable fields (PUT semantics), checked against the stored version."""


class ActorPatch(ActorFields):
    """A partial update (PATCH): only the fields given change, each obeying the rules of `ActorUpdate`.

    Which fields were given is `model_fields_set`; the rules across fields (the tribunal register is for
    Alsace-Moselle) are checked on the actor the patch makes (`rules.patched`), since they may involve a
    stored field. A required field cannot be removed: null is refused for name, kind and commune_code. Null
    removes an optional field's value: the description and the lists become empty, the others none.
    """

    name: Name | None = None
    kind: str | None = None
    commune_code: str | None = Field(None, description=COMMUNE_CODE_DESCRIPTION)

    @field_validator("name", "kind", "commune_code", mode="before")
    @classmethod
    def _required(cls, value: object) -> object:
        if value is None:
            raise PydanticCustomError("required", "a required field can be changed, not removed")
        return value

    @field_validator("description", mode="before")
    @classmethod
    def _emptied_text(cls, value: object) -> object:
        return "" if value is None else value

    @field_validator("themes", "service_types", "activities", "networks", mode="before")
    @classmethod
    def _emptied_list(cls, value: object) -> object:
        return [] if value is None else value

    @field_validator("kind")
    @classmethod
    def _kind(cls, value: str | None) -> str | None:
        return None if value is None else check_kind(value)

    @field_validator("commune_code")
    @classmethod
    def _commune(cls, value: str | None) -> str | None:
        return None if value is None else resolve_commune_code(value)


def check_local_register(reference: str | None, commune_code: str) -> None:
    if reference and territories.resolve_commune(commune_code).departement not in ALSACE_MOSELLE:
        raise cross_field_error(
            "local_register",
            "alsace_moselle",
            "local_register is for Alsace-Moselle associations (départements 57, 67, 68); use rna elsewhere",
        )


class ActorRead(BaseModel):
    """An actor as the API returns it."""

    id: str
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
    contact: Contact | None = Field(None, description="Visible to admins, partners and the actor itself")
    source_id: str | None
    status: ActorStatus
    created_at: datetime
    updated_at: datetime
    distance_km: float | None = Field(None, description="Distance from the `near` point, when searched by it")


def derived_geography(commune_code: str) -> dict[str, Any]:
    """Département, région, EPCI and containing territory codes: derived from the commune, never typed in."""
    commune = territories.resolve_commune(commune_code)
    return {
        "commune_code": commune.code,
        "commune_name": commune.name,
        "departement": commune.departement,
        "region": commune.region,
        "epci": commune.epci,
        "territories": list(territories.territories_of_commune(commune.code)),
    }


def all_themes(fields: ActorFields) -> list[str]:
    """Declared themes plus those of the activities."""
    return list(dict.fromkeys([*fields.themes, *(a.theme for a in fields.activities)]))


def all_service_types(fields: ActorFields) -> list[str]:
    return list(dict.fromkeys([*fields.service_types, *(a.service_type for a in fields.activities)]))


def to_contract(actor: ActorRead) -> ActorV1:
    """The event payload: the actor without its contact (personal data stays in the directory)."""
    return ActorV1(
        id=actor.id,
        version=actor.version,
        name=actor.name,
        description=actor.description,
        kind=actor.kind,
        legal_form=actor.legal_form,
        siret=actor.siret,
        rna=actor.rna,
        local_register=actor.local_register,
        themes=actor.themes,
        service_types=actor.service_types,
        activities=[
            ActivityV1(
                theme=a.theme,
                service_type=a.service_type,
                area=InterventionArea(kind=a.area.kind, territories=a.area.territories, radius_km=a.area.radius_km),
            )
            for a in actor.activities
        ],
        commune_code=actor.commune_code,
        commune_name=actor.commune_name,
        postal_code=actor.postal_code,
        departement=actor.departement,
        region=actor.region,
        epci=actor.epci,
        territories=actor.territories,
        location=actor.location,
        qpv_code=actor.qpv_code,
        website=actor.website,
        networks=actor.networks,
        status=actor.status.value,
        updated_at=actor.updated_at.isoformat(),
    )


# --- persons and memberships ---------------------------------------------------------------------------

Email = Annotated[str, Field(max_length=EMAIL_MAX_LENGTH, pattern=EMAIL_PATTERN)]
PersonName = Annotated[str, Field(min_length=1, max_length=200)]


class MemberRole(StrEnum):
    """What a person is in an actor: a member acts for it; an admin also invites and removes its members."""

    member = "member"
    admin = "admin"


class ActorOrigin(StrEnum):
    """How an actor came into the directory: who may claim it depends on it (`rules.claimable`)."""

    staff = "staff"  # registered by an admin of Maillage
    partner = "partner"  # registered by a partner's application
    imported = "import"  # imported from a source by staff (CSV)
    self_registered = "self"  # registered by the actor itself (self-registration, a later issue)


class EmailBody(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email


class MemberInvite(BaseModel):
    """An invitation: the person (found by e-mail, else created with this name) becomes a member of the actor."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    email: Email
    name: PersonName
    role: MemberRole = MemberRole.member


class PersonRead(BaseModel):
    id: str
    email: str
    name: str
    created_at: datetime


class MemberActor(BaseModel):
    """The actor of a membership, as the gateway needs it to open a session: id, name, kind."""

    id: str
    name: str
    kind: str


class MembershipRead(BaseModel):
    actor: MemberActor
    role: MemberRole
    created_at: datetime


class PersonMemberships(BaseModel):
    """A person (None: no person has this address) and the actors it acts for (active ones only)."""

    person: PersonRead | None
    memberships: list[MembershipRead]


class MemberRead(BaseModel):
    """A member of an actor, as the actor's admins see it."""

    person: PersonRead
    role: MemberRole
    created_at: datetime


class ClaimRead(BaseModel):
    """A pending claim: the address registered as an actor's contact asks to become its admin member."""

    id: str
    actor: MemberActor
    status: str
    created_at: datetime
