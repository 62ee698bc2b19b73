"""The doors through which an actor becomes a candidate of a need, and the French reasons that name them.

Design. A candidate used to need a theme in common with the need. Now it comes through one or more doors, and
each match says which (the demo-needs test asserts that every top-5 actor names its door):

- `shared_theme`: it declared one of the need's themes ("thème partagé : Réemploi et ressourceries");
- `related_theme`: it declared a neighbour of one (services.contracts.relations), "thème voisin : …";
- `text`: its own words, description and activities, name the need's concepts or enough of its words
  (services.contracts.synonyms), "ses activités : ressourcerie, seconde main";
- `service_type`: it offers the service type that is the point of the need, whatever its themes (premises),
  "propose : mise à disposition de locaux".

Kind eligibility, perimeters and the archived status are not doors: they stay hard rules applied to every
door. The order of `Door` is the order in which reasons are listed when an actor came through several.
Pure functions, no I/O; the matching service turns (door, text) into its own `Reason`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from enum import StrEnum
from typing import Any

from services.contracts.vocabularies import SERVICE_TYPES_BY_CODE, THEMES_BY_CODE, Term


class Door(StrEnum):
    """A way in; a StrEnum, so that a match's stored reasons carry plain strings."""

    shared_theme = "shared_theme"
    related_theme = "related_theme"
    text = "text"
    service_type = "service_type"


# The short name of each door as the console shows it next to a match.
DOOR_LABELS: dict[Door, str] = {
    Door.shared_theme: "thème partagé",
    Door.related_theme: "thème voisin",
    Door.text: "ses activités",
    Door.service_type: "propose",
}
# The service types that are the point of a need on their own: a need asking for one reaches actors offering it
# whatever their themes. Only premises: a "prestation de service" or "formation" says nothing without a theme.
DOOR_SERVICE_TYPES = frozenset({"mise_a_disposition_locaux"})
MAX_TEXT_LABELS = 3  # a reason stays one short line


def _label(code: str, vocabulary: dict[str, Term]) -> str:
    return vocabulary[code].label if code in vocabulary else code


def join_labels(labels: Sequence[str]) -> str:
    """ "a", "a et b", "a, b et c" (French enumeration)."""
    if len(labels) <= 1:
        return "".join(labels)
    return ", ".join(labels[:-1]) + " et " + labels[-1]


def shared_theme_reason(codes: Collection[str]) -> str:
    """'thème partagé : Réemploi et ressourceries' ('thèmes partagés' for several)."""
    names = [_label(code, THEMES_BY_CODE) for code in sorted(codes)]
    head = "thèmes partagés" if len(names) > 1 else DOOR_LABELS[Door.shared_theme]
    return f"{head} : {join_labels(names)}"


def related_theme_reason(need_theme: str, actor_theme: str) -> str:
    """'thème voisin : Économie circulaire et déchets (proche de Réemploi et ressourceries)'."""
    actor_label = _label(actor_theme, THEMES_BY_CODE)
    need_label = _label(need_theme, THEMES_BY_CODE)
    return f"{DOOR_LABELS[Door.related_theme]} : {actor_label} (proche de {need_label})"


def text_reason(labels: Iterable[str]) -> str:
    """'ses activités : ressourcerie, seconde main et réparation' (the first few matched terms, no repeats)."""
    kept = list(dict.fromkeys(label for label in labels if label))[:MAX_TEXT_LABELS]
    return f"{DOOR_LABELS[Door.text]} : {join_labels(kept)}"


def service_type_reason(codes: Collection[str]) -> str:
    """'propose : mise à disposition de locaux' (as scoring writes its service-type reason)."""
    names = [_label(code, SERVICE_TYPES_BY_CODE).lower() for code in sorted(codes)]
    return f"{DOOR_LABELS[Door.service_type]} : {join_labels(names)}"


def service_type_door(need_service_types: Collection[str], actor_service_types: Collection[str]) -> frozenset[str]:
    """The need's door service types that the actor offers (empty: this door is closed for the pair)."""
    return frozenset(DOOR_SERVICE_TYPES & set(need_service_types) & set(actor_service_types))


def activities_text(activities: Iterable[dict[str, Any]]) -> str:
    """An actor's activities in words (their themes' and service types' labels), for its full-text document.

    Activities carry codes only; their labels ("Réemploi et ressourceries", "Mise à disposition de locaux")
    are the words the text door can read, weighted like the description.
    """
    labels: dict[str, None] = {}
    for activity in activities:
        theme, service_type = activity.get("theme"), activity.get("service_type")
        if isinstance(theme, str):
            labels[_label(theme, THEMES_BY_CODE)] = None
        if isinstance(service_type, str):
            labels[_label(service_type, SERVICE_TYPES_BY_CODE)] = None
    return " ; ".join(labels)
