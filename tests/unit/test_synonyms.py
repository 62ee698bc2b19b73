"""The field's synonyms: concepts found in texts, need queries safe to hand to to_tsquery, and word evidence."""

from __future__ import annotations

import re
from dataclasses import replace

import pytest

from bench.quality import load_set
from services.contracts.synonyms import (
    CONCEPT_WEIGHT,
    GROUPS_BY_KEY,
    KEYS_VERSION,
    MAX_WORDS,
    NAME_ONLY_FACTOR,
    SYNONYMS,
    WORD_WEIGHT,
    QueryTerm,
    TermMatch,
    concepts_of,
    confirming,
    keys_version,
    match_terms,
    matched_terms,
    need_query,
    normalise,
    qualifies,
    search_tsquery,
    word_evidence,
    words,
)
from services.contracts.vocabularies import SERVICE_TYPES_BY_CODE
from services.matching import store

# A tsquery operand as need_query writes it: letters and digits (and spaces) in quotes, optionally weighted.
OPERAND = re.compile(r"'[^\W_]+(?: [^\W_]+)*'(?::[ABCD]+)?")


def operands_only(tsquery: str) -> bool:
    """True when the text is only quoted operands joined by | and parentheses: nothing a user wrote as syntax."""
    rest = OPERAND.sub("X", tsquery)
    return re.fullmatch(r"[X|() ]*", rest) is not None


class TestTheGroups:
    def test_keys_are_unique_and_service_types_valid(self) -> None:
        assert len(GROUPS_BY_KEY) == len(SYNONYMS)
        for group in SYNONYMS:
            assert group.service_type is None or group.service_type in SERVICE_TYPES_BY_CODE

    @pytest.mark.parametrize(
        ("a", "b", "key"),
        [
            ("une ressourcerie", "la recyclerie du quartier", "ressourcerie"),
            ("un garage solidaire", "garage associatif", "garage_solidaire"),
            ("un tiers-lieu", "un fablab et un espace de coworking", "tiers_lieu"),
            ("épicerie solidaire", "banque alimentaire", "aide_alimentaire"),
            ("épiceries solidaires", "l'aide alimentaire", "aide_alimentaire"),
            ("un chantier d'insertion", "ACI", "chantier_insertion"),
            ("atelier vélo", "vélo-école", "atelier_velo"),
            ("des ateliers vélos", "atelier de réparation de vélos", "atelier_velo"),
            ("médiation numérique", "conseillers numériques", "mediation_numerique"),
            ("EPN", "espace public numérique", "mediation_numerique"),
            ("jardins partagés", "ferme urbaine", "jardin_partage"),
            ("agriculture urbaine", "micro-ferme", "jardin_partage"),
            ("repair café", "café bricole", "repair_cafe"),
            ("location de salles", "mise à disposition de locaux", "locaux"),
        ],
    )
    def test_synonyms_name_the_same_concept(self, a: str, b: str, key: str) -> None:
        assert key in concepts_of(a)
        assert key in concepts_of(b)

    @pytest.mark.parametrize(
        "text",
        [
            "Compagnie de théâtre : spectacles en salle",  # a stage, not premises to lend
            "Paniers de légumes locaux",  # local produce, not premises
            "Le Garage, salle de concerts",  # a garage, not a garage solidaire
            "Les Jardins de la Culture, compagnie de théâtre",  # a name, not a garden
        ],
    )
    def test_look_alikes_are_not_concepts(self, text: str) -> None:
        assert not concepts_of(text) & {"locaux", "garage_solidaire", "jardin_partage"}

    def test_accents_case_plurals_and_ligatures_do_not_matter(self) -> None:
        assert concepts_of("RESSOURCERIES") == concepts_of("ressourcerie") == {"ressourcerie"}
        assert normalise("Locaux") == normalise("local")
        assert normalise("cœur") == normalise("coeur")
        decomposed = "re\u0301emploi"  # é as e + combining accent
        assert words(decomposed) == ["réemploi"]


class TestNeedQuery:
    def test_concepts_first_then_distinctive_words(self) -> None:
        query = need_query("Une ressourcerie pour Planoise", "Ateliers de réemploi ouverts aux habitants")
        assert query.terms[0].key == "ressourcerie"
        assert query.terms[0].concept
        assert query.terms[0].weight == CONCEPT_WEIGHT
        keys = [term.key for term in query.terms[1:]]
        assert "planoise" in keys
        assert "reemploi" in keys
        assert "habitant" not in keys  # generic to every need
        assert "pour" not in keys  # a function word
        assert all(term.weight == WORD_WEIGHT for term in query.terms[1:])

    def test_multi_word_synonyms_are_phrases(self) -> None:
        tsquery = need_query("Un garage solidaire").tsquery()
        assert tsquery is not None
        assert "'garage associatif'" in tsquery  # one quoted operand: to_tsquery makes it 'garag' <-> 'associ'
        assert "'garages associatifs'" in tsquery  # PostgreSQL's stemmer does not always join the plural

    def test_the_words_of_a_found_phrase_are_not_terms_again(self) -> None:
        keys = [term.key for term in need_query("Un garage solidaire pour les jeunes").terms]
        assert "garage" not in keys
        assert keys == ["garage_solidaire", "jeune"]

    def test_a_premises_need_names_premises_whatever_its_words(self) -> None:
        plain = need_query("Un lieu pour les jeunes")
        premises = need_query("Un lieu pour les jeunes", service_types=["mise_a_disposition_locaux"])
        assert "locaux" not in plain.concepts
        assert "locaux" in premises.concepts

    def test_labels_restrict_to_weights(self) -> None:
        term = need_query("ressourcerie").terms[0]
        assert term.tsquery("BC").startswith("'ressourcerie':BC | ")
        with pytest.raises(ValueError, match="labels"):
            term.tsquery("B'|!")

    @pytest.mark.parametrize(
        "hostile",
        [
            "'; DROP TABLE actors; --",
            "!recyclerie | !garage & (x:*) <-> y <2> z",
            "a'b''c\\'d\\\\ \"quoted\"",
            "*:* :A :BCD !!!! &&&& |||| ((((",
            "\x00\x01 ressourcerie\u200b\ufeff",
            "x" * 5000,
            "mot " * 10_000,
            "ressourcerie " + "word " * 50_000,
        ],
    )
    def test_hostile_text_yields_only_quoted_operands(self, hostile: str) -> None:
        query = need_query(hostile, hostile)
        tsquery = query.tsquery()
        if tsquery is not None:
            assert operands_only(tsquery), tsquery
            assert "!" not in tsquery
            assert ":*" not in tsquery
        assert len(query.terms) <= MAX_WORDS + len(SYNONYMS)

    def test_no_words_means_no_query(self) -> None:
        assert need_query("", "").tsquery() is None
        assert need_query("!!! & |", "() :*").tsquery() is None
        assert need_query("le la les", "de des du").tsquery() is None
        assert need_query("Une salle de sport").concept_tsquery() is None

    def test_word_budget(self) -> None:
        text = " ".join(f"mot{chr(97 + i // 26)}{chr(97 + i % 26)}" for i in range(200))
        assert len(need_query(text).terms) == MAX_WORDS

    def test_a_term_is_its_alternatives_or_ed(self) -> None:
        term = QueryTerm("x", "x", 1.0, (("atelier", "vélo"), ("ateliers", "vélos")))
        assert term.tsquery() == "'atelier vélo' | 'ateliers vélos'"


class TestWordEvidence:
    def test_a_concept_in_the_description_qualifies(self) -> None:
        evidence = word_evidence([TermMatch(CONCEPT_WEIGHT, in_body=True)])
        assert evidence == 1.0
        assert qualifies(evidence)

    def test_a_name_alone_is_weak_however_many_words(self) -> None:
        name_only = [TermMatch(CONCEPT_WEIGHT, in_body=False, in_name=True) for _ in range(5)]
        evidence = word_evidence(name_only)
        assert evidence == pytest.approx(NAME_ONLY_FACTOR)
        assert not qualifies(evidence)

    def test_a_name_adds_to_what_the_description_says(self) -> None:
        body = [TermMatch(WORD_WEIGHT, in_body=True)]
        with_name = [*body, TermMatch(CONCEPT_WEIGHT, in_body=False, in_name=True)]
        assert word_evidence(with_name) > word_evidence(body)

    def test_one_common_word_does_not_qualify_several_do(self) -> None:
        assert not qualifies(word_evidence([TermMatch(WORD_WEIGHT, in_body=True)]))
        assert not qualifies(word_evidence([TermMatch(WORD_WEIGHT, in_body=True)] * 3))
        assert qualifies(word_evidence([TermMatch(WORD_WEIGHT, in_body=True)] * 4))

    def test_in_zero_one(self) -> None:
        assert word_evidence([]) == 0.0
        assert word_evidence([TermMatch(CONCEPT_WEIGHT, in_body=True)] * 10) == 1.0
        assert word_evidence([TermMatch(-5.0, in_body=True)]) == 0.0


class TestMatchTerms:
    def test_the_planoise_recyclerie_answers_a_ressourcerie_need(self) -> None:
        query = need_query("Une ressourcerie pour Planoise", "objets de seconde main")
        matches = match_terms(query, "La Recyclerie de Planoise", "Boutique de seconde main au cœur de Planoise")
        assert qualifies(word_evidence(matches))

    def test_a_name_trap_stays_weak(self) -> None:
        query = need_query("Recyclerie de meubles", "Collecte et revente de meubles d'occasion")
        trap = match_terms(query, "La Ressourcerie des Idées", "Compagnie de théâtre d'improvisation")
        assert trap
        assert all(not m.in_body for m in trap)
        assert not qualifies(word_evidence(trap))


class TestSearchQuery:
    def test_every_word_is_required_and_concepts_widen(self) -> None:
        tsquery = search_tsquery("ressourcerie Besançon")
        assert tsquery is not None
        concept, town = tsquery.split(" & ")
        assert "'recyclerie'" in concept
        assert town == "('Besançon' | 'Besançons')"

    @pytest.mark.parametrize("hostile", ['-recyclerie "a b" or !x', "'; DROP TABLE actors; --", "&&&| :* ()"])
    def test_hostile_search_is_words_only(self, hostile: str) -> None:
        tsquery = search_tsquery(hostile)
        assert tsquery is None or re.fullmatch(r"[X&|() ]*", OPERAND.sub("X", tsquery)), tsquery

    def test_nothing_to_search(self) -> None:
        assert search_tsquery("  ! & ") is None


def test_the_words_of_a_needs_public_do_not_confirm() -> None:
    query = need_query("Un garage solidaire pour les jeunes", "Louer des scooters aux jeunes")
    matches = match_terms(query, "Le Garage", "Concerts et studios pour les jeunes groupes")
    assert {m.key for m in matches} >= {"jeune"}
    assert confirming(matches, {"jeunesse"}) == [m for m in matches if m.key != "jeune"]
    assert confirming(matches, set()) == matches  # without the public theme, the word is evidence like any other


def test_keys_computed_ahead_match_the_same_terms_as_the_texts() -> None:
    """The replica's stored keys (store.actor_text_keys) answer what reading the texts answers, on the quality set."""
    quality = load_set()
    actors = list(quality.pool.values())
    compared = 0
    for need in quality.needs:
        body = need.body(quality.pool[need.authority])
        query = need_query(body.title, body.description, body.service_types)
        for actor in actors:
            activities = [a.model_dump(mode="json") for a in actor.activities]
            name_keys, body_keys, version = store.actor_text_keys(actor.name, actor.description, activities)
            assert version == KEYS_VERSION
            ahead = matched_terms(query, frozenset(name_keys), frozenset(body_keys))
            assert ahead == match_terms(query, actor.name, store.actor_body(actor.description, activities))
            compared += bool(ahead)
    assert compared > 1000  # most pairs share a word: the comparison is not vacuous


def test_the_keys_version_is_the_vocabularys_fingerprint() -> None:
    first = SYNONYMS[0]
    changed = (replace(first, phrases=(*first.phrases, "boutique du réemploi")), *SYNONYMS[1:])
    assert keys_version(changed) != KEYS_VERSION == keys_version(SYNONYMS)
