"""Offline INSEE territorial divisions: validate territory codes, resolve former communes, test membership."""

from __future__ import annotations

import bisect
import gzip
import json
import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache, lru_cache
from importlib import resources
from typing import Any

TERRITORY_KINDS = ("COM", "EPCI", "DEP", "REG")
_FORMATS = {
    "COM": re.compile(r"^(\d{5}|2[AB]\d{3})$"),
    "EPCI": re.compile(r"^\d{9}$"),
    "DEP": re.compile(r"^(\d{2}|2[AB]|97\d)$"),
    "REG": re.compile(r"^\d{2}$"),
}


class TerritoryError(ValueError):
    """A territory code that is malformed (`rule="bad_format"`) or unknown (`rule="unknown_<kind>"`)."""

    def __init__(self, message: str, rule: str) -> None:
        super().__init__(message)
        self.rule = rule


@dataclass(frozen=True)
class Commune:
    code: str
    name: str
    departement: str
    region: str
    epci: str | None
    population: int
    postal_codes: tuple[str, ...]


@dataclass(frozen=True)
class _Data:
    communes: dict[str, Commune]
    former: dict[str, str]
    epci: dict[str, tuple[str, str, frozenset[str]]]
    departements: dict[str, tuple[str, str]]
    regions: dict[str, str]
    by_departement: dict[str, frozenset[str]]
    by_region: dict[str, frozenset[str]]
    source: str


@cache
def _data() -> _Data:
    raw: dict[str, Any] = json.loads(
        gzip.decompress(resources.files("services.contracts.data").joinpath("territories.json.gz").read_bytes())
    )
    communes = {
        code: Commune(code, name, dep, reg, epci, int(pop or 0), tuple(postal))
        for code, (name, dep, reg, epci, pop, postal) in raw["communes"].items()
    }
    by_dep: dict[str, set[str]] = {}
    by_reg: dict[str, set[str]] = {}
    for commune in communes.values():
        by_dep.setdefault(commune.departement, set()).add(commune.code)
        by_reg.setdefault(commune.region, set()).add(commune.code)
    return _Data(
        communes=communes,
        former={code: current for code, (current, _name, _type) in raw["former"].items()},
        epci={siren: (name, kind, frozenset(members)) for siren, (name, kind, members) in raw["epci"].items()},
        departements={code: (name, region) for code, (name, region) in raw["departements"].items()},
        regions=dict(raw["regions"]),
        by_departement={k: frozenset(v) for k, v in by_dep.items()},
        by_region={k: frozenset(v) for k, v in by_reg.items()},
        source=raw["source"],
    )


def source() -> str:
    """Which package version the data comes from."""
    return _data().source


def resolve_commune(code: str) -> Commune:
    """The current commune of an INSEE code; former communes and municipal arrondissements resolve to it."""
    code = code.strip().upper()
    if not _FORMATS["COM"].match(code):
        raise TerritoryError(f"{code!r} is not an INSEE commune code (5 characters, e.g. 25056)", "bad_format")
    data = _data()
    current = data.communes.get(code) or data.communes.get(data.former.get(code, ""))
    if current is None:
        raise TerritoryError(f"COM-{code} is not an INSEE commune code", "unknown_commune")
    return current


def normalize_territory(code: str) -> str:
    """Validate `COM-25056`, `EPCI-<siren>`, `DEP-25`, `REG-27` and return the canonical form."""
    text = code.strip().upper()
    kind, sep, value = text.partition("-")
    if not sep or kind not in _FORMATS or not _FORMATS[kind].match(value):
        raise TerritoryError(
            f"{code!r} is not a territory code: use COM-<INSEE>, EPCI-<SIREN>, DEP-<code> or REG-<code>",
            "bad_format",
        )
    data = _data()
    if kind == "COM":
        return f"COM-{resolve_commune(value).code}"
    if kind == "EPCI" and value not in data.epci:
        raise TerritoryError(f"EPCI-{value} is not the SIREN of an EPCI", "unknown_epci")
    if kind == "DEP" and value not in data.departements:
        raise TerritoryError(f"DEP-{value} is not a département code", "unknown_departement")
    if kind == "REG" and value not in data.regions:
        raise TerritoryError(f"REG-{value} is not a région code", "unknown_region")
    return f"{kind}-{value}"


def normalize_territories(codes: list[str]) -> list[str]:
    """Each code in canonical form, without repeats; ValueError with the first bad code's reason."""
    try:
        return list(dict.fromkeys(normalize_territory(code) for code in codes))
    except TerritoryError as exc:
        raise ValueError(str(exc)) from exc


def territories_of_commune(code: str) -> tuple[str, ...]:
    """The canonical codes of every territory containing the commune: COM, EPCI (if any), DEP, REG."""
    commune = resolve_commune(code)
    codes = [f"COM-{commune.code}"]
    if commune.epci:
        codes.append(f"EPCI-{commune.epci}")
    codes += [f"DEP-{commune.departement}", f"REG-{commune.region}"]
    return tuple(codes)


def communes_in(territory: str) -> frozenset[str]:
    """The current communes of a territory."""
    canonical = normalize_territory(territory)
    kind, _, value = canonical.partition("-")
    data = _data()
    if kind == "COM":
        return frozenset({value})
    if kind == "EPCI":
        return data.epci[value][2]
    if kind == "DEP":
        return data.by_departement.get(value, frozenset())
    return data.by_region.get(value, frozenset())


def contains(territory: str, commune_code: str) -> bool:
    return normalize_territory(territory) in territories_of_commune(commune_code)


def departement_name(code: str) -> str | None:
    entry = _data().departements.get(code)
    return entry[0] if entry else None


def region_name(code: str) -> str | None:
    return _data().regions.get(code)


def epci_name(siren: str) -> str | None:
    entry = _data().epci.get(siren)
    return entry[0] if entry else None


def _fold(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text.casefold()) if not unicodedata.combining(c))


def search_communes(name_prefix: str, limit: int = 10) -> list[Commune]:
    """Communes whose name starts with the prefix (accents and case ignored), most populous first."""
    prefix = _fold(name_prefix.strip())
    if not prefix:
        return []
    found = [c for c in _data().communes.values() if _fold(c.name).startswith(prefix)]
    return sorted(found, key=lambda c: -c.population)[:limit]


def all_communes() -> dict[str, Commune]:
    return _data().communes


@dataclass(frozen=True)
class Territory:
    """A named territory: its canonical code (`COM-25056`, `EPCI-<siren>`, `DEP-25`, `REG-27`), kind and name."""

    code: str
    kind: str
    name: str
    population: int


@lru_cache(maxsize=4096)
def territory_named(code: str) -> Territory | None:
    """The territory of a code as perimeters hold it (`COM-25056`, `EPCI-<siren>`, `DEP-25`, `REG-27`; a former
    commune's code gives its current commune), None for a code this data does not know."""
    kind, _, value = code.strip().upper().partition("-")
    data = _data()
    members: Iterable[str]
    if kind == "COM":
        commune = data.communes.get(value) or data.communes.get(data.former.get(value, ""))
        if commune is None:
            return None
        return Territory(f"COM-{commune.code}", kind, commune.name, commune.population)
    if kind == "EPCI" and value in data.epci:
        name, _, members = data.epci[value]
    elif kind == "DEP" and value in data.departements:
        name, members = data.departements[value][0], data.by_departement.get(value, frozenset())
    elif kind == "REG" and value in data.regions:
        name, members = data.regions[value], data.by_region.get(value, frozenset())
    else:
        return None
    population = sum(data.communes[c].population for c in members if c in data.communes)
    return Territory(f"{kind}-{value}", kind, name, population)


def _searchable(text: str) -> str:
    """A name as searched: folded (accents, case), hyphens and apostrophes as spaces."""
    return _fold(text).replace("-", " ").replace("'", " ").replace("\u2019", " ").strip()


@dataclass(frozen=True)
class _TerritoryIndex:
    ranked: tuple[Territory, ...]  # most populous first: a rank is an index here
    names: tuple[tuple[str, int], ...]  # (searchable name, rank), sorted: a prefix is a bisected range
    words: tuple[tuple[str, int], ...]  # (the name from its second, third… word on, rank), sorted


@cache
def _territory_index() -> _TerritoryIndex:
    """Every territory ranked by population (an EPCI's, a département's and a région's: their communes'), with
    sorted names and word starts, so that a search is two bisections instead of a scan."""
    data = _data()
    population = {code: commune.population for code, commune in data.communes.items()}

    def summed(codes: frozenset[str]) -> int:
        return sum(population.get(code, 0) for code in codes)

    entries = [Territory(f"COM-{c.code}", "COM", c.name, c.population) for c in data.communes.values()]
    entries += [
        Territory(f"EPCI-{siren}", "EPCI", name, summed(members)) for siren, (name, _, members) in data.epci.items()
    ]
    entries += [
        Territory(f"DEP-{code}", "DEP", name, summed(data.by_departement.get(code, frozenset())))
        for code, (name, _region) in data.departements.items()
    ]
    entries += [
        Territory(f"REG-{code}", "REG", name, summed(data.by_region.get(code, frozenset())))
        for code, name in data.regions.items()
    ]
    ranked = tuple(sorted(entries, key=lambda t: (-t.population, t.code)))
    names: list[tuple[str, int]] = []
    words: list[tuple[str, int]] = []
    for rank, territory in enumerate(ranked):
        name = _searchable(territory.name)
        names.append((name, rank))
        words += [(name[m.start() :], rank) for m in re.finditer(r"(?<= )\S", name)]
    return _TerritoryIndex(ranked, tuple(sorted(names)), tuple(sorted(words)))


def _ranks_starting(entries: tuple[tuple[str, int], ...], prefix: str) -> list[int]:
    start = bisect.bisect_left(entries, (prefix, -1))
    end = bisect.bisect_left(entries, (prefix + "\uffff", -1))
    return [rank for _, rank in entries[start:end]]


def search_territories(text: str, kinds: tuple[str, ...] = TERRITORY_KINDS, limit: int = 10) -> list[Territory]:
    """Territories of `kinds` whose name starts with `text`, then those with a word that does (accents, case,
    hyphens and apostrophes ignored), each group most populous first."""
    prefix = _searchable(text)
    if not prefix:
        return []
    index = _territory_index()
    found: list[Territory] = []
    seen: set[int] = set()
    for ranks in (_ranks_starting(index.names, prefix), _ranks_starting(index.words, prefix)):
        for rank in sorted(set(ranks) - seen):
            territory = index.ranked[rank]
            if territory.kind in kinds:
                found.append(territory)
                seen.add(rank)
                if len(found) >= limit:
                    return found
    return found
