"""The matching score: how well one actor answers one need, and why, as a pure function (no I/O).

Eligibility first (kind; at least one door open — services/contracts/doors.py: a shared theme, a related
theme, the actor's own words, the service type that is the need's point; the actor is inside the need's
perimeter or one of its activities covers the need's place — the activity-level logic of Le marché de
l'inclusion), then a weighted mean of the theme part, service-type overlap, closeness, text relevance and,
when the need asks for it, the QPV bonus. The theme part is 1 per shared theme; an actor without one is
credited a fraction of it by the door it came through (each fraction a setting, 0 closing the door). The
weights are settings (`MAILLAGE_MATCH_WEIGHT_*`); the SQL that fetches candidates ranks them with the same
formula, without the doors' credit and the text part (see `planner.candidates`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from services.common.settings import Settings
from services.contracts import doors, relations, synonyms, territories
from services.contracts.doors import Door
from services.contracts.vocabularies import ACTOR_KINDS_BY_CODE, THEMES_BY_CODE

EARTH_RADIUS_KM = 6378.168  # the sphere of PostgreSQL's earthdistance, so both sides agree
DEFAULT_EXCLUDED_KINDS = frozenset({"local_authority"})
# Word evidence that confirms a candidate on its own: one distinctive word of the need in its description or
# activities (a concept is four times that), not counting the words that only name the need's public ("jeunes" in
# a need for young people: services.contracts.synonyms.PUBLIC_WORDS). A candidate that neither shares all the need's
# themes nor is confirmed so must reach MAILLAGE_MATCH_MIN_SCORE_UNCONFIRMED (0.63). On the quality set (bench.quality)
# every ideal actor is confirmed; 0.62 to 0.65 keep both name traps (a music venue called "Le Garage" for a youth
# garage, an incubator called "Ressourcerie des Idées" for a furniture recyclerie) out of the top 5 for two
# acceptable actors lost (P@5 and R@10 0.934 → 0.915); 0.35, the plain minimum, kept them; 0.66 and more lose one
# more acceptable actor.
CONFIRMING_EVIDENCE = 0.25
# A need whose text says what it asks (its terms could add up to full word evidence: a concept of the field, or
# four distinctive words) is answered only when some candidate says in its own words that it does it —
# `Weights.answering` (MAILLAGE_MATCH_MIN_ANSWERING_EVIDENCE, 0.5: two distinctive words or a concept) of word
# evidence in its description or activities, its public's words included — or offers the service type that is the
# need's point (premises). Otherwise its candidates only share a theme's label with it, as a mutual insurer and a
# sport-on-prescription club share "santé" with a dental centre, and the need gets no match. On the quality set
# (bench.quality) every need with a real answer has a candidate at 0.75 or more, the two without one 0.25 (the
# word "santé") and 0: 0.5 and 0.75 give both no-answer needs silence and lose no other need; 0.25 lets the insurer
# answer; 1.0 silences seven needs that have one.
JUDGED_REACH = 1.0


@dataclass(frozen=True)
class Weights:
    themes: float = 0.35
    service_types: float = 0.15
    distance: float = 0.25
    text: float = 0.15
    qpv: float = 0.10
    distance_scale_km: float = 15.0
    # The doors' credit in the theme part, as a fraction of a shared theme's (0 closes the door).
    related_theme: float = 0.6  # times the relation's weight
    text_door: float = 0.6
    service_type_door: float = 0.6
    # The word evidence that makes a candidate a real answer of a need that says what it asks (0: every candidate).
    answering: float = 0.5

    @classmethod
    def from_settings(cls, settings: Settings) -> Weights:
        return cls(
            themes=settings.match_weight_themes,
            service_types=settings.match_weight_service_types,
            distance=settings.match_weight_distance,
            text=settings.match_weight_text,
            qpv=settings.match_weight_qpv,
            distance_scale_km=settings.match_distance_scale_km,
            related_theme=settings.match_weight_related_theme,
            text_door=settings.match_weight_text_door,
            service_type_door=settings.match_weight_service_type_door,
            answering=settings.match_min_answering_evidence,
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
    query: synonyms.NeedQuery | None = None  # its concepts and words; None: no word evidence (ts_rank alone)


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
    body: str = ""  # its own words: description and activities' labels (store.actor_body), not its name
    # Its name's and body's comparison keys (synonyms.text_keys) when the replica has them; None: read from the texts.
    keys: tuple[frozenset[str], frozenset[str]] | None = None


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
    doors: tuple[Door, ...] = ()  # the doors the actor came through (empty when not eligible)
    # It shares every theme of the need, or its own words answer the need (CONFIRMING_EVIDENCE); an
    # unconfirmed candidate must reach a stricter minimum (rules.kept).
    confirmed: bool = True
    # Its own words (or the service type that is the point) answer what the need asks, or the need's text is too
    # short to tell: a need none of whose candidates answers it gets no match (`rules.answered`).
    answers: bool = True

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


# The reason code that names each door in a match's reasons (the shared theme keeps the code it always had).
DOOR_REASON_CODES: dict[Door, str] = {
    Door.shared_theme: "themes",
    Door.related_theme: "related_theme",
    Door.text: "text",
    Door.service_type: "service_types",
}


def territory_name(code: str) -> str:
    """A territory as a reason names it: 'Rennes', 'Rennes Métropole' (its code when the INSEE data lacks it)."""
    found = territories.territory_named(code)
    return found.name if found else code


def coverage(
    need: NeedProfile, actor: ActorProfile, distance: float | None, themes: frozenset[str] | None = None
) -> Reason | None:
    """Why the actor may answer this need geographically, or None when it may not.

    An activity covers a place only for one of `themes` (default: the need's own; the related-theme door adds
    the actor's related themes).
    """
    themes = need.themes if themes is None else themes
    if actor.territories & need.perimeter:
        where = sorted(actor.territories & need.perimeter)[0]
        return Reason("perimeter", f"dans le périmètre du besoin ({territory_name(where)})")
    if need.perimeter_radius_km is not None and distance is not None and distance <= need.perimeter_radius_km:
        return Reason("perimeter", f"dans le rayon de {_km(need.perimeter_radius_km)} autour du lieu du besoin")
    for activity in actor.activities:
        if need.themes and activity.theme not in themes:
            continue  # an activity covers a place only for its own theme
        label = THEMES_BY_CODE[activity.theme].label if activity.theme in THEMES_BY_CODE else activity.theme
        if activity.area_kind == "national":
            return Reason("activity", f"intervient dans toute la France ({label})")
        if activity.area_kind == "territories" and activity.territories & need.place_codes:
            where = sorted(activity.territories & need.place_codes)[0]
            return Reason("activity", f"intervient sur {territory_name(where)} ({label})")
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


@dataclass(frozen=True)
class Evidence:
    """What the actor's own words say about the need: word evidence in [0, 1] and the matched terms' labels."""

    value: float = 0.0
    labels: tuple[str, ...] = ()  # terms found in its description or activities, concepts first
    body: float = 0.0  # the same without its name nor its public's words: what confirms a weak relation or a candidate
    # From its description and activities alone, its public's words included ("activités parents-enfants"): whether
    # it says it does what the need asks (`Result.answers`).
    said: float = 0.0


def text_evidence(need: NeedProfile, actor: ActorProfile) -> Evidence:
    """The actor's word evidence for the need (services.contracts.synonyms), none when the need has no query."""
    if need.query is None or not need.query.terms:
        return Evidence()
    if actor.keys is not None:
        matches = synonyms.matched_terms(need.query, *actor.keys)
    else:
        matches = synonyms.match_terms(need.query, actor.name, actor.body)
    in_body = [m for m in matches if m.in_body]
    # What confirms or qualifies a candidate leaves out the words that only name the need's public ("jeunes").
    confirming = synonyms.confirming(in_body, need.themes & relations.PUBLIC_THEMES)
    labels = tuple(m.label for m in in_body)
    return Evidence(
        synonyms.word_evidence(matches), labels, synonyms.word_evidence(confirming), synonyms.word_evidence(in_body)
    )


def evaluate(need: NeedProfile, actor: ActorProfile, weights: Weights = Weights()) -> Result:
    if actor.id == need.owner_id:
        return Result(0.0, [Reason("excluded", "c'est l'auteur du besoin")])
    kinds = eligible_kinds(need)
    if (kinds is not None and actor.kind not in kinds) or (kinds is None and actor.kind in DEFAULT_EXCLUDED_KINDS):
        label = ACTOR_KINDS_BY_CODE[actor.kind].label if actor.kind in ACTOR_KINDS_BY_CODE else actor.kind
        return Result(0.0, [Reason("excluded", f"type d'acteur non retenu ({label})")])
    shared_themes = need.themes & actor.themes
    evidence = text_evidence(need, actor)
    opened: list[Door] = []
    if not need.themes or shared_themes:
        opened.append(Door.shared_theme)
    related = relations.best_relation(need.themes, actor.themes) if weights.related_theme > 0 else None
    if related is not None and relations.related_door_opens(related[0], evidence.body):
        opened.append(Door.related_theme)
    if weights.text_door > 0 and synonyms.qualifies(evidence.body):
        opened.append(Door.text)
    door_services = doors.service_type_door(need.service_types, actor.service_types)
    if weights.service_type_door > 0 and door_services:
        opened.append(Door.service_type)
    if not opened:
        return Result(0.0, [Reason("excluded", "aucun thème en commun ni autre porte d'entrée")])
    distance = None
    if actor.lat is not None and actor.lon is not None:
        distance = distance_km(need.lat, need.lon, actor.lat, actor.lon)
    covering = need.themes
    if Door.related_theme in opened:  # its activities of a related theme cover places for it
        covering = need.themes | {t for t in actor.themes if any(relations.relation(n, t) for n in need.themes)}
    where = coverage(need, actor, distance, covering)
    if where is None:
        return Result(0.0, [Reason("excluded", "hors du périmètre et d'aucune zone d'intervention")])

    # The theme part: shared themes count 1 each; without one, the best credit of the doors the actor came
    # through, given to that door's reason.
    theme_value, theme_code = (
        relations.theme_credit(need.themes, actor.themes, 0.0),
        DOOR_REASON_CODES[Door.shared_theme],
    )
    texts: dict[str, str] = {}
    if shared_themes:
        texts["themes"] = doors.shared_theme_reason(shared_themes)
    if Door.related_theme in opened and related is not None:
        credit = relations.theme_credit(need.themes, actor.themes, weights.related_theme)
        texts["related_theme"] = doors.related_theme_reason(related[1], related[2])
        if credit > theme_value:  # a shared theme keeps naming the part; the related one adds to it
            theme_value, theme_code = credit, theme_code if shared_themes else "related_theme"
    if Door.text in opened and weights.text_door * evidence.body > theme_value:
        theme_value, theme_code = weights.text_door * evidence.body, "text"
    if Door.service_type in opened and weights.service_type_door > theme_value:
        theme_value, theme_code = weights.service_type_door, "service_types"

    parts: list[tuple[str, float, float, str | None]] = []  # code, weight, value in [0, 1], text
    parts.append((theme_code, weights.themes, theme_value, texts.get(theme_code)))
    shared_services = need.service_types & actor.service_types
    service_value = len(shared_services) / len(need.service_types) if need.service_types else 1.0
    service_text = doors.service_type_reason(shared_services) if shared_services else None
    parts.append(("service_types", weights.service_types, service_value, service_text))
    closeness = math.exp(-distance / weights.distance_scale_km) if distance is not None else 0.0
    parts.append(("distance", weights.distance, closeness, f"à {_km(distance)}" if distance is not None else None))
    # With the need's terms, the text part is the actor's word evidence, where a name alone counts little; the
    # full-text rank (name weighted A) is only the fallback of a profile without them.
    relevance = evidence.value if need.query is not None else max(0.0, min(1.0, actor.text_relevance))
    text = (
        doors.text_reason(evidence.labels)
        if evidence.labels
        else "description proche du besoin"
        if relevance >= 0.1
        else None
    )
    parts.append(("text", weights.text, relevance, text))
    if need.qpv_priority:
        in_qpv = actor.qpv_code is not None and actor.qpv_code.startswith(need.qpv_prefix)
        parts.append(("qpv", weights.qpv, 1.0 if in_qpv else 0.0, f"en QPV {actor.qpv_code}" if in_qpv else None))

    total_weight = sum(weight for _, weight, _, _ in parts) or 1.0
    value = sum(weight * v for _, weight, v, _ in parts) / total_weight
    # One reason per code: the theme part credited through the text or service-type door adds to that reason.
    shares: dict[str, float] = {}
    for code, weight, v, text in parts:
        if v > 0 and (text is not None or code in shares or code == theme_code):
            shares[code] = shares.get(code, 0.0) + weight * v / total_weight
        if text is not None:
            texts[code] = text
    if Door.related_theme in opened and not shared_themes and "related_theme" not in shares:
        shares["related_theme"] = 0.0  # it came through this door too, though another gave more
    reasons = [where]
    for code, share in sorted(shares.items(), key=lambda item: -item[1]):
        if code in texts:
            reasons.append(Reason(code, texts[code], share))
    confirmed = (bool(need.themes) and shared_themes == need.themes) or evidence.body >= CONFIRMING_EVIDENCE
    answers = (
        need.query is None
        or need.query.reach < JUDGED_REACH
        or evidence.said >= weights.answering
        or Door.service_type in opened
    )
    return Result(round(max(value, 1e-6), 4), reasons, tuple(opened), confirmed or need.query is None, answers)
