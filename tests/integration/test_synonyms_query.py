"""The synonym-expanded need queries on a real PostgreSQL: they find the field's synonyms and survive hostile text."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from services.contracts.synonyms import need_query, search_tsquery

# The matching service's configuration (migration 0001), created under a name of this test's own inside a
# transaction that is rolled back, so that nothing is left in the shared test database.
CONFIG = "doors_fr_unaccent"
SETUP = f"""
    CREATE TEXT SEARCH CONFIGURATION {CONFIG} (COPY = pg_catalog.french);
    ALTER TEXT SEARCH CONFIGURATION {CONFIG}
        ALTER MAPPING FOR hword, hword_part, word, numword, numhword, hword_numpart WITH unaccent, french_stem;
"""
# An actor's document as the replica would hold it: name weighted A, description B.
# The configuration is a parameter: asyncpg caches prepared statements, and a statement naming it as a literal
# would keep the OID of the previous test's (rolled back) configuration.
DOCUMENT = "setweight(to_tsvector($4::regconfig, $1), 'A') || setweight(to_tsvector($4::regconfig, $2), 'B')"
ACTORS = [
    ("La Recyclerie du quartier", "Recyclerie : collecte et revente d'objets, ateliers ouverts."),
    ("Garage associatif du Doubs", "Réparation de voitures à petit prix pour les personnes en insertion."),
    ("Le Garage", "Salle de concerts et résidences d'artistes."),
    ("Les Jardins de la Culture", "Compagnie de théâtre : spectacles et ateliers d'écriture."),
    ("La Fabrique", "Tiers-lieu : fablab, coworking et salles de réunion louées aux associations."),
    ("Ateliers vélos solidaires", "Atelier d'autoréparation de vélos et vélo-école pour adultes."),
]


@pytest.fixture
async def conn(pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
    async with pool.acquire() as connection:
        transaction = connection.transaction()
        await transaction.start()
        try:
            await connection.execute(SETUP)
            yield connection
        finally:
            await transaction.rollback()


async def matching(conn: asyncpg.Connection, tsquery: str | None) -> set[str]:
    """The names of ACTORS whose document matches the query text (none for no query)."""
    if tsquery is None:
        return set()
    found = set()
    for name, description in ACTORS:
        if await conn.fetchval(
            f"SELECT {DOCUMENT} @@ to_tsquery($4::regconfig, $3)", name, description, tsquery, CONFIG
        ):
            found.add(name)
    return found


async def test_synonyms_phrases_and_name_weights(conn: asyncpg.Connection) -> None:
    ressourcerie = need_query("une ressourcerie à Planoise")
    assert await matching(conn, ressourcerie.tsquery()) == {"La Recyclerie du quartier"}

    # A phrase: "garage associatif" answers "garage solidaire"; a concert hall called "Le Garage" does not.
    garage = need_query("Un garage solidaire")
    assert await matching(conn, garage.concept_tsquery()) == {"Garage associatif du Doubs"}

    # Hyphens and plurals: "tiers-lieu" in the document, "ateliers vélos" in the need.
    assert await matching(conn, need_query("Un tiers-lieu").concept_tsquery()) == {"La Fabrique"}
    assert await matching(conn, need_query("Des ateliers vélos").concept_tsquery()) == {"Ateliers vélos solidaires"}

    # Weights: the theatre's name says "jardins", its description does not; a body-only query misses it.
    jardins = need_query("Jardins pour les écoles")
    assert "Les Jardins de la Culture" in await matching(conn, jardins.tsquery())
    assert "Les Jardins de la Culture" not in await matching(conn, jardins.tsquery("B"))


async def test_directory_search_with_synonyms(conn: asyncpg.Connection) -> None:
    assert await matching(conn, search_tsquery("ressourcerie quartier")) == {"La Recyclerie du quartier"}
    assert await matching(conn, search_tsquery("ressourcerie vélos")) == set()  # every word required
    assert await matching(conn, search_tsquery("-recyclerie")) == {"La Recyclerie du quartier"}  # no operators


@pytest.mark.parametrize(
    "hostile",
    [
        "'; DROP TABLE actors; -- ') | ('",
        "!recyclerie | !garage & !(x:*) <-> y <2> z",
        "a'b''c\\'d\\\\ \"quoted\" *:* :A :BCD !!!! &&&& |||| ((((",
        "\x01 le la les de des du \u200b\ufeff",
        "x" * 5000,
        "ressourcerie " + "mot " * 50_000,
    ],
)
async def test_hostile_text_neither_errors_nor_matches_everything(conn: asyncpg.Connection, hostile: str) -> None:
    query = need_query(hostile, hostile)
    for tsquery in (query.tsquery(), query.tsquery("BC"), query.concept_tsquery(), search_tsquery(hostile)):
        found = await matching(conn, tsquery)  # to_tsquery would raise on a syntax error
        assert len(found) < len(ACTORS)
    # The negations were words, not operators: actors without those words are not matched.
    assert "Le Garage" not in await matching(conn, need_query("!recyclerie | !jardin").tsquery())
