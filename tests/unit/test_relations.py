"""The theme relation graph: well formed, symmetric, the field's expected neighbours, and its pure helpers."""

from __future__ import annotations

import re

import pytest

from services.contracts import relations
from services.contracts.relations import (
    CONFIRM_BELOW,
    PUBLIC_THEME_WEIGHT,
    RELATIONS,
    RELATIONS_BY_THEME,
    Relation,
    best_relation,
    neighbours,
    related,
    related_door_opens,
    theme_credit,
    theme_weights,
)
from services.contracts.vocabularies import THEMES_BY_CODE


class TestTheGraphIsWellFormed:
    def test_every_code_is_a_theme_and_every_theme_is_indexed(self) -> None:
        assert set(RELATIONS_BY_THEME) == set(THEMES_BY_CODE)
        for edge in RELATIONS:
            assert edge.a in THEMES_BY_CODE, edge
            assert edge.b in THEMES_BY_CODE, edge

    def test_weights_are_in_zero_one(self) -> None:
        for edge in RELATIONS:
            assert 0 < edge.weight <= 1, edge

    def test_symmetric(self) -> None:
        for theme in THEMES_BY_CODE:
            for other, weight in related(theme).items():
                assert related(other)[theme] == weight, (theme, other)

    def test_no_loops_nor_repeats(self) -> None:
        pairs = [frozenset((edge.a, edge.b)) for edge in RELATIONS]
        assert all(len(pair) == 2 for pair in pairs)
        assert len(set(pairs)) == len(pairs)

    def test_every_edge_has_a_french_reason(self) -> None:
        for edge in RELATIONS:
            assert len(edge.reason.split()) >= 3, edge

    @pytest.mark.parametrize(
        ("bad", "message"),
        [
            (Relation("reemploi", "nope", 0.5, "une raison valable"), "unknown theme code nope"),
            (Relation("reemploi", "reemploi", 0.5, "une raison valable"), "not its own neighbour"),
            (Relation("reemploi", "reparation", 0.0, "une raison valable"), "not in (0, 1]"),
            (Relation("reemploi", "reparation", 1.5, "une raison valable"), "not in (0, 1]"),
            (Relation("reemploi", "reparation", 0.5, " "), "no reason"),
        ],
    )
    def test_a_bad_edge_is_refused_naming_it(self, bad: Relation, message: str) -> None:
        with pytest.raises(ValueError, match=re.escape(message)):
            relations._index([bad])

    def test_an_edge_given_twice_even_reversed_is_refused(self) -> None:
        with pytest.raises(ValueError, match="given twice"):
            relations._index(
                [Relation("reemploi", "reparation", 0.5, "une raison"), Relation("reparation", "reemploi", 0.6, "idem")]
            )


class TestTheFieldsNeighbours:
    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("reemploi", "reparation"),
            ("reparation", "economie_circulaire"),
            ("reemploi", "economie_circulaire"),
            ("numerique", "mediation_numerique"),
            ("mediation_numerique", "acces_aux_droits"),
            ("agriculture_urbaine", "circuits_courts"),
            ("circuits_courts", "alimentation_durable"),
            ("alimentation_durable", "solidarite_alimentaire"),
            ("mobilite", "emploi_formation"),
            ("iae", "emploi_formation"),
            ("iae", "reemploi"),
        ],
    )
    def test_related_both_ways(self, a: str, b: str) -> None:
        assert b in related(a)
        assert a in related(b)

    @pytest.mark.parametrize(
        ("a", "b"),
        [
            ("numerique", "acces_aux_droits"),  # not transitive: repairing computers is no legal aid
            ("culture", "agriculture_urbaine"),  # the "Jardins de la Culture" theatre trap
            ("sport", "jeunesse"),  # co-occur, but a sports club is no answer to every youth need
            ("iae", "handicap"),  # reserved markets tell SIAE and EA / ESAT apart
        ],
    )
    def test_no_noisy_edge(self, a: str, b: str) -> None:
        assert b not in related(a)

    def test_same_field_under_two_names_is_closer_than_a_bridge(self) -> None:
        assert related("reemploi")["economie_circulaire"] > related("reemploi")["iae"]

    def test_unknown_theme_has_no_neighbours(self) -> None:
        assert related("nope") == {}


class TestBestRelation:
    def test_the_planoise_recyclerie(self) -> None:
        # declared "économie circulaire" only, asked for "réemploi"
        assert best_relation({"reemploi"}, {"economie_circulaire"}) == (0.9, "reemploi", "economie_circulaire")

    def test_strongest_edge_wins(self) -> None:
        found = best_relation({"reemploi", "economie_circulaire"}, {"iae", "reparation"})
        assert found == (0.8, "reemploi", "reparation")

    def test_shared_theme_is_not_a_relation(self) -> None:
        assert best_relation({"culture"}, {"culture"}) is None

    def test_unrelated(self) -> None:
        assert best_relation({"culture"}, {"agriculture_urbaine", "sport"}) is None
        assert best_relation(set(), {"reemploi"}) is None

    def test_ties_are_stable(self) -> None:
        # reemploi ↔ iae 0.5 and economie_circulaire ↔ environnement 0.5: the first need theme in code order
        assert best_relation({"reemploi", "economie_circulaire"}, {"iae", "environnement"}) == (
            0.5,
            "economie_circulaire",
            "environnement",
        )


class TestNeighbours:
    def test_union_without_the_needs_own_themes_strongest_weight(self) -> None:
        found = neighbours({"reemploi", "reparation"})
        assert "reemploi" not in found
        assert "reparation" not in found
        assert found["economie_circulaire"] == 0.9  # max(0.9 via réemploi, 0.7 via réparation)
        assert list(found) == sorted(found)

    def test_min_weight(self) -> None:
        assert set(neighbours({"reemploi"}, min_weight=0.8)) == {"economie_circulaire", "reparation"}


class TestThemeCredit:
    def test_without_relations_it_is_the_shared_fraction(self) -> None:
        assert theme_credit({"reemploi", "reparation"}, {"reemploi", "culture"}, 0.0) == 0.5

    def test_a_public_beside_a_job_counts_half(self) -> None:
        # "Un garage solidaire pour les jeunes": mobilité is the job, jeunesse the public.
        asked = {"mobilite", "jeunesse"}
        assert theme_weights(asked) == {"mobilite": 1.0, "jeunesse": PUBLIC_THEME_WEIGHT}
        assert theme_credit(asked, {"mobilite"}, 0.0) == pytest.approx(1 / 1.5)
        assert theme_credit(asked, {"jeunesse", "sport"}, 0.0) == pytest.approx(0.5 / 1.5)
        assert theme_credit(asked, {"mobilite", "jeunesse"}, 0.0) == 1.0
        # Alone, or beside another public, a public is the job: every theme counts whole.
        assert theme_weights({"jeunesse"}) == {"jeunesse": 1.0}
        assert theme_credit({"jeunesse", "vieillissement"}, {"jeunesse"}, 0.0) == 0.5

    def test_related_counts_at_a_fraction(self) -> None:
        assert theme_credit({"reemploi"}, {"economie_circulaire"}, 0.5) == pytest.approx(0.45)

    def test_shared_beats_related(self) -> None:
        shared = theme_credit({"reemploi"}, {"reemploi"}, 1.0)
        close = theme_credit({"reemploi"}, {"economie_circulaire"}, 1.0)
        assert shared == 1.0
        assert close < shared

    def test_stays_in_zero_one_whatever_the_factor(self) -> None:
        need = {"reemploi", "iae"}
        actor = {"economie_circulaire", "emploi_formation"}
        for factor in (-1.0, 0.0, 0.3, 1.0, 7.0):
            assert 0.0 <= theme_credit(need, actor, factor) <= 1.0

    def test_need_without_themes(self) -> None:
        assert theme_credit(set(), {"culture"}, 0.5) == 1.0

    def test_unrelated_gets_nothing(self) -> None:
        assert theme_credit({"culture"}, {"agriculture_urbaine"}, 1.0) == 0.0


class TestRelatedDoor:
    def test_a_close_edge_opens_alone(self) -> None:
        assert related_door_opens(related("reemploi")["economie_circulaire"], 0.0)

    def test_a_bridge_needs_the_actors_words(self) -> None:
        bridge = related("iae")["reemploi"]
        assert bridge < CONFIRM_BELOW
        assert not related_door_opens(bridge, 0.0)
        assert related_door_opens(bridge, 0.25)

    def test_no_edge_no_door(self) -> None:
        assert not related_door_opens(0.0, 1.0)
