"""The doors' names and the French reasons shown to users."""

from __future__ import annotations

from typing import Any

from services.contracts.doors import (
    DOOR_LABELS,
    Door,
    activities_text,
    join_labels,
    related_theme_reason,
    service_type_door,
    service_type_reason,
    shared_theme_reason,
    text_reason,
)
from services.contracts.synonyms import concepts_of


def test_every_door_has_a_label_and_plain_string_values() -> None:
    assert set(DOOR_LABELS) == set(Door)
    assert [str(door) for door in Door] == ["shared_theme", "related_theme", "text", "service_type"]


def test_reasons_read_as_the_issue_writes_them() -> None:
    assert shared_theme_reason({"reemploi"}) == "thème partagé : Réemploi et ressourceries"
    assert (
        shared_theme_reason({"reparation", "reemploi"}) == "thèmes partagés : Réemploi et ressourceries et Réparation"
    )
    assert (
        related_theme_reason("reemploi", "economie_circulaire")
        == "thème voisin : Économie circulaire et déchets (proche de Réemploi et ressourceries)"
    )
    assert (
        text_reason(["ressourcerie", "seconde main", "ressourcerie"]) == "ses activités : ressourcerie et seconde main"
    )
    assert service_type_reason({"mise_a_disposition_locaux"}) == "propose : mise à disposition de locaux"


def test_text_reason_stays_short() -> None:
    assert text_reason(["a", "b", "c", "d", "e"]) == "ses activités : a, b et c"


def test_join_labels() -> None:
    assert join_labels([]) == ""
    assert join_labels(["a"]) == "a"
    assert join_labels(["a", "b"]) == "a et b"


def test_service_type_door_opens_for_premises_only() -> None:
    premises = {"mise_a_disposition_locaux"}
    assert service_type_door(premises, {"mise_a_disposition_locaux", "formation"}) == premises
    assert service_type_door(premises, {"formation"}) == frozenset()
    assert service_type_door({"prestation_service"}, {"prestation_service"}) == frozenset()


def test_activities_become_words_the_text_door_reads() -> None:
    activities: list[dict[str, Any]] = [
        {"theme": "reemploi", "service_type": "fourniture_biens", "area": {"kind": "national"}},
        {"theme": "reemploi", "service_type": "mise_a_disposition_locaux"},
        {"theme": None},
    ]
    text = activities_text(activities)
    assert text == "Réemploi et ressourceries ; Fourniture de biens ; Mise à disposition de locaux"
    assert "ressourcerie" in concepts_of(text)
    assert activities_text([]) == ""
