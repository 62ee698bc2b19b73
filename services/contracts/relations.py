"""The neighbourhood of the theme vocabulary: which themes a CRESS officer treats as close, how close, and why.

Design. People declare the theme they feel closest to, not every theme they serve: a recyclerie files
itself under "économie circulaire", a garage solidaire under "mobilité", a recyclerie run as an insertion
workshop under "IAE". Matching's "related theme" door lets such an actor become a candidate of a need whose
themes are its neighbours. The graph is curated by hand rather than learnt, so that each edge can be read,
argued and removed:

- edges are symmetric (a need for A reaches an actor of B exactly when a need for B reaches an actor of A);
- each weight in (0, 1] says how often an actor of one theme is a real answer to a need of the other:
  0.8-0.9 the same field under two names (réemploi ↔ économie circulaire), 0.6-0.7 one field serving the
  other most of the time (IAE ↔ emploi et formation), 0.4-0.5 a frequent bridge that the need's words must
  confirm (IAE ↔ réemploi: many, not all, insertion workshops are recycleries);
- no edge between themes that merely co-occur (sport and jeunesse, culture and tourisme): such an edge would
  make a whole category of actors candidates of every need of the other, which is noise, not recall;
- an edge is not transitive: numérique ↔ médiation numérique ↔ accès aux droits does not relate numérique to
  accès aux droits (a computer repair shop is no answer to a legal-aid need).

`related` and `neighbours` give the codes a planner looks for (SQL array overlap), `best_relation` the edge
that justifies a candidate (its reason), `related_door_opens` whether a weak edge is confirmed by the actor's
words, `theme_credit` the theme part of a score with related themes counted at a fraction of a shared one.
Pure functions, no I/O.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass
from types import MappingProxyType

from services.contracts.vocabularies import THEMES_BY_CODE


@dataclass(frozen=True)
class Relation:
    """One undirected edge of the graph: two theme codes, how close they are (0, 1], and why, in French."""

    a: str
    b: str
    weight: float
    reason: str

    def other(self, code: str) -> str:
        return self.b if code == self.a else self.a


# The graph. Keep it sorted by field; write the reason as a CRESS officer would explain it to an elected official.
RELATIONS: tuple[Relation, ...] = (
    # Alimentation: from producing to giving access.
    Relation("agriculture_urbaine", "alimentation_durable", 0.8, "un jardin ou une ferme urbaine nourrit le quartier"),
    Relation("agriculture_urbaine", "circuits_courts", 0.6, "les fermes urbaines vendent en direct, au plus près"),
    Relation("agriculture_urbaine", "environnement", 0.5, "jardiner en ville, c'est aussi la biodiversité et le sol"),
    Relation(
        "circuits_courts", "alimentation_durable", 0.8, "manger local est le premier levier d'une alimentation durable"
    ),
    Relation(
        "alimentation_durable", "solidarite_alimentaire", 0.6, "l'aide alimentaire vise aussi des produits de qualité"
    ),
    Relation(
        "circuits_courts", "solidarite_alimentaire", 0.5, "paniers solidaires et épiceries approvisionnées en local"
    ),
    Relation("commerce_equitable", "alimentation_durable", 0.5, "le commerce équitable est d'abord alimentaire"),
    Relation(
        "commerce_equitable", "circuits_courts", 0.4, "le commerce équitable local rémunère justement les producteurs"
    ),
    Relation(
        "acces_aux_droits",
        "solidarite_alimentaire",
        0.4,
        "épiceries sociales et aide alimentaire passent par l'accès aux droits",
    ),
    # Économie circulaire: the same objects, kept in use.
    Relation("reemploi", "economie_circulaire", 0.9, "une ressourcerie est un acteur de l'économie circulaire"),
    Relation("reemploi", "reparation", 0.8, "réparer pour remettre en usage, c'est du réemploi"),
    Relation("reparation", "economie_circulaire", 0.7, "la réparation prolonge la vie des objets"),
    Relation("economie_circulaire", "environnement", 0.5, "réduire les déchets, c'est protéger l'environnement"),
    Relation("iae", "reemploi", 0.5, "beaucoup de recycleries sont des ateliers et chantiers d'insertion"),
    Relation("numerique", "reemploi", 0.4, "reconditionner des ordinateurs, c'est du réemploi"),
    Relation("mobilite", "reparation", 0.4, "ateliers vélo et garages solidaires réparent"),
    # Numérique: tools, then people, then rights.
    Relation(
        "numerique", "mediation_numerique", 0.9, "la médiation numérique est le numérique tourné vers les habitants"
    ),
    Relation(
        "mediation_numerique",
        "acces_aux_droits",
        0.8,
        "les démarches en ligne sont la première demande d'aide numérique",
    ),
    # Emploi: insertion, mobility and youth as routes to work.
    Relation("iae", "emploi_formation", 0.8, "l'insertion par l'activité économique est un parcours vers l'emploi"),
    Relation("mobilite", "emploi_formation", 0.6, "sans moyen de transport, pas d'accès à l'emploi ni à la formation"),
    Relation("handicap", "emploi_formation", 0.4, "entreprises adaptées et ESAT sont des acteurs de l'emploi"),
    Relation("jeunesse", "emploi_formation", 0.4, "l'insertion professionnelle des jeunes"),
    Relation(
        "finance_solidaire", "cooperation_territoriale", 0.4, "la finance solidaire finance les projets de territoire"
    ),
    # Autonomie: the same people, at home.
    Relation("aide_domicile", "vieillissement", 0.9, "l'aide à domicile permet de bien vieillir chez soi"),
    Relation("aide_domicile", "handicap", 0.6, "les services d'aide à domicile accompagnent aussi le handicap"),
    Relation("vieillissement", "handicap", 0.4, "l'autonomie réunit âge et handicap"),
    Relation("vieillissement", "habitat", 0.4, "adapter le logement et l'habitat inclusif pour vieillir chez soi"),
    Relation("sante", "vieillissement", 0.4, "la prévention santé est au cœur du bien vieillir"),
    Relation("sante", "sport", 0.4, "le sport sur ordonnance et la prévention par l'activité physique"),
    # Habitat et énergie.
    Relation("habitat", "energie", 0.7, "rénovation énergétique et précarité énergétique des logements"),
    Relation("habitat", "acces_aux_droits", 0.4, "le droit au logement et l'accompagnement des ménages"),
    Relation("energie", "environnement", 0.5, "la transition énergétique est une transition écologique"),
    # Éducation populaire, enfance, jeunesse, culture.
    Relation("education_populaire", "jeunesse", 0.7, "MJC et centres sociaux accueillent les jeunes"),
    Relation(
        "education_populaire", "enfance_parentalite", 0.6, "centres sociaux et ludothèques accueillent les familles"
    ),
    Relation("education_populaire", "culture", 0.6, "l'action culturelle est un outil d'éducation populaire"),
    Relation("education_populaire", "environnement", 0.4, "l'éducation à l'environnement (CPIE, jardins pédagogiques)"),
    Relation("enfance_parentalite", "jeunesse", 0.5, "de l'enfance à la jeunesse, les mêmes structures"),
    Relation("tourisme_solidaire", "enfance_parentalite", 0.4, "le départ en vacances des familles et des enfants"),
)


def _index(relations: Iterable[Relation]) -> MappingProxyType[str, MappingProxyType[str, Relation]]:
    """The graph by theme, both directions; ValueError on an unknown code, a loop, a repeat or a bad weight."""
    by_theme: dict[str, dict[str, Relation]] = {code: {} for code in THEMES_BY_CODE}
    for relation in relations:
        for code in (relation.a, relation.b):
            if code not in THEMES_BY_CODE:
                raise ValueError(f"relation {relation.a} ↔ {relation.b}: unknown theme code {code}")
        if relation.a == relation.b:
            raise ValueError(f"relation {relation.a} ↔ {relation.b}: a theme is not its own neighbour")
        if not 0 < relation.weight <= 1:
            raise ValueError(f"relation {relation.a} ↔ {relation.b}: weight {relation.weight} not in (0, 1]")
        if not relation.reason.strip():
            raise ValueError(f"relation {relation.a} ↔ {relation.b}: no reason")
        if relation.b in by_theme[relation.a]:
            raise ValueError(f"relation {relation.a} ↔ {relation.b} given twice")
        by_theme[relation.a][relation.b] = relation
        by_theme[relation.b][relation.a] = relation
    return MappingProxyType({code: MappingProxyType(edges) for code, edges in by_theme.items()})


RELATIONS_BY_THEME = _index(RELATIONS)
# Below this weight an edge is a bridge, not the same field: it opens the related-theme door only when the
# actor's own words also answer the need (some word evidence, services.contracts.synonyms.word_evidence).
# On the quality set, every relevant actor reached through a 0.4-0.5 edge had such evidence, and about three
# in four of the irrelevant actors those edges would admit had none.
CONFIRM_BELOW = 0.6


# Themes that say whom a need serves rather than what is to be done. "Un garage solidaire pour les jeunes" is
# tagged mobilité and jeunesse; a CRESS officer reads mobilité as the job and jeunesse as the public, and would not
# propose a youth sports club or a music venue for it. In a need that also has another theme, each of these counts
# for `PUBLIC_THEME_WEIGHT` of a theme in the theme part (`theme_credit`); alone, it is the job and counts whole.
# Their words ("jeunes", "seniors", "familles") do not confirm a candidate either (synonyms.PUBLIC_WORDS).
PUBLIC_THEMES = frozenset({"jeunesse", "vieillissement", "enfance_parentalite"})
PUBLIC_THEME_WEIGHT = 0.5


def theme_weights(need_themes: Collection[str]) -> dict[str, float]:
    """Each need theme's weight in the theme part: 1, or `PUBLIC_THEME_WEIGHT` for a public beside a job."""
    has_job = any(theme not in PUBLIC_THEMES for theme in need_themes)
    return {theme: PUBLIC_THEME_WEIGHT if has_job and theme in PUBLIC_THEMES else 1.0 for theme in need_themes}


def related(theme: str) -> dict[str, float]:
    """The themes close to `theme` with their weights (empty for an unknown or isolated theme)."""
    edges = RELATIONS_BY_THEME.get(theme, MappingProxyType({}))
    return {code: relation.weight for code, relation in edges.items()}


def relation(a: str, b: str) -> Relation | None:
    """The edge between two themes, if any."""
    return RELATIONS_BY_THEME.get(a, MappingProxyType({})).get(b)


def neighbours(themes: Collection[str], min_weight: float = 0.0) -> dict[str, float]:
    """The themes close to any of `themes` but not among them, each with its strongest weight (at least `min_weight`).

    What a planner looks for in an actor's themes (`a.themes && $neighbours`), sorted by code for stable SQL.
    """
    found: dict[str, float] = {}
    for theme in themes:
        for code, weight in related(theme).items():
            if code not in themes and weight >= min_weight:
                found[code] = max(weight, found.get(code, 0.0))
    return dict(sorted(found.items()))


def best_relation(need_themes: Collection[str], actor_themes: Collection[str]) -> tuple[float, str, str] | None:
    """The strongest edge from a need's theme to an actor's theme: (weight, need theme, actor theme), or None.

    A shared theme is not a relation (that is the shared-theme door): identical pairs are skipped. Ties go to
    the first need theme, then actor theme, in code order, so that the reason shown is stable.
    """
    best: tuple[float, str, str] | None = None
    for need_theme in sorted(need_themes):
        for actor_theme in sorted(actor_themes):
            edge = relation(need_theme, actor_theme)
            if edge is not None and (best is None or edge.weight > best[0]):
                best = (edge.weight, need_theme, actor_theme)
    return best


def related_door_opens(weight: float, evidence: float) -> bool:
    """Whether an edge of `weight` makes an actor a candidate, given its word evidence in [0, 1]."""
    return weight >= CONFIRM_BELOW or (weight > 0 and evidence > 0)


def theme_credit(need_themes: Collection[str], actor_themes: Collection[str], related_factor: float) -> float:
    """The theme part of a score in [0, 1]: the mean over the need's themes, each weighted by `theme_weights`, of
    1 when the actor has it, else `related_factor` times the weight of its closest actor theme, else 0.

    With `related_factor` 0 and no public theme beside a job, it is the shared fraction (|shared| / |need
    themes|); a need without themes gets 1.
    """
    if not need_themes:
        return 1.0
    factor = max(0.0, min(1.0, related_factor))
    total = 0.0
    weights_of = theme_weights(need_themes)
    for need_theme, weight in weights_of.items():
        if need_theme in actor_themes:
            total += weight
            continue
        weights = related(need_theme)
        total += weight * factor * max((weights[code] for code in actor_themes if code in weights), default=0.0)
    return total / sum(weights_of.values())
