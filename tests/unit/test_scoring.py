"""The matching score: eligibility, coverage by activities, ranking and readable reasons (pure, no I/O)."""

from __future__ import annotations

import math

import pytest

from services.contracts.doors import Door
from services.contracts.synonyms import need_query
from services.contracts.territories import territories_of_commune
from services.matching import planner, rules
from services.matching.scoring import (
    Activity,
    ActorProfile,
    NeedProfile,
    Weights,
    distance_km,
    evaluate,
    qpv_prefix,
    score,
)

BESANCON = (47.2378, 6.0241)
PLACE = frozenset(territories_of_commune("25056"))


def need(**overrides: object) -> NeedProfile:
    values: dict[str, object] = {
        "id": "need-1",
        "owner_id": "authority-1",
        "themes": frozenset({"reemploi"}),
        "service_types": frozenset({"fourniture_biens"}),
        "place_codes": PLACE,
        "lat": BESANCON[0],
        "lon": BESANCON[1],
        "perimeter": frozenset({"COM-25056"}),
        "qpv_prefix": qpv_prefix("25"),
    }
    values.update(overrides)
    return NeedProfile(**values)  # type: ignore[arg-type]


def actor(commune: str = "25056", lat: float = 47.2500, lon: float = 6.0600, **overrides: object) -> ActorProfile:
    values: dict[str, object] = {
        "id": "actor-1",
        "name": "Ressourcerie",
        "kind": "association",
        "themes": frozenset({"reemploi"}),
        "service_types": frozenset({"fourniture_biens"}),
        "territories": frozenset(territories_of_commune(commune)),
        "lat": lat,
        "lon": lon,
    }
    values.update(overrides)
    return ActorProfile(**values)  # type: ignore[arg-type]


def test_the_ressourcerie_3_km_away_is_matched_with_readable_reasons() -> None:
    value, reasons = score(need(), actor())
    assert 0.5 < value <= 1
    codes = [r.code for r in reasons]
    assert codes[0] == "perimeter" and "themes" in codes and "distance" in codes
    distance_text = next(r.text for r in reasons if r.code == "distance")
    assert distance_text.startswith("à 3,") and distance_text.endswith(" km")
    assert any("Réemploi" in r.text for r in reasons if r.code == "themes")
    assert reasons[0].text == "dans le périmètre du besoin (Besançon)"  # its territory by name, not COM-25056


def test_an_activity_area_is_named_in_its_reason() -> None:
    area = Activity("reemploi", "fourniture_biens", "territories", frozenset({"EPCI-242500361"}))
    far = actor(commune="25462", lat=46.90, lon=6.35, activities=(area,))  # Pontarlier, active in Grand Besançon
    _, reasons = score(need(perimeter=frozenset()), far)
    assert reasons[0].code == "activity" and reasons[0].text.startswith("intervient sur CU Grand Besançon Métropole (")


def test_the_ressourcerie_80_km_away_is_not_matched() -> None:
    far = actor(commune="39300", lat=46.67, lon=5.55)  # Lons-le-Saunier, ~80 km
    assert 70 < distance_km(*BESANCON, 46.67, 5.55) < 90
    value, reasons = score(need(), far)
    assert value == 0 and reasons[0].code == "excluded"


def test_the_bike_workshop_next_door_is_not_matched_unless_an_activity_covers_the_need() -> None:
    bike = actor(themes=frozenset({"mobilite"}), service_types=frozenset({"prestation_service"}))
    assert score(need(), bike)[0] == 0
    reuse = Activity("reemploi", "fourniture_biens", "radius", radius_km=10)
    bike_with_reuse = actor(
        commune="25058", themes=frozenset({"mobilite", "reemploi"}), activities=(reuse,)
    )  # Beure: outside the commune perimeter, reached by its 10 km activity
    value, reasons = score(need(), bike_with_reuse)
    assert value > 0 and reasons[0].code == "activity" and "rayon" in reasons[0].text


def test_an_activity_covers_a_place_only_for_its_own_theme() -> None:
    other = Activity("mobilite", "prestation_service", "national")
    outsider = actor(
        commune="75056", lat=48.85, lon=2.35, themes=frozenset({"reemploi", "mobilite"}), activities=(other,)
    )
    assert score(need(), outsider)[0] == 0
    national = Activity("reemploi", "fourniture_biens", "national")
    value, reasons = score(need(), actor(commune="75056", lat=48.85, lon=2.35, activities=(national,)))
    assert value > 0 and "toute la France" in reasons[0].text


def test_a_need_on_an_epci_reaches_actors_of_its_member_communes() -> None:
    epci = next(code for code in PLACE if code.startswith("EPCI-"))
    neighbour = actor(commune="25058", lat=47.2100, lon=5.9990)  # Beure, in Grand Besançon Métropole
    assert score(need(perimeter=frozenset({epci})), neighbour)[0] > 0
    assert score(need(perimeter=frozenset({"COM-25056"})), neighbour)[0] == 0


def test_a_radius_perimeter_reaches_actors_within_it() -> None:
    neighbour = actor(commune="25058", lat=47.2100, lon=5.9990)
    assert score(need(perimeter=frozenset(), perimeter_radius_km=10.0), neighbour)[0] > 0
    assert score(need(perimeter=frozenset(), perimeter_radius_km=1.0), neighbour)[0] == 0


def test_kinds_the_owner_and_authorities_are_excluded() -> None:
    assert score(need(eligible_kinds=frozenset({"siae"})), actor())[0] == 0
    assert score(need(eligible_kinds=frozenset({"siae"})), actor(kind="siae"))[0] > 0
    assert score(need(), actor(kind="local_authority"))[0] == 0
    assert score(need(), actor(id="authority-1"))[0] == 0


def test_closer_and_more_relevant_actors_rank_higher() -> None:
    near, far = actor(lat=47.24, lon=6.03), actor(lat=47.30, lon=6.10)
    assert score(need(), near)[0] > score(need(), far)[0]
    assert score(need(), actor(text_relevance=0.6))[0] > score(need(), actor(text_relevance=0.0))[0]
    both = actor(service_types=frozenset({"fourniture_biens", "formation"}))
    none = actor(service_types=frozenset({"formation"}))
    assert score(need(), both)[0] > score(need(), none)[0]


def test_the_qpv_bonus_counts_only_when_the_need_asks_for_it() -> None:
    in_qpv, outside = actor(qpv_code="QN02502M"), actor()
    assert score(need(), in_qpv)[0] == score(need(), outside)[0]
    asked = need(qpv_priority=True)
    value, reasons = score(asked, in_qpv)
    assert value > score(asked, outside)[0]
    assert any(r.code == "qpv" and "QN02502M" in r.text for r in reasons)
    elsewhere = actor(qpv_code="QN04501M")  # a QPV of Orléans is no reason to favour it for Besançon
    assert score(asked, elsewhere)[0] == score(asked, outside)[0]
    assert qpv_prefix("2A") == "QN02A" and qpv_prefix("974") == "QN974"


def test_weights_change_the_score_and_reasons_carry_their_share() -> None:
    result = evaluate(need(), actor())
    shares = sum(r.weight for r in result.reasons)
    assert abs(shares - result.score) < 0.01
    distance_only = Weights(themes=0, service_types=0, distance=1, text=0, qpv=0, distance_scale_km=15)
    closeness = math.exp(-distance_km(*BESANCON, 47.25, 6.06) / 15)
    assert abs(evaluate(need(), actor(), distance_only).score - closeness) < 1e-3


def test_reach_km_bounds_the_closeness_a_group_needs() -> None:
    closeness, scale = 0.25, 15.0
    assert planner.reach_km(0.5, -math.inf, closeness, scale) == math.inf
    assert planner.reach_km(0.5, 0.5, closeness, scale) == math.inf  # reached without closeness: anywhere
    assert planner.reach_km(0.5, 0.5 + closeness + 0.01, closeness, scale) < 0  # not even at distance 0
    # Closeness halves every ln 2 scales: half of it is still reached up to there, not beyond.
    assert planner.reach_km(0.5, 0.5 + closeness / 2, closeness, scale) == pytest.approx(scale * math.log(2), rel=1e-6)


# --- the doors of issue 23 ----------------------------------------------------------------------------------


def worded(title: str, description: str = "", **overrides: object) -> NeedProfile:
    """A need with its words (the profile the planner builds), for the text evidence."""
    service_types = overrides.get("service_types", frozenset({"fourniture_biens"}))
    assert isinstance(service_types, frozenset)
    return need(query=need_query(title, description, service_types), **overrides)


def test_a_related_theme_opens_a_door_named_in_the_reasons_at_a_fraction_of_a_shared_one() -> None:
    asked = worded("Une ressourcerie pour le quartier")
    circular = actor(themes=frozenset({"economie_circulaire"}))
    result = evaluate(asked, circular)
    assert result.eligible and result.doors == (Door.related_theme,)
    assert any(r.code == "related_theme" and r.text.startswith("thème voisin : ") for r in result.reasons)
    assert 0 < result.score < evaluate(asked, actor()).score <= 1
    closed = Weights(related_theme=0.0)
    assert evaluate(asked, circular, closed).score == 0  # its weight at 0 closes the door


def test_a_weak_relation_needs_the_actors_own_words() -> None:
    asked = worded("Une ressourcerie", "Collecte et revente d'objets")
    insertion = actor(themes=frozenset({"iae"}), body="Chantier d'insertion : menuiserie")  # iae ↔ réemploi: 0.5
    assert evaluate(asked, insertion).score == 0
    confirmed = actor(themes=frozenset({"iae"}), body="Atelier d'insertion : collecte et revente d'objets")
    assert evaluate(asked, confirmed).doors == (Door.related_theme,)


def test_the_actors_own_words_open_the_text_door_but_its_name_alone_does_not() -> None:
    asked = worded("Une ressourcerie pour le quartier")
    by_words = actor(themes=frozenset({"culture"}), body="Recyclerie associative : dons, tri et revente")
    result = evaluate(asked, by_words)
    assert result.doors == (Door.text,)
    assert any(r.code == "text" and r.text.startswith("ses activités : ressourcerie") for r in result.reasons)
    trap = actor(name="La Ressourcerie des Idées", themes=frozenset({"culture"}), body="Incubateur de projets")
    assert evaluate(asked, trap).score == 0
    assert evaluate(asked, by_words, Weights(text_door=0.0)).score == 0


def test_premises_open_the_service_type_door_whatever_the_themes() -> None:
    asked = worded("Des locaux pour une épicerie", service_types=frozenset({"mise_a_disposition_locaux"}))
    tiers_lieu = actor(themes=frozenset({"culture"}), service_types=frozenset({"mise_a_disposition_locaux"}))
    result = evaluate(asked, tiers_lieu)
    assert Door.service_type in result.doors and 0 < result.score <= 1
    assert any(r.code == "service_types" and "locaux" in r.text for r in result.reasons)
    assert evaluate(asked, tiers_lieu, Weights(service_type_door=0.0)).score == 0
    training = worded("Former des bénévoles", service_types=frozenset({"formation"}))  # not a door on its own
    assert evaluate(training, actor(themes=frozenset({"culture"}), service_types=frozenset({"formation"}))).score == 0


def test_doors_keep_the_hard_rules() -> None:
    asked = worded("Une ressourcerie pour le quartier")
    by_words = actor(themes=frozenset({"culture"}), body="Recyclerie associative")
    assert evaluate(need(query=asked.query, eligible_kinds=frozenset({"siae"})), by_words).score == 0
    far = actor(commune="39300", lat=46.67, lon=5.55, themes=frozenset({"culture"}), body="Recyclerie associative")
    assert evaluate(asked, far).score == 0
    assert evaluate(asked, actor(kind="local_authority", themes=frozenset({"economie_circulaire"}))).score == 0


def test_an_unconfirmed_candidate_meets_the_stricter_minimum() -> None:
    asked = worded("Un centre de santé dentaire", themes=frozenset({"sante", "vieillissement"}))
    partial = evaluate(asked, actor(themes=frozenset({"sante"}), body="Activité physique adaptée"))
    assert partial.eligible and not partial.confirmed
    assert rules.kept(partial, 0.35) and not rules.kept(partial, 0.35, 0.99)
    worded_actor = evaluate(asked, actor(themes=frozenset({"sante"}), body="Centre dentaire mutualiste"))
    assert worded_actor.confirmed and rules.kept(worded_actor, 0.35, 0.99)


def test_an_actor_sharing_only_the_needs_public_is_not_confirmed_by_naming_it() -> None:
    asked = worded(
        "Un garage solidaire pour les jeunes",
        "Réparer des scooters et louer des deux-roues aux jeunes",
        themes=frozenset({"mobilite", "jeunesse"}),
        service_types=frozenset({"prestation_service"}),
    )
    venue = actor(
        themes=frozenset({"jeunesse", "culture"}),
        service_types=frozenset({"prestation_service"}),
        body="Scène de musiques actuelles : concerts et studios pour les jeunes groupes",
    )
    garage = actor(
        id="actor-2",
        themes=frozenset({"mobilite"}),
        service_types=frozenset({"prestation_service"}),
        body="Atelier de réparation de scooters",
    )
    result = evaluate(asked, venue)
    assert result.eligible and not result.confirmed  # "jeunes" says whom it serves, not that it repairs scooters
    assert not rules.kept(result, 0.35, 0.63)
    assert evaluate(asked, garage).confirmed
    # The job shared counts twice the public shared.
    assert evaluate(asked, garage).score > result.score


def test_a_need_that_says_what_it_asks_is_answered_only_by_words_or_the_service_type_that_is_its_point() -> None:
    dental = worded(
        "Un centre de santé dentaire",
        "Ouvrir un centre de santé dentaire avec des dentistes salariés",
        themes=frozenset({"sante"}),
    )
    assert dental.query is not None and dental.query.reach == 1.0  # four distinctive words or more: it says it
    club = evaluate(dental, actor(themes=frozenset({"sante"}), body="Activité physique adaptée sur prescription"))
    insurer = evaluate(dental, actor(themes=frozenset({"sante"}), body="Complémentaire santé et prévention"))
    assert club.eligible and insurer.eligible and club.confirmed  # a shared theme: matched, were it not for the rule
    assert not club.answers and not insurer.answers  # "santé" once: one word, the theme's own
    assert not rules.answered([club, insurer])
    clinic = evaluate(dental, actor(themes=frozenset({"sante"}), body="Centre dentaire : dentistes et soins"))
    assert clinic.answers and rules.answered([club, insurer, clinic])
    assert evaluate(dental, actor(themes=frozenset({"sante"}), body="Club"), Weights(answering=0.0)).answers
    # A name is no answer: the name trap stays unanswered however many words its name shares.
    named = actor(name="Centre de santé dentaire des Coteaux", themes=frozenset({"sante"}), body="Club de sport")
    assert not evaluate(dental, named).answers


def test_a_short_need_or_a_premises_need_is_answered_by_its_candidates_as_before() -> None:
    short = worded("Santé", themes=frozenset({"sante"}))
    assert short.query is not None and short.query.reach < 1.0  # too few words to tell what it asks
    assert evaluate(short, actor(themes=frozenset({"sante"}), body="Club de sport")).answers
    assert evaluate(need(themes=frozenset({"sante"})), actor(themes=frozenset({"sante"}))).answers  # no query
    premises = worded(
        "Des locaux pour une épicerie",
        "Un local de quartier, une chambre froide et un quai de livraison",
        service_types=frozenset({"mise_a_disposition_locaux"}),
    )
    hall = actor(themes=frozenset({"culture"}), service_types=frozenset({"mise_a_disposition_locaux"}), body="Salle")
    result = evaluate(premises, hall)
    assert Door.service_type in result.doors and result.answers  # offering premises is the answer


def test_the_needs_public_named_in_an_actors_own_words_says_it_answers() -> None:
    families = worded(
        "Animations pour les familles",
        "Activités parents-enfants et éducation populaire le mercredi et pendant les vacances",
        themes=frozenset({"education_populaire", "enfance_parentalite"}),
    )
    centre = actor(
        themes=frozenset({"education_populaire", "enfance_parentalite"}),
        body="Centre social : activités parents-enfants, sorties familiales",
    )
    assert evaluate(families, centre).answers  # "parents" and "enfants": what the need asks, for whom it asks it


def test_a_newcomer_joins_a_need_without_matches_only_if_it_answers_it() -> None:
    dental = worded("Un centre de santé dentaire", "Des dentistes salariés aux Coteaux", themes=frozenset({"sante"}))
    club = evaluate(dental, actor(themes=frozenset({"sante"}), body="Activité physique adaptée"))
    clinic = evaluate(dental, actor(themes=frozenset({"sante"}), body="Centre dentaire mutualiste"))
    assert not rules.joins_unmatched(club, has_matches=False) and rules.joins_unmatched(club, has_matches=True)
    assert rules.joins_unmatched(clinic, has_matches=False)
