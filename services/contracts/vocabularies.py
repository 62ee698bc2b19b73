"""Controlled vocabularies shared by every service: actor kinds, themes, service types (stable codes, French labels)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Term:
    code: str
    label: str
    description: str = ""


def _index(terms: tuple[Term, ...]) -> dict[str, Term]:
    codes = [term.code for term in terms]
    if len(set(codes)) != len(codes):
        raise ValueError("duplicate vocabulary code")
    return {term.code: term for term in terms}


# Codes are stable identifiers: never rename one, deprecate and add instead.
THEMES: tuple[Term, ...] = (
    Term("alimentation_durable", "Alimentation durable"),
    Term("circuits_courts", "Circuits courts"),
    Term("agriculture_urbaine", "Agriculture urbaine"),
    Term("solidarite_alimentaire", "Aide et solidarité alimentaire"),
    Term("reemploi", "Réemploi et ressourceries"),
    Term("reparation", "Réparation"),
    Term("economie_circulaire", "Économie circulaire et déchets"),
    Term("mobilite", "Mobilité et vélo"),
    Term("iae", "Insertion par l'activité économique"),
    Term("emploi_formation", "Emploi et formation"),
    Term("handicap", "Handicap et inclusion"),
    Term("culture", "Culture"),
    Term("education_populaire", "Éducation populaire"),
    Term("enfance_parentalite", "Enfance et parentalité"),
    Term("jeunesse", "Jeunesse"),
    Term("aide_domicile", "Aide à domicile"),
    Term("vieillissement", "Bien vieillir"),
    Term("habitat", "Habitat et logement"),
    Term("energie", "Énergie"),
    Term("environnement", "Environnement et biodiversité"),
    Term("numerique", "Numérique"),
    Term("mediation_numerique", "Médiation numérique"),
    Term("acces_aux_droits", "Accès aux droits"),
    Term("sante", "Santé"),
    Term("sport", "Sport"),
    Term("tourisme_solidaire", "Tourisme solidaire"),
    Term("finance_solidaire", "Finance solidaire"),
    Term("commerce_equitable", "Commerce équitable"),
    Term("cooperation_territoriale", "Coopération territoriale"),
)

SERVICE_TYPES: tuple[Term, ...] = (
    Term("mise_a_disposition_personnel", "Mise à disposition de personnel"),
    Term("prestation_service", "Prestation de service"),
    Term("fourniture_biens", "Fourniture de biens"),
    Term("sous_traitance", "Sous-traitance"),
    Term("mise_a_disposition_locaux", "Mise à disposition de locaux"),
    Term("formation", "Formation"),
    Term("conseil_accompagnement", "Conseil et accompagnement"),
    Term("partenariat", "Partenariat et coopération"),
    Term("benevolat", "Bénévolat et engagement"),
)

ACTOR_KINDS: tuple[Term, ...] = (
    Term("association", "Association"),
    Term("cooperative", "Coopérative (SCOP, SCIC, CAE…)"),
    Term("mutual", "Mutuelle"),
    Term("foundation", "Fondation ou fonds de dotation"),
    Term("esus_company", "Entreprise ESUS"),
    Term("siae", "Structure d'insertion par l'activité économique (SIAE)"),
    Term("adapted_company", "Entreprise adaptée ou ESAT"),
    Term("tiers_lieu", "Tiers-lieu"),
    Term("support_network", "Réseau d'accompagnement (CRESS, incubateur, Fabrique à initiatives…)"),
    Term("local_authority", "Collectivité territoriale"),
)

THEMES_BY_CODE = _index(THEMES)
SERVICE_TYPES_BY_CODE = _index(SERVICE_TYPES)
ACTOR_KINDS_BY_CODE = _index(ACTOR_KINDS)


def unknown_codes(codes: list[str] | tuple[str, ...], vocabulary: dict[str, Term]) -> list[str]:
    """The codes that are not in a vocabulary, in the order given."""
    return [code for code in codes if code not in vocabulary]


def check_codes(codes: list[str], vocabulary: dict[str, Term], what: str) -> list[str]:
    """The codes without repeats; ValueError naming the unknown ones (for pydantic validators)."""
    unknown = unknown_codes(codes, vocabulary)
    if unknown:
        raise ValueError(f"unknown {what} code(s): {', '.join(unknown)}")
    return list(dict.fromkeys(codes))
