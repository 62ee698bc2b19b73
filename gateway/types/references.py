"""The shared reference data a form picks from: vocabularies beyond themes, and INSEE communes and territories."""

from __future__ import annotations

import asyncio

import strawberry

from gateway.errors import bad_input
from gateway.types.common import Territory, TerritoryKind
from services.contracts import territories, vocabularies
from services.contracts.vocabularies import ACTOR_KINDS, SERVICE_TYPES

MAX_SEARCH_RESULTS = 50
MIN_SEARCH_LENGTH = 2  # one letter names half of France: a form asks from the second


@strawberry.type(description="A term of a controlled vocabulary: its stable code, its French label")
class Term:
    code: str
    label: str
    description: str


@strawberry.type(description="A current INSEE commune")
class Commune:
    code: str = strawberry.field(description="Its INSEE code, as a need's or an actor's communeCode (25056)")
    name: str
    departement: str
    region: str
    epci: str | None = strawberry.field(description="The SIREN of its EPCI")
    population: int
    postal_codes: list[str]
    territories: list[str] = strawberry.field(description="The codes of the territories containing it: COM, EPCI…")


def terms(vocabulary: tuple[vocabularies.Term, ...]) -> list[Term]:
    return [Term(code=t.code, label=t.label, description=t.description) for t in vocabulary]


def service_types() -> list[Term]:
    return terms(SERVICE_TYPES)


def actor_kinds() -> list[Term]:
    return terms(ACTOR_KINDS)


def _search_text(text: str, first: int) -> str:
    if not 1 <= first <= MAX_SEARCH_RESULTS:
        raise bad_input(f"first: between 1 and {MAX_SEARCH_RESULTS}", field="first", rule="max_page_size")
    stripped = text.strip()
    if len(stripped) < MIN_SEARCH_LENGTH:
        raise bad_input(f"search: at least {MIN_SEARCH_LENGTH} characters", field="search", rule="min_length")
    if len(stripped) > 100:
        raise bad_input("search: at most 100 characters", field="search", rule="max_length")
    return stripped


async def communes(search: str, first: int = 10) -> list[Commune]:
    """Communes by name, accents and case ignored (those starting with it, then those with a word that does),
    most populous first: the commune picker's answer, from the gateway's own INSEE data (no service call; public,
    like the themes)."""
    text = _search_text(search, first)
    # In a thread: the first search builds the index (about two seconds), which must not stall the event loop.
    found = await asyncio.to_thread(territories.search_territories, text, ("COM",), first)
    answer = []
    for territory in found:
        commune = territories.resolve_commune(territory.code.removeprefix("COM-"))
        answer.append(
            Commune(
                code=commune.code,
                name=commune.name,
                departement=commune.departement,
                region=commune.region,
                epci=commune.epci,
                population=commune.population,
                postal_codes=list(commune.postal_codes),
                territories=list(territories.territories_of_commune(commune.code)),
            )
        )
    return answer


async def territories_named(search: str, kinds: list[TerritoryKind] | None = None, first: int = 10) -> list[Territory]:
    """Territories by name (of `kinds`, all by default), each with the code a perimeter or a filter takes."""
    text = _search_text(search, first)
    if kinds is not None and not kinds:
        raise bad_input("kinds: give at least one kind, or leave it out for all", field="kinds", rule="not_empty")
    wanted = tuple(kind.value for kind in kinds) if kinds else territories.TERRITORY_KINDS
    found = await asyncio.to_thread(territories.search_territories, text, wanted, first)
    return [Territory.of(t) for t in found]
