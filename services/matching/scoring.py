"""The matching score: how well one actor answers one need, and why, as a pure function (no I/O).

Eligibility first (kind; a shared theme; the actor is inside the need's perimeter or one of its
activities covers the need's place — the activity-level logic of Le marché de l'inclusion), then a
weighted mean of theme overlap, service-type overlap, closeness, text relevance and, when the need
asks for it, the QPV bonus. The weights are settings (`MAILLAGE_MATCH_WEIGHT_*`); the SQL that
fetches candidates ranks them with the same formula (see `planner.candidates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from services.common.settings import Settings
from services.contracts.vocabularies import ACTOR_KINDS_BY_CODE, SERVICE_TYPES_BY_CODE, THEMES_BY_CODE

EARTH_RADIUS_KM = 6378.168  # the sphere of PostgreSQL's earthdistance, so both sides agree
DEFAULT_EXCLUDED_KINDS = frozenset({"local_authority"})


@dataclass(frozen=True)
class Weights:
    themes: float = 0.35
    service_types: float = 0.15
    distance: float = 0.25
    text: float = 0.15
    qpv: float = 0.10
    distance_scale_km: float = 15.0

    @classmethod
    def from_settings(cls, settings: Settings) -> Weights:
        return cls(
            themes=settings.match_weight_themes,
            service_types=settings.match_weight_service_types,
            distance=settings.match_weight_distance,
            text=settings.match_weight_text,
            qpv=settings.match_weight_qpv,
            distance_scale_km=settings.match_distance_scale_km,
        )


@dataclass(frozen=True)
class Activity:
    theme: str
    service_type: str
    area_kind: str  # territories | radius | national
    territories: frozenset[str] = frozenset()
    radius_km: float | None = None

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> Activity:
        area = value.get("area") or {}
        return cls(
            theme=value["theme"],
            service_type=value["service_type"],
            area_kind=area.get("kind", "territories"),
            territories=frozenset(area.get("territories") or ()),
            radius_km=area.get("radius_km"),
        )


@dataclass(frozen=True)
class NeedProfile:
    id: str
    owner_id: str
    themes: frozenset[str]
    service_types: frozenset[str]
    place_codes: frozenset[str]  # COM, EPCI, DEP, REG of the need's commune
    lat: float
    lon: float
    perimeter: frozenset[str] = frozenset()
    perimeter_radius_km: float | None = None
    eligible_kinds: frozenset[str] = frozenset()
    qpv_priority: bool = False
    qpv_prefix: str = "QN"  # QPV codes of the need's département (QN + 3 digits): a QPV elsewhere is no bonus


def qpv_prefix(departement: str) -> str:
    """The prefix of the QPV codes of a département (QN02501M is in the Doubs, 025)."""
    return "QN" + departement.zfill(3)


@dataclass(frozen=True)
class ActorProfile:
    id: str
    name: str
    kind: str
    themes: frozenset[str]  # its own and its activities' themes
    service_types: frozenset[str]
    territories: frozenset[str]  # COM, EPCI, DEP, REG of its commune
    lat: float | None = None
    lon: float | None = None
    qpv_code: str | None = None
    activities: tuple[Activity, ...] = ()
    text_relevance: float = 0.0  # 0..1, from PostgreSQL full text (see planner.candidates)


@dataclass(frozen=True)
class Reason:
    code: str
    text: str
    weight: float = 0.0  # its share of the score

    def as_dict(self) -> dict[str, Any]:
        return {"code": self.code, "text": self.text, "weight": round(self.weight, 4)}


@dataclass(frozen=True)
class Result:
    score: float
    reasons: list[Reason] = field(default_factory=list)

    @property
    def eligible(self) -> bool:
        return self.score > 0


def distance_km(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * EARTH_RADIUS_KM * math.asin(min(1.0, math.sqrt(h)))


def _km(value: float) -> str:
    return f"{value:.1f}".replace(".", ",") + " km"


def _labels(codes: set[str] | frozenset[str], vocabulary: dict[str, Any]) -> str:
    names = [vocabulary[c].label if c in vocabulary else c for c in sorted(codes)]
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " et " + names[-1]


def eligible_kinds(need: NeedProfile) -> frozenset[str] | None:
    """The kinds a need accepts; None means every kind except local authorities."""
    return need.eligible_kinds or None


def coverage(need: NeedProfile, actor: ActorProfile, distance: float | None) -> Reason | None:
    """Why the actor may answer this need geographically, or None when it may not."""
    if actor.territories & need.perimeter:
        where = sorted(actor.territories & need.perimeter)[0]
        return Reason("perimeter", f"dans le périmètre du besoin ({where})")
    if need.perimeter_radius_km is not None and distance is not None and distance <= need.perimeter_radius_km:
        return Reason("perimeter", f"dans le rayon de {_km(need.perimeter_radius_km)} autour du lieu du besoin")
    for activity in actor.activities:
        if need.themes and activity.theme not in need.themes:
            continue  # an activity covers a place only for its own theme
        label = THEMES_BY_CODE[activity.theme].label if activity.theme in THEMES_BY_CODE else activity.theme
        if activity.area_kind == "national":
            return Reason("activity", f"intervient dans toute la France ({label})")
        if activity.area_kind == "territories" and activity.territories & need.place_codes:
            where = sorted(activity.territories & need.place_codes)[0]
            return Reason("activity", f"intervient sur {where} ({label})")
        if (
            activity.area_kind == "radius"
            and activity.radius_km is not None
            and distance is not None
            and distance <= activity.radius_km
        ):
            return Reason("activity", f"intervient dans un rayon de {_km(activity.radius_km)} ({label})")
    return None


def score(need: NeedProfile, actor: ActorProfile, weights: Weights = Weights()) -> tuple[float, list[Reason]]:
    """The score in [0, 1] and its reasons; 0 with the excluding reason when the actor is not eligible."""
    result = evaluate(need, actor, weights)
    return result.score, result.reasons


def evaluate(need: NeedProfile, actor: ActorProfile, weights: Weights = Weights()) -> Result:
    if actor.id == need.owner_id:
        return Result(0.0, [Reason("excluded", "c'est l'auteur du besoin")])
    kinds = eligible_kinds(need)
    if (kinds is not None and actor.kind not in kinds) or (kinds is None and actor.kind in DEFAULT_EXCLUDED_KINDS):
        label = ACTOR_KINDS_BY_CODE[actor.kind].label if actor.kind in ACTOR_KINDS_BY_CODE else actor.kind
        return Result(0.0, [Reason("excluded", f"type d'acteur non retenu ({label})")])
    shared_themes = need.themes & actor.themes
    if need.themes and not shared_themes:
        return Result(0.0, [Reason("excluded", "aucun thème en commun")])
    distance = None
    if actor.lat is not None and actor.lon is not None:
        distance = distance_km(need.lat, need.lon, actor.lat, actor.lon)
    where = coverage(need, actor, distance)
    if where is None:
        return Result(0.0, [Reason("excluded", "hors du périmètre et d'aucune zone d'intervention")])

    parts: list[tuple[str, float, float, str | None]] = []  # code, weight, value in [0, 1], text
    theme_value = len(shared_themes) / len(need.themes) if need.themes else 1.0
    parts.append(
        ("themes", weights.themes, theme_value, _labels(shared_themes, THEMES_BY_CODE) if shared_themes else None)
    )
    shared_services = need.service_types & actor.service_types
    service_value = len(shared_services) / len(need.service_types) if need.service_types else 1.0
    service_text = f"propose : {_labels(shared_services, SERVICE_TYPES_BY_CODE).lower()}" if shared_services else None
    parts.append(("service_types", weights.service_types, service_value, service_text))
    closeness = math.exp(-distance / weights.distance_scale_km) if distance is not None else 0.0
    parts.append(("distance", weights.distance, closeness, f"à {_km(distance)}" if distance is not None else None))
    relevance = max(0.0, min(1.0, actor.text_relevance))
    parts.append(("text", weights.text, relevance, "description proche du besoin" if relevance >= 0.1 else None))
    if need.qpv_priority:
        in_qpv = actor.qpv_code is not None and actor.qpv_code.startswith(need.qpv_prefix)
        parts.append(("qpv", weights.qpv, 1.0 if in_qpv else 0.0, f"en QPV {actor.qpv_code}" if in_qpv else None))

    total_weight = sum(weight for _, weight, _, _ in parts) or 1.0
    value = sum(weight * v for _, weight, v, _ in parts) / total_weight
    reasons = [where]
    for code, weight, v, text in sorted(parts, key=lambda p: -p[1] * p[2]):
        if text is not None and v > 0:
            reasons.append(Reason(code, text, weight * v / total_weight))
    return Result(round(max(value, 1e-6), 4), reasons)
