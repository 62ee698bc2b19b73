"""The field's French synonyms, the concepts they name in a text, and safe PostgreSQL full-text queries from them.

Design. People in the social and solidarity economy name the same thing several ways: a "ressourcerie" is a
"recyclerie", a repair café a "café bricole", a "chantier d'insertion" an "ACI". A synonym group below is one
such concept with every phrase the field uses for it. They live here, in the application, and not in
PostgreSQL synonym or thesaurus dictionary files: a managed PostgreSQL does not accept custom dictionary
files, and the directory's search can read the same groups.

Two uses, one vocabulary:

- `concepts_of(text)` finds the groups a text names, by comparing normalised words in Python (lower case,
  accents off, a crude singular, the small function words skipped). It is the same function for a need and
  for an actor's description, so both sides agree without PostgreSQL's stemmer; an actor's concepts can be
  stored on the matching replica as a short array (like its themes) and found with an array overlap.
- `need_query(title, description)` builds a `to_tsquery` text: one term per concept the need names (all its
  phrases, `<->` phrases for several words) and one per remaining distinctive word of the need. Every word
  is reduced to letters and digits before it is quoted, so no user text can inject tsquery syntax (`!`,
  `|`, `:*`, quotes) or SQL (the text is a bind parameter). French stop words are left to PostgreSQL (they
  become empty and drop out of an OR). Long texts are cut to a bounded number of terms.

`search_tsquery(text)` is the directory's search with the same synonyms (every word required).
`word_evidence` turns which terms an actor matched, in its name or in its description and activities, into
evidence in [0, 1]; a word in a name alone is weak evidence (the theatre company "Les Jardins de la Culture"
is no urban farm). Pure functions, no I/O.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cache, lru_cache
from types import MappingProxyType

from services.contracts.vocabularies import SERVICE_TYPES_BY_CODE


@dataclass(frozen=True)
class SynonymGroup:
    """One concept of the field: a stable key, a French label for reasons, and the phrases that name it.

    `service_type`: the group is also a term of every need asking for that service type, whatever its words
    (a premises need names premises even when its text says only "un lieu pour…").
    """

    key: str
    label: str
    phrases: tuple[str, ...]
    service_type: str | None = None


# Phrases are written singular, with their accents; plurals and hyphens are handled by the matching below.
# Keep each group to things a CRESS officer would accept as the same answer; a phrase that often means
# something else ("salle" of a concert hall, "locaux" of local produce) stays out, or goes in a longer form.
SYNONYMS: tuple[SynonymGroup, ...] = (
    SynonymGroup(
        "ressourcerie",
        "ressourcerie",
        ("ressourcerie", "recyclerie", "boutique de réemploi", "magasin de réemploi", "matériauthèque"),
    ),
    SynonymGroup("seconde_main", "seconde main", ("seconde main", "friperie", "vestiboutique", "dépôt-vente")),
    SynonymGroup(
        "repair_cafe",
        "repair café",
        ("repair café", "café bricole", "café réparation", "atelier de réparation participatif"),
    ),
    SynonymGroup(
        "atelier_velo",
        "atelier vélo",
        (
            "atelier vélo",
            "atelier de réparation de vélo",
            "autoréparation de vélo",
            "atelier d'autoréparation",
            "vélo-école",
            "recyclerie de vélo",
            "vélorution",
        ),
    ),
    SynonymGroup(
        "garage_solidaire",
        "garage solidaire",
        ("garage solidaire", "garage associatif", "garage social", "garage d'insertion", "garage participatif"),
    ),
    SynonymGroup("auto_ecole_sociale", "auto-école sociale", ("auto-école sociale", "auto-école associative")),
    SynonymGroup(
        "mobilite_solidaire",
        "mobilité solidaire",
        (
            "plateforme de mobilité",
            "mobilité solidaire",
            "mobilité inclusive",
            "location solidaire de véhicule",
            "prêt de véhicule",
            "transport solidaire",
        ),
    ),
    SynonymGroup(
        "tiers_lieu",
        "tiers-lieu",
        ("tiers-lieu", "fablab", "fab lab", "espace de coworking", "coworking", "friche culturelle", "atelier partagé"),
    ),
    SynonymGroup(
        "aide_alimentaire",
        "aide alimentaire",
        (
            "épicerie solidaire",
            "épicerie sociale",
            "aide alimentaire",
            "banque alimentaire",
            "distribution alimentaire",
            "colis alimentaire",
            "restaurant solidaire",
        ),
    ),
    SynonymGroup(
        "chantier_insertion",
        "chantier d'insertion",
        ("chantier d'insertion", "atelier chantier d'insertion", "ateliers et chantiers d'insertion", "ACI"),
    ),
    SynonymGroup(
        "siae",
        "structure d'insertion",
        (
            "insertion par l'activité économique",
            "structure d'insertion",
            "SIAE",
            "entreprise d'insertion",
            "association intermédiaire",
            "entreprise de travail temporaire d'insertion",
            "ETTI",
            "parcours d'insertion",
        ),
    ),
    SynonymGroup(
        "entreprise_adaptee",
        "entreprise adaptée",
        ("entreprise adaptée", "ESAT", "établissement et service d'aide par le travail"),
    ),
    SynonymGroup(
        "mediation_numerique",
        "médiation numérique",
        (
            "médiation numérique",
            "médiateur numérique",
            "conseiller numérique",
            "EPN",
            "espace public numérique",
            "inclusion numérique",
            "fracture numérique",
            "illectronisme",
            "aidant numérique",
        ),
    ),
    SynonymGroup(
        "reconditionnement",
        "reconditionnement informatique",
        ("reconditionnement", "reconditionné", "ordinateur reconditionné", "réemploi informatique"),
    ),
    SynonymGroup(
        "acces_aux_droits",
        "accès aux droits",
        (
            "accès aux droits",
            "accès au droit",
            "point d'accès au droit",
            "France services",
            "écrivain public",
            "démarche administrative",
            "aide aux démarches",
        ),
    ),
    SynonymGroup(
        "jardin_partage",
        "jardin partagé",
        (
            "jardin partagé",
            "jardin collectif",
            "jardin familial",
            "jardin ouvrier",
            "jardin nourricier",
            "ferme urbaine",
            "micro-ferme",
            "agriculture urbaine",
            "potager urbain",
            "potager en ville",
            "maraîchage urbain",
        ),
    ),
    SynonymGroup(
        "circuit_court",
        "circuit court",
        (
            "circuit court",
            "AMAP",
            "panier de légumes",
            "panier paysan",
            "vente directe",
            "magasin de producteurs",
            "producteur local",
        ),
    ),
    SynonymGroup(
        "compostage",
        "compostage",
        ("compostage", "composteur", "compost", "biodéchet", "maître composteur", "guide composteur"),
    ),
    SynonymGroup(
        "renovation_energetique",
        "rénovation énergétique",
        (
            "rénovation énergétique",
            "précarité énergétique",
            "auto-réhabilitation accompagnée",
            "économie d'énergie",
        ),
    ),
    SynonymGroup(
        "energie_citoyenne",
        "énergie citoyenne",
        ("énergie citoyenne", "centrale solaire citoyenne", "centrale villageoise", "énergie renouvelable citoyenne"),
    ),
    SynonymGroup(
        "vacances",
        "départ en vacances",
        ("départ en vacances", "séjour de vacances", "vacances solidaires", "tourisme social", "colonie de vacances"),
    ),
    SynonymGroup(
        "centre_social",
        "centre social",
        ("centre social", "centre socioculturel", "espace de vie sociale"),
    ),
    SynonymGroup("mjc", "MJC", ("MJC", "maison des jeunes et de la culture", "maison des jeunes")),
    SynonymGroup(
        "cae",
        "coopérative d'activité et d'emploi",
        ("coopérative d'activité et d'emploi", "CAE", "couveuse d'entreprises", "entrepreneur salarié"),
    ),
    SynonymGroup(
        "aide_domicile",
        "aide à domicile",
        ("aide à domicile", "service d'aide à domicile", "SAAD", "auxiliaire de vie", "maintien à domicile"),
    ),
    SynonymGroup(
        "locaux",
        "mise à disposition de locaux",
        (
            "mise à disposition de locaux",
            "location de locaux",
            "prêt de locaux",
            "local associatif",
            "locaux partagés",
            "salle de réunion",
            "salle d'activité",
            "local d'activité",
            "salle louée",
            "bureau loué",
            "location de salle",
            "prêt de salle",
            "local de répétition",
            "salle de répétition",
            "espace de stockage",
            "bureaux partagés",
            "location de bureaux",
            "hébergement d'associations",
        ),
        service_type="mise_a_disposition_locaux",
    ),
)


def _word_set(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Only for finding phrases and for the word budget; which words are stop words in the end is PostgreSQL's call.
# Written without accents: compared with folded words.
FUNCTION_WORDS = _word_set(
    "a au aux d de des du en et l la le les un une par pour sur dans avec ou ni que qui ce ces cet cette"
    " son sa ses leur leurs notre nos votre vos est sont nous vous ils elles on se sans"
    " pendant vers chez lors depuis entre chaque comme afin"
)
# Words any need of the field uses, which say nothing about who can answer it.
GENERIC_WORDS = _word_set(
    "besoin cherchon cherche recherche trouver souhaite souhaiton structure association acteur projet quartier"
    " habitant public personne territoire ville commune service activite proposer propose mettre place"
    " solidaire tarif ess ete faire plus tres tout tou mise"
)
CONCEPT_WEIGHT = 1.0  # a named concept of the field, in the actor's description or activities: strong evidence
WORD_WEIGHT = 0.25  # one distinctive word in common
NAME_ONLY_FACTOR = 0.2  # a term found only in the actor's name counts this much
QUALIFYING_EVIDENCE = (
    1.0  # a concept, or four distinctive words: enough to make an actor a candidate without a shared theme
)
MAX_WORDS = 32  # a need's words beyond this many are not terms (bounds the query of a very long text)
MAX_WORD_LENGTH = 40  # longer "words" are noise (PostgreSQL would refuse them past 2047 bytes anyway)
MAX_TEXT = 20_000  # characters of a need's text read at all
_TOKEN = re.compile(r"[^\W_]+")


@lru_cache(maxsize=1 << 16)  # the same few thousand words recur in every text: matching reads hundreds per need
def _fold(word: str) -> str:
    """Lower case without accents."""
    # œ and æ are letters of their own to Unicode, ligatures to a French reader (and to unaccent).
    decomposed = unicodedata.normalize("NFKD", word.casefold().replace("œ", "oe").replace("æ", "ae"))
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch))


@lru_cache(maxsize=1 << 16)
def normalise(word: str) -> str:
    """A word's comparison key: folded, with a crude French singular (locaux → local, vélos → velo)."""
    key = _fold(word)
    if len(key) > 4 and key.endswith("aux"):
        return key[:-3] + "al"
    if len(key) > 3 and key.endswith(("eux", "aux")):
        return key[:-1]
    if len(key) > 3 and key.endswith("s") and not key.endswith("ss"):
        return key[:-1]
    return key


def _plural(word: str) -> str:
    """A word's plural as French usually writes it, for the tsquery (PostgreSQL's stemmer keeps 'vélos', 'lieux')."""
    if word.isupper() or len(word) < 3 or word[-1] in "sxzSXZ":
        return word
    if word.endswith("al"):
        return word[:-2] + "aux"
    if word.endswith(("au", "eu")):
        return word + "x"
    return word + "s"


def _singular(word: str) -> str:
    folded = _fold(word)
    if len(folded) > 4 and folded.endswith("aux"):
        return word[:-3] + "al"
    if len(folded) > 3 and folded.endswith(("eux", "aux")):
        return word[:-1]
    if len(folded) > 3 and folded.endswith("s") and not folded.endswith("ss"):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The words of a text: runs of letters and digits, nothing else (no tsquery operator survives)."""
    # NFC first: a decomposed "é" (e + combining accent) would otherwise split the word in two.
    return _TOKEN.findall(unicodedata.normalize("NFC", text[:MAX_TEXT]))


def _is_function_word(token: str) -> bool:
    return _fold(token) in FUNCTION_WORDS


@lru_cache(maxsize=1 << 16)  # one look-up per token: matching reads every word of about 80 candidates per need
def _content_key(token: str) -> str | None:
    """A token's comparison key (`normalise`), None for a function word."""
    return None if _is_function_word(token) else normalise(token)


def _content(tokens: Iterable[str]) -> list[tuple[int, str]]:
    """(position, key) of the words that are not function words."""
    return [(i, key) for i, token in enumerate(tokens) if (key := _content_key(token)) is not None]


@dataclass(frozen=True)
class _Phrase:
    keys: tuple[str, ...]  # content-word keys, to find it in a text
    words: tuple[str, ...]  # every word, to quote in a tsquery


def _phrase(text: str) -> _Phrase:
    tokens = words(text)
    return _Phrase(tuple(key for _, key in _content(tokens)), tuple(tokens))


GROUPS_BY_KEY = MappingProxyType({group.key: group for group in SYNONYMS})
_PHRASES: dict[str, list[tuple[SynonymGroup, _Phrase]]] = {}  # by first content word, longest first
for _group in SYNONYMS:
    for _text in _group.phrases:
        _parsed = _phrase(_text)
        if not _parsed.keys:
            raise ValueError(f"synonym group {_group.key}: phrase {_text!r} has no content word")
        _PHRASES.setdefault(_parsed.keys[0], []).append((_group, _parsed))
for _candidates in _PHRASES.values():
    # Longest first, so that "atelier chantier d'insertion" is tried before a shorter phrase at the same place.
    _candidates.sort(key=lambda item: -len(item[1].keys))
if len(GROUPS_BY_KEY) != len(SYNONYMS):
    raise ValueError("duplicate synonym group key")
for _group in SYNONYMS:
    if _group.service_type is not None and _group.service_type not in SERVICE_TYPES_BY_CODE:
        raise ValueError(f"synonym group {_group.key}: unknown service type {_group.service_type}")


def _find(tokens: list[str], content: list[tuple[int, str]] | None = None) -> tuple[list[SynonymGroup], set[int]]:
    """The groups whose phrases occur in `tokens` (in order of first occurrence) and the positions they cover."""
    content = _content(tokens) if content is None else content
    keys = [key for _, key in content]
    found: dict[str, SynonymGroup] = {}
    covered: set[int] = set()
    for start, key in enumerate(keys):
        for group, phrase in _PHRASES.get(key, ()):
            end = start + len(phrase.keys)
            if tuple(keys[start:end]) == phrase.keys:
                found.setdefault(group.key, group)
                covered.update(content[i][0] for i in range(start, end))
    return list(found.values()), covered


def concepts_of(text: str) -> frozenset[str]:
    """The keys of the synonym groups a text names (an actor's description, a need's title and description)."""
    groups, _ = _find(words(text))
    return frozenset(group.key for group in groups)


def _quoted(tokens: Iterable[str]) -> str:
    """One tsquery operand: the words quoted together, which to_tsquery reads as a phrase (`<->`)."""
    return "'" + " ".join(tokens) + "'"


@dataclass(frozen=True)
class QueryTerm:
    """One term of a need's query: a concept (all its phrases) or one word (with its other number)."""

    key: str  # the group's key, or the word's comparison key
    label: str  # French, for a reason ("ressourcerie", "voitures")
    weight: float
    alternatives: tuple[tuple[str, ...], ...]  # each a phrase, as words of letters and digits only
    concept: bool = False

    def tsquery(self, labels: str = "") -> str:
        """This term as to_tsquery text; `labels` ("A", "BC"…) restricts it to those weights of the document."""
        suffix = f":{labels}" if labels else ""
        if labels and not re.fullmatch(r"[ABCD]{1,4}", labels):
            raise ValueError(f"labels: {labels!r} is not a set of tsvector weights A-D")
        return " | ".join(_quoted(alternative) + suffix for alternative in self.alternatives)


@dataclass(frozen=True)
class NeedQuery:
    """A need's terms, concepts first; empty when its text has no usable word."""

    terms: tuple[QueryTerm, ...] = field(default=())

    @property
    def concepts(self) -> frozenset[str]:
        return frozenset(term.key for term in self.terms if term.concept)

    @property
    def reach(self) -> float:
        """The most word evidence an actor could show for these terms, in [0, 1] (`word_evidence` of them all)."""
        return min(1.0, sum(term.weight for term in self.terms))

    def tsquery(self, labels: str = "") -> str | None:
        """Every term OR-ed, as to_tsquery text (None when there is none: match nothing rather than everything)."""
        if not self.terms:
            return None
        return " | ".join(f"({term.tsquery(labels)})" for term in self.terms)

    def concept_tsquery(self, labels: str = "") -> str | None:
        """Only the concepts OR-ed (the text door's strong evidence), or None."""
        concepts = [term for term in self.terms if term.concept]
        return " | ".join(f"({term.tsquery(labels)})" for term in concepts) or None


def _alternatives(phrase_words: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The phrase as written and with its content words in the other number, without repeats."""
    plural = tuple(w if _is_function_word(w) else _plural(w) for w in phrase_words)
    singular = tuple(w if _is_function_word(w) else _singular(w) for w in phrase_words)
    return tuple(dict.fromkeys([phrase_words, singular, plural]))


@cache  # groups are constants
def group_term(group: SynonymGroup) -> QueryTerm:
    """A synonym group as one query term."""
    alternatives: dict[tuple[str, ...], None] = {}
    for text in group.phrases:
        for alternative in _alternatives(tuple(words(text))):
            alternatives[alternative] = None
    return QueryTerm(group.key, group.label, CONCEPT_WEIGHT, tuple(alternatives), concept=True)


def need_query(title: str, description: str = "", service_types: Collection[str] = ()) -> NeedQuery:
    """The need's terms: the concepts its text names (or its service types imply), then its distinctive words."""
    tokens = words(f"{title} {description}")
    groups, covered = _find(tokens)
    implied = [g for g in SYNONYMS if g.service_type is not None and g.service_type in service_types]
    terms = [group_term(group) for group in dict.fromkeys([*groups, *implied])]
    seen: set[str] = set()
    for position, token in enumerate(tokens):
        key = normalise(token)
        if (
            position in covered
            or key in seen
            or _is_function_word(token)
            or key in GENERIC_WORDS
            or len(key) < 3
            or len(token) > MAX_WORD_LENGTH
            or key.isdigit()
        ):
            continue
        seen.add(key)
        terms.append(QueryTerm(key, token.lower(), WORD_WEIGHT, _alternatives((token,))))
        if len(seen) >= MAX_WORDS:
            break
    return NeedQuery(tuple(terms))


def search_tsquery(text: str) -> str | None:
    """A directory search as to_tsquery text: every word required (AND, as websearch_to_tsquery does), a
    concept's words replaced by all its phrases (OR); None when the text has no usable word.

    Unlike websearch_to_tsquery it does not read "-word" or "quoted phrase" syntax: the text is words only.
    """
    tokens = words(text)
    groups, covered = _find(tokens)
    operands = [f"({group_term(group).tsquery()})" for group in groups]
    seen: set[str] = set()
    for position, token in enumerate(tokens):
        key = normalise(token)
        if position in covered or key in seen or _is_function_word(token) or len(token) > MAX_WORD_LENGTH:
            continue
        seen.add(key)
        operands.append(f"({' | '.join(_quoted(a) for a in _alternatives((token,)))})")
        if len(seen) >= MAX_WORDS:
            break
    return " & ".join(operands) or None


@dataclass(frozen=True)
class TermMatch:
    """Where an actor matched one term of a need: in its name (weight A), in its description or activities."""

    weight: float
    in_body: bool
    in_name: bool = False
    label: str = ""  # the term's label, for a reason ("ressourcerie", "voitures")
    key: str = ""  # the term's key (QueryTerm.key)


def word_evidence(matches: Iterable[TermMatch]) -> float:
    """How strongly an actor's own words answer the need, in [0, 1].

    Terms matched in the description or activities add their weight; terms matched only in the name add
    `NAME_ONLY_FACTOR` of theirs, and all of those together at most `NAME_ONLY_FACTOR`: a name alone never
    reaches `QUALIFYING_EVIDENCE` (name traps), however many words it shares.
    """
    body = sum(max(0.0, m.weight) for m in matches if m.in_body)
    name = sum(max(0.0, m.weight) for m in matches if m.in_name and not m.in_body)
    return min(1.0, body + NAME_ONLY_FACTOR * min(1.0, name))


# Bump when `normalise`, `words` or `_find` change what they answer: with the synonym groups and the function words,
# it makes `KEYS_VERSION`.
KEYS_RULES = 1


# A fingerprint of everything `text_keys` answers from. Keys computed ahead are stored with it, and read only while
# it is the same: a release that changes a synonym makes them stale, and they are then computed again from the text.
def keys_version(groups: Iterable[SynonymGroup] = SYNONYMS, function_words: Iterable[str] = FUNCTION_WORDS) -> str:
    """The fingerprint of a vocabulary (`KEYS_VERSION` is the current one's)."""
    return hashlib.sha256(repr((KEYS_RULES, tuple(groups), sorted(function_words))).encode()).hexdigest()[:16]


KEYS_VERSION = keys_version()


def text_keys(text: str) -> frozenset[str]:
    """The comparison keys of a text: the synonym groups it names and its content words' keys (`normalise`).

    What `match_terms` compares with a need's terms; the matching replica keeps each actor's (actor_texts), as of
    `KEYS_VERSION`, so that scoring a candidate does not read its text again.
    """
    tokens = words(text)
    content = _content(tokens)
    return frozenset({group.key for group in _find(tokens, content)[0]} | {key for _, key in content})


def match_terms(query: NeedQuery, name: str, body: str) -> list[TermMatch]:
    """Which of the need's terms an actor's name and body (description, activities' labels) contain, in Python.

    The same normalisation as `concepts_of`, so it agrees with concepts stored on the replica; PostgreSQL's
    stemmer may find a few more words (`QueryTerm.tsquery(labels="A")` / `"BC"` does it in SQL).
    """
    return matched_terms(query, text_keys(name), text_keys(body))


def matched_terms(query: NeedQuery, in_name: frozenset[str], in_body: frozenset[str]) -> list[TermMatch]:
    """`match_terms` on the texts' keys (`text_keys`) computed ahead."""
    return [
        TermMatch(term.weight, in_body=term.key in in_body, in_name=term.key in in_name, label=term.label, key=term.key)
        for term in query.terms
        if term.key in in_body or term.key in in_name
    ]


# The words that only name the public of a public theme (services.contracts.relations.PUBLIC_THEMES), as comparison
# keys (`normalise`). In a need for that public, an actor's "jeunes" or "familles" says it serves the same people,
# not that it can do the job: such a word is not evidence that confirms a candidate (`confirming`).
PUBLIC_WORDS: MappingProxyType[str, frozenset[str]] = MappingProxyType(
    {
        theme: frozenset(normalise(word) for word in spelled.split())
        for theme, spelled in {
            "jeunesse": "jeune jeunes jeunesse ado ados adolescent adolescents",
            "vieillissement": "senior seniors âgé âgés âgée âgées aîné aînés retraité retraités vieillissement",
            "enfance_parentalite": "enfant enfants enfance parent parents parentalité famille familles",
        }.items()
    }
)


@cache  # a need's few public themes, asked again for each of its candidates
def _public_words(public_themes: frozenset[str]) -> frozenset[str]:
    return frozenset().union(*(PUBLIC_WORDS.get(theme, frozenset()) for theme in public_themes))


def confirming(matches: Iterable[TermMatch], public_themes: Iterable[str]) -> list[TermMatch]:
    """The matches that can confirm a candidate: not the words that only name the need's public themes' public."""
    public = _public_words(frozenset(public_themes))
    return [m for m in matches if m.key not in public]


def qualifies(evidence: float) -> bool:
    """Whether words alone make an actor a candidate (a concept in its description, or several distinctive words)."""
    return evidence >= QUALIFYING_EVIDENCE
