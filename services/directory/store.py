"""Every SQL query of the directory: actors stored, found, paged and snapshotted."""

from __future__ import annotations

import base64
import json
import re
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

import asyncpg

from services.common.rules import storable_instant
from services.contracts import synonyms
from services.directory.model import (
    ActorCreate,
    ActorOrigin,
    ActorRead,
    ActorStatus,
    all_service_types,
    all_themes,
    derived_geography,
)

COLUMNS = """
    id, version, name, description, kind, legal_form, siret, rna, local_register, source_id, themes,
    service_types, activities, street, postal_code, commune_code, commune_name, departement, region, epci,
    territories, lat, lon, qpv_code, website, networks, contact, status, created_at, updated_at
"""


def to_read(row: asyncpg.Record | dict[str, Any], *, with_contact: bool = True) -> ActorRead:
    values = dict(row)
    lat, lon = values.pop("lat"), values.pop("lon")
    values["location"] = {"lat": lat, "lon": lon} if lat is not None else None
    values["id"] = str(values["id"])
    if not with_contact:
        values["contact"] = None
    values.pop("sort_key", None)
    return ActorRead.model_validate(values)


def row_values(fields: ActorCreate) -> dict[str, Any]:
    geo = derived_geography(fields.commune_code)
    return {
        "name": fields.name,
        "description": fields.description,
        "kind": fields.kind,
        "legal_form": fields.legal_form,
        "siret": fields.siret,
        "rna": fields.rna,
        "local_register": fields.local_register,
        "source_id": fields.source_id,
        "themes": all_themes(fields),
        "service_types": all_service_types(fields),
        "activities": [a.model_dump(mode="json") for a in fields.activities],
        "street": fields.street,
        "postal_code": fields.postal_code,
        **geo,
        "lat": fields.location.lat if fields.location else None,
        "lon": fields.location.lon if fields.location else None,
        "qpv_code": fields.qpv_code,
        "website": str(fields.website) if fields.website else None,
        "networks": fields.networks,
        "contact": fields.contact.model_dump(exclude_none=True) if fields.contact else None,
    }


CONTRACT_FIELDS = (
    "name",
    "description",
    "kind",
    "legal_form",
    "siret",
    "rna",
    "local_register",
    "themes",
    "service_types",
    "activities",
    "commune_code",
    "commune_name",
    "postal_code",
    "departement",
    "region",
    "epci",
    "territories",
    "qpv_code",
    "website",
    "networks",
)


def contract_data(actor_id: uuid.UUID, version: int, values: dict[str, Any], updated_at: datetime) -> dict[str, Any]:
    """The `ActorV1` JSON of a new row, built directly (bulk imports); equal to `to_contract(...)` dumped."""
    data = {name: values[name] for name in CONTRACT_FIELDS}
    data["activities"] = [
        {
            **a,
            "area": {
                "kind": a["area"]["kind"],
                "territories": a["area"].get("territories", []),
                "radius_km": a["area"].get("radius_km"),
            },
        }
        for a in values["activities"]
    ]
    data["location"] = {"lat": values["lat"], "lon": values["lon"]} if values["lat"] is not None else None
    data.update(id=str(actor_id), version=version, status=ActorStatus.active.value, updated_at=updated_at.isoformat())
    return data


def read_from_values(
    actor_id: uuid.UUID, version: int, values: dict[str, Any], created_at: datetime, updated_at: datetime
) -> ActorRead:
    """The actor a row of these column values reads as (used to build events without a round trip)."""
    return to_read(
        {
            **values,
            "id": actor_id,
            "version": version,
            "status": ActorStatus.active,
            "created_at": created_at,
            "updated_at": updated_at,
        }
    )


async def find_holder(
    conn: asyncpg.Connection, fields: ActorCreate, exclude: uuid.UUID | None = None
) -> tuple[str, str, str] | None:
    """(identifier field, value, actor id) of another actor already holding one of these identifiers."""
    for column in ("siret", "rna", "local_register", "source_id"):
        value = getattr(fields, column)
        if value is None:
            continue
        holder = await conn.fetchval(
            f"SELECT id FROM actors WHERE {column} = $1 AND ($2::uuid IS NULL OR id <> $2)", value, exclude
        )
        if holder is not None:
            return column, value, str(holder)
    return None


async def insert_actor(
    conn: asyncpg.Connection, fields: ActorCreate, origin: ActorOrigin, actor_id: uuid.UUID | None = None
) -> asyncpg.Record:
    values = row_values(fields)
    values["id"] = actor_id or uuid.uuid4()
    values["origin"] = origin.value
    names = list(values)
    placeholders = ", ".join(f"${i}" for i in range(1, len(names) + 1))
    return await conn.fetchrow(
        f"INSERT INTO actors ({', '.join(names)}) VALUES ({placeholders}) RETURNING {COLUMNS}",
        *values.values(),
    )


async def update_actor(
    conn: asyncpg.Connection, actor_id: uuid.UUID, fields: ActorCreate, expected_version: int | None
) -> asyncpg.Record | None:
    """Replace the editable fields when the stored version is the expected one; None when stale or missing."""
    values = row_values(fields)
    names = list(values)
    assignments = ", ".join(f"{name} = ${i}" for i, name in enumerate(names, start=3))
    return await conn.fetchrow(
        f"""
        UPDATE actors SET {assignments}, version = version + 1, updated_at = now()
        WHERE id = $1 AND ($2::int IS NULL OR version = $2)
        RETURNING {COLUMNS}
        """,
        actor_id,
        expected_version,
        *values.values(),
    )


async def set_status(
    conn: asyncpg.Connection, actor_id: uuid.UUID, status: ActorStatus, expected_version: int | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(
        f"""
        UPDATE actors SET status = $3, version = version + 1, updated_at = now()
        WHERE id = $1 AND ($2::int IS NULL OR version = $2) AND status <> $3
        RETURNING {COLUMNS}
        """,
        actor_id,
        expected_version,
        status,
    )


async def get_actor(
    conn: asyncpg.Connection | asyncpg.Pool, actor_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    return await conn.fetchrow(f"SELECT {COLUMNS} FROM actors WHERE id = $1{lock}", actor_id)


async def get_actors(conn: asyncpg.Connection | asyncpg.Pool, ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(await conn.fetch(f"SELECT {COLUMNS} FROM actors WHERE id = ANY($1::uuid[])", ids))


async def find_by_identifiers(conn: asyncpg.Connection, fields: ActorCreate) -> asyncpg.Record | None:
    """The actor an import row designates: by source id first, then SIRET, RNA or register reference."""
    for column in ("source_id", "siret", "rna", "local_register"):
        value = getattr(fields, column)
        if value is not None:
            row = await conn.fetchrow(f"SELECT {COLUMNS} FROM actors WHERE {column} = $1 FOR UPDATE", value)
            if row is not None:
                return row
    return None


async def lock_by_identifiers(conn: asyncpg.Connection, identifiers: list[tuple[str, str]]) -> list[asyncpg.Record]:
    """The actors holding any of these (identifier column, value) pairs, locked in id order (no deadlock)."""
    values: dict[str, list[str]] = {column: [] for column in ("source_id", "siret", "rna", "local_register")}
    for column, value in identifiers:
        values[column].append(value)
    return list(
        await conn.fetch(
            f"""
            SELECT {COLUMNS} FROM actors
            WHERE source_id = ANY($1::text[]) OR siret = ANY($2::text[]) OR rna = ANY($3::text[])
               OR local_register = ANY($4::text[])
            ORDER BY id FOR UPDATE
            """,
            values["source_id"],
            values["siret"],
            values["rna"],
            values["local_register"],
        )
    )


async def copy_new_actors(conn: asyncpg.Connection, sample: ActorCreate, records: list[tuple[Any, ...]]) -> None:
    """Insert new actors with one COPY: each record is (id, created_at, updated_at, *row_values(...).values()).

    `sample` is any of them, for the column names (`row_values` always has the same keys).
    """
    columns = ["id", "created_at", "updated_at", *row_values(sample).keys(), "origin"]
    imported = ActorOrigin.imported.value
    await conn.copy_records_to_table("actors", records=[(*r, imported) for r in records], columns=columns)


# --- search --------------------------------------------------------------------------------

SortOrder = Literal["name", "distance", "relevance", "updated"]


@dataclass
class ActorSearch:
    text: str | None = None
    kinds: list[str] = field(default_factory=list)
    themes: list[str] = field(default_factory=list)
    service_types: list[str] = field(default_factory=list)
    territories: list[str] = field(default_factory=list)
    near: tuple[float, float, float] | None = None  # lat, lon, radius km
    in_qpv: bool | None = None
    include_archived: bool = False
    sort: SortOrder | None = None


def encode_cursor(sort: str, key: Any, actor_id: str) -> str:
    raw = json.dumps([sort, key, actor_id], separators=(",", ":"))
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[str, Any, str]:
    """Raise ValueError on a cursor this API did not produce."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        sort, key, actor_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        uuid.UUID(actor_id)
        return str(sort), key, actor_id
    except (ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ValueError("not a cursor returned by this API") from exc


@dataclass
class Page:
    rows: list[tuple[asyncpg.Record, float | None, str]]  # row, distance km, cursor
    has_next: bool
    total: int | None


async def search_actors(
    conn: asyncpg.Connection | asyncpg.Pool, query: ActorSearch, *, first: int, after: str | None, with_total: bool
) -> Page:
    """Search with full text first; when it finds too little, search again tolerating typos in names.

    The mode travels in the cursor, so that every page of one search uses the same one.
    """
    if not query.text:
        return await _search(conn, query, first=first, after=after, with_total=with_total, fuzzy=False)
    fuzzy = after is not None and decode_cursor(after)[0].endswith("~")
    if not fuzzy:
        strict = await _search(conn, query, first=first, after=after, with_total=with_total, fuzzy=False)
        if after or len(strict.rows) >= first:
            return strict
    corrected = await correct_words(conn, query.text)
    if corrected is None:
        if fuzzy:  # the words were corrected on the first page but are all known now
            return await _search(conn, query, first=first, after=after, with_total=with_total, fuzzy=False)
        return strict
    fuzzy_query = replace(query, text=corrected)
    return await _search(conn, fuzzy_query, first=first, after=after, with_total=with_total, fuzzy=True)


async def correct_words(conn: asyncpg.Connection | asyncpg.Pool, text: str) -> str | None:
    """The query with each unknown word replaced by the closest known one; None when nothing changed."""
    words = [w for w in re.findall(r"\w+", text.lower()) if w]
    if not words:
        return None
    rows = await conn.fetch(
        """
        SELECT q.w AS original,
               CASE WHEN length(q.w) < 4 OR EXISTS (SELECT 1 FROM search_words WHERE word = f_unaccent(q.w))
                    THEN q.w
                    ELSE coalesce((SELECT word FROM search_words WHERE word % f_unaccent(q.w)
                                   ORDER BY word <-> f_unaccent(q.w) LIMIT 1), q.w)
               END AS corrected
        FROM unnest($1::text[]) WITH ORDINALITY AS q(w, i) ORDER BY q.i
        """,
        words,
    )
    corrected = [row["corrected"] for row in rows]
    if [row["original"] for row in rows] == corrected:
        return None
    return " ".join(corrected)


async def _search(
    conn: asyncpg.Connection | asyncpg.Pool,
    query: ActorSearch,
    *,
    first: int,
    after: str | None,
    with_total: bool,
    fuzzy: bool,
) -> Page:
    """Filter, rank and page actors with keyset cursors (stable while rows are inserted)."""
    where: list[str] = []
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    if not query.include_archived:
        where.append("status = 'active'")
    if query.kinds:
        where.append(f"kind = ANY({arg(query.kinds)}::text[])")
    if query.themes:
        where.append(f"themes && {arg(query.themes)}::text[]")
    if query.service_types:
        where.append(f"service_types && {arg(query.service_types)}::text[]")
    if query.territories:
        where.append(f"territories && {arg(query.territories)}::text[]")
    if query.in_qpv is not None:
        where.append("qpv_code IS NOT NULL" if query.in_qpv else "qpv_code IS NULL")
    distance_expr = "NULL::float8"
    if query.near is not None:
        lat, lon, radius_km = query.near
        point = f"ll_to_earth({arg(lat)}, {arg(lon)})"
        radius = arg(radius_km * 1000.0)
        where.append(f"lat IS NOT NULL AND earth_box({point}, {radius}) @> ll_to_earth(lat, lon)")
        distance_expr = f"earth_distance({point}, ll_to_earth(lat, lon)) / 1000.0"
        where.append(f"earth_distance({point}, ll_to_earth(lat, lon)) <= {radius}")
    relevance_expr = "0::float8"
    if query.text:
        # Every word required, each of the field's concepts by any of its names (a search for "recyclerie" finds
        # the ressourcerie), with the synonyms matching uses (services.contracts.synonyms). A text without a usable
        # word goes to websearch_to_tsquery, which makes it an empty query that matches nothing.
        # In fuzzy mode the text is already the corrected one (see `correct_words`).
        written = synonyms.search_tsquery(query.text)
        tsquery = (
            f"to_tsquery('fr_unaccent', {arg(written)})"
            if written is not None
            else f"websearch_to_tsquery('fr_unaccent', {arg(query.text)})"
        )
        where.append(f"search @@ {tsquery}")
        relevance_expr = f"ts_rank(search, {tsquery})::float8"

    sort = query.sort or ("distance" if query.near else "relevance" if query.text else "name")
    if sort == "distance" and query.near is None:
        raise ValueError("sort=distance needs a near point")
    if sort == "relevance" and not query.text:
        raise ValueError("sort=relevance needs a text query")
    sort_expr, direction = {
        "name": ("lower(name)", "ASC"),
        "distance": (distance_expr, "ASC"),
        "relevance": (relevance_expr, "DESC"),
        "updated": ("updated_at", "DESC"),
    }[sort]

    base_where = list(where)
    if after:
        cursor_sort, key, last_id = decode_cursor(after)
        if cursor_sort.rstrip("~") != sort:
            raise ValueError("the cursor belongs to another sort order")
        if sort == "updated":
            key = storable_instant(datetime.fromisoformat(key))
        op = ">" if direction == "ASC" else "<"
        cast = {"name": "text", "distance": "float8", "relevance": "float8", "updated": "timestamptz"}[sort]
        where.append(f"({sort_expr}, id) {op} ({arg(key)}::{cast}, {arg(uuid.UUID(last_id))}::uuid)")

    clause = ("WHERE " + " AND ".join(where)) if where else ""
    limit = arg(first + 1)
    rows = await conn.fetch(
        f"""
        SELECT {COLUMNS}, {distance_expr} AS distance_km, {sort_expr} AS sort_key
        FROM actors {clause}
        ORDER BY {sort_expr} {direction}, id {direction}
        LIMIT {limit}
        """,
        *args,
    )
    total = None
    if with_total:
        count_args = args[: len(args) - (3 if after else 1)]
        count_clause = ("WHERE " + " AND ".join(base_where)) if base_where else ""
        total = int(await conn.fetchval(f"SELECT count(*) FROM actors {count_clause}", *count_args))
    page = []
    for row in rows[:first]:
        key = row["sort_key"]
        if isinstance(key, datetime):
            key = key.isoformat()
        page.append((row, row["distance_km"], encode_cursor(sort + ("~" if fuzzy else ""), key, str(row["id"]))))
    return Page(page, len(rows) > first, total)


async def snapshot(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    updated_since: datetime | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> tuple[list[asyncpg.Record], datetime]:
    """A page of every actor (archived included) in (updated_at, id) order, and the watermark to resume from.

    The watermark lags a few seconds behind the clock: a transaction that started earlier may still
    commit rows stamped before it, and a replica applies only newer versions, so re-reading is harmless.
    """
    rows = await conn.fetch(
        f"""
        SELECT {COLUMNS} FROM actors
        WHERE ($1::timestamptz IS NULL OR updated_at >= $1)
          AND ($2::timestamptz IS NULL OR (updated_at, id) > ($2, $3::uuid))
        ORDER BY updated_at, id
        LIMIT $4
        """,
        updated_since,
        after[0] if after else None,
        after[1] if after else None,
        limit,
    )
    watermark = await conn.fetchval("SELECT now() - interval '5 seconds'")
    return list(rows), watermark


# --- persons, memberships and claims -------------------------------------------------------------------

PERSON_COLUMNS = "id, email, name, created_at"


async def origin_and_contact(conn: asyncpg.Connection | asyncpg.Pool, actor_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, name, kind, origin, status, contact->>'email' AS contact_email FROM actors WHERE id = $1",
        actor_id,
    )


async def person_by_email(conn: asyncpg.Connection | asyncpg.Pool, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM persons WHERE lower(email) = lower($1)", email)


async def person_by_id(conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(f"SELECT {PERSON_COLUMNS} FROM persons WHERE id = $1", person_id)


async def insert_person(conn: asyncpg.Connection, email: str, name: str) -> asyncpg.Record:
    """The person of this address: created with this name, or the one already there (its name kept)."""
    row = await conn.fetchrow(
        f"""INSERT INTO persons (id, email, name) VALUES ($1, $2, $3)
            ON CONFLICT (lower(email)) DO NOTHING RETURNING {PERSON_COLUMNS}""",
        uuid.uuid4(),
        email,
        name,
    )
    if row is None:
        row = await conn.fetchrow(
            f"SELECT {PERSON_COLUMNS} FROM persons WHERE lower(email) = lower($1) FOR UPDATE", email
        )
    assert row is not None  # inserted, or there already
    return row


async def memberships_of(conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID) -> list[asyncpg.Record]:
    """A person's memberships of active actors, with each actor's id, name and kind, by actor name."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT m.role, m.created_at, a.id AS actor_id, a.name AS actor_name, a.kind AS actor_kind
           FROM memberships m JOIN actors a ON a.id = m.actor_id
           WHERE m.person_id = $1 AND a.status = 'active'
           ORDER BY lower(a.name), a.id""",
        person_id,
    )
    return rows


async def membership_role(
    conn: asyncpg.Connection | asyncpg.Pool, person_id: uuid.UUID, actor_id: uuid.UUID
) -> str | None:
    role: str | None = await conn.fetchval(
        "SELECT role FROM memberships WHERE person_id = $1 AND actor_id = $2", person_id, actor_id
    )
    return role


async def upsert_membership(
    conn: asyncpg.Connection, person_id: uuid.UUID, actor_id: uuid.UUID, role: str
) -> asyncpg.Record:
    """Make the person a member with this role (an existing membership takes the new role)."""
    row: asyncpg.Record = await conn.fetchrow(
        """INSERT INTO memberships (person_id, actor_id, role) VALUES ($1, $2, $3)
           ON CONFLICT (person_id, actor_id) DO UPDATE SET role = excluded.role
           RETURNING role, created_at""",
        person_id,
        actor_id,
        role,
    )
    return row


async def members_of(conn: asyncpg.Connection | asyncpg.Pool, actor_id: uuid.UUID) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT p.id, p.email, p.name, p.created_at, m.role, m.created_at AS member_since
           FROM memberships m JOIN persons p ON p.id = m.person_id
           WHERE m.actor_id = $1 ORDER BY lower(p.name), p.id""",
        actor_id,
    )
    return rows


async def delete_membership(conn: asyncpg.Connection, person_id: uuid.UUID, actor_id: uuid.UUID) -> bool:
    deleted = await conn.fetchval(
        "DELETE FROM memberships WHERE person_id = $1 AND actor_id = $2 RETURNING 1", person_id, actor_id
    )
    return deleted is not None


async def admins_of(conn: asyncpg.Connection, actor_id: uuid.UUID) -> int:
    count: int = await conn.fetchval(
        "SELECT count(*) FROM memberships WHERE actor_id = $1 AND role = 'admin'", actor_id
    )
    return count


async def claimable_by(conn: asyncpg.Connection, email: str, origins: list[str]) -> list[asyncpg.Record]:
    """Active actors of these origins whose registered contact is this address, locked while claimed."""
    rows: list[asyncpg.Record] = await conn.fetch(
        """SELECT id, name, kind FROM actors
           WHERE lower(contact->>'email') = lower($1) AND status = 'active' AND origin = ANY($2::text[])
           ORDER BY lower(name), id FOR UPDATE""",
        email,
        origins,
    )
    return rows


async def pending_claim(conn: asyncpg.Connection, actor_id: uuid.UUID, email: str) -> asyncpg.Record | None:
    return await conn.fetchrow(
        """SELECT id, actor_id, email, status, created_at FROM claims
           WHERE actor_id = $1 AND lower(email) = lower($2) AND status = 'pending'""",
        actor_id,
        email,
    )


async def insert_claim(conn: asyncpg.Connection, actor_id: uuid.UUID, email: str) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        """INSERT INTO claims (id, actor_id, email) VALUES ($1, $2, $3)
           RETURNING id, actor_id, email, status, created_at""",
        uuid.uuid4(),
        actor_id,
        email,
    )
    return row


async def lock_claim(conn: asyncpg.Connection, claim_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, actor_id, email, status, created_at FROM claims WHERE id = $1 FOR UPDATE", claim_id
    )


async def decide_claim(conn: asyncpg.Connection, claim_id: uuid.UUID, status: str) -> None:
    await conn.execute("UPDATE claims SET status = $2, decided_at = now() WHERE id = $1", claim_id, status)


async def void_pending_claims(conn: asyncpg.Connection, actor_id: uuid.UUID) -> int:
    voided = await conn.fetch(
        """UPDATE claims SET status = 'void', decided_at = now() WHERE actor_id = $1 AND status = 'pending'
           RETURNING id""",
        actor_id,
    )
    return len(voided)


async def erase_person(conn: asyncpg.Connection, email: str) -> tuple[int, int, int]:
    """Delete the person of this address, its memberships and every claim made from it: how many of each."""
    # The memberships first, to count them: deleting the person would cascade to them uncounted.
    memberships = await conn.fetch(
        """DELETE FROM memberships WHERE person_id IN (SELECT id FROM persons WHERE lower(email) = lower($1))
           RETURNING actor_id""",
        email,
    )
    persons = await conn.fetch("DELETE FROM persons WHERE lower(email) = lower($1) RETURNING id", email)
    claims = await conn.fetch("DELETE FROM claims WHERE lower(email) = lower($1) RETURNING id", email)
    return len(persons), len(memberships), len(claims)
