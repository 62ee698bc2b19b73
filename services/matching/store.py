"""SQL of the matching service: the actor replica, needs, candidate actors ranked in SQL, and matches."""

from __future__ import annotations

import math
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.contracts import territories
from services.contracts.events import ActorV1
from services.matching.model import PENDING_MATCH, MatchRead, NeedCreate, NeedRead, NeedUpdate
from services.matching.scoring import Activity, ActorProfile, NeedProfile, Weights, qpv_prefix

# --- actor replica ------------------------------------------------------------------------------


async def upsert_actor(conn: asyncpg.Connection, actor: ActorV1) -> bool:
    """Apply an actor's state if it is newer than the replica's; True when applied."""
    themes = list(dict.fromkeys([*actor.themes, *(a.theme for a in actor.activities)]))
    service_types = list(dict.fromkeys([*actor.service_types, *(a.service_type for a in actor.activities)]))
    reach = sorted({code for a in actor.activities if a.area.kind == "territories" for code in a.area.territories})
    radii = [a.area.radius_km or 0.0 for a in actor.activities if a.area.kind == "radius"]
    national = any(a.area.kind == "national" for a in actor.activities)
    applied = await conn.fetchval(
        """
        INSERT INTO actors (id, version, name, kind, themes, service_types, commune_code, territories, reach,
                            reach_radius_km, national, lat, lon, qpv_code, legal_form, status, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        ON CONFLICT (id) DO UPDATE SET
            version = EXCLUDED.version, name = EXCLUDED.name, kind = EXCLUDED.kind, themes = EXCLUDED.themes,
            service_types = EXCLUDED.service_types, commune_code = EXCLUDED.commune_code,
            territories = EXCLUDED.territories, reach = EXCLUDED.reach,
            reach_radius_km = EXCLUDED.reach_radius_km, national = EXCLUDED.national, lat = EXCLUDED.lat,
            lon = EXCLUDED.lon, qpv_code = EXCLUDED.qpv_code, legal_form = EXCLUDED.legal_form,
            status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
        WHERE actors.version < EXCLUDED.version
        RETURNING true
        """,
        uuid.UUID(actor.id),
        actor.version,
        actor.name,
        actor.kind,
        themes,
        service_types,
        actor.commune_code,
        list(actor.territories) or list(territories.territories_of_commune(actor.commune_code)),
        reach,
        max(radii, default=0.0),
        national,
        actor.location.lat if actor.location else None,
        actor.location.lon if actor.location else None,
        actor.qpv_code,
        actor.legal_form,
        actor.status,
        datetime.fromisoformat(actor.updated_at),
    )
    if not applied:
        return False
    await conn.execute(
        """
        INSERT INTO actor_texts (id, name, description, activities) VALUES ($1, $2, $3, $4)
        ON CONFLICT (id) DO UPDATE SET
            name = EXCLUDED.name, description = EXCLUDED.description, activities = EXCLUDED.activities
        """,
        uuid.UUID(actor.id),
        actor.name,
        actor.description,
        [a.model_dump(mode="json") for a in actor.activities],
    )
    return True


def actor_profile(row: asyncpg.Record, text_relevance: float = 0.0) -> ActorProfile:
    return ActorProfile(
        id=str(row["id"]),
        name=row["name"],
        kind=row["kind"],
        themes=frozenset(row["themes"]),
        service_types=frozenset(row["service_types"]),
        territories=frozenset(row["territories"]),
        lat=row["lat"],
        lon=row["lon"],
        qpv_code=row["qpv_code"],
        activities=tuple(Activity.from_json(a) for a in row["activities"]),
        text_relevance=text_relevance,
    )


# --- needs ------------------------------------------------------------------------------------------

NEED_COLUMNS = """id, version, owner_id, title, description, kind, themes, service_types, commune_code,
    lat, lon, perimeter, perimeter_radius_km, eligible_kinds, budget_min, budget_max, deadline, qpv_priority,
    status, closing_comment, created_at, updated_at"""


def authority_territory(legal_form: str | None, actor_territories: Sequence[str]) -> list[str]:
    """The territory a local authority governs, from its legal form (commune by default)."""
    form = (legal_form or "").lower()
    prefix = "COM-"
    if "région" in form or "region" in form:
        prefix = "REG-"
    elif "département" in form or "departement" in form or "collectivité européenne" in form:
        prefix = "DEP-"
    elif any(word in form for word in ("epci", "métropole", "metropole", "communauté", "communaute")):
        prefix = "EPCI-"
    return [code for code in actor_territories if code.startswith(prefix)][:1]


def effective_perimeter(row: asyncpg.Record, owner: asyncpg.Record | None) -> list[str]:
    if row["perimeter"] or row["perimeter_radius_km"]:
        return list(row["perimeter"])
    if owner is None:
        return [f"COM-{row['commune_code']}"]
    return authority_territory(owner["legal_form"], owner["territories"]) or [f"COM-{owner['commune_code']}"]


async def owner_of(conn: asyncpg.Connection | asyncpg.Pool, owner_id: uuid.UUID) -> asyncpg.Record | None:
    return await conn.fetchrow(
        "SELECT id, kind, legal_form, territories, commune_code, name, status FROM actors WHERE id = $1", owner_id
    )


async def owners_of(conn: asyncpg.Connection | asyncpg.Pool, owner_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT id, kind, legal_form, territories, commune_code, name, status FROM actors
               WHERE id = ANY($1::uuid[])""",
            owner_ids,
        )
    )


def need_read(row: asyncpg.Record, owner: asyncpg.Record | None) -> NeedRead:
    return NeedRead(
        id=str(row["id"]),
        version=row["version"],
        owner_id=str(row["owner_id"]),
        title=row["title"],
        description=row["description"],
        kind=row["kind"],
        themes=list(row["themes"]),
        service_types=list(row["service_types"]),
        commune_code=row["commune_code"],
        location={"lat": row["lat"], "lon": row["lon"]},
        perimeter={"territories": list(row["perimeter"]), "radius_km": row["perimeter_radius_km"]},
        effective_perimeter=effective_perimeter(row, owner),
        eligible_kinds=list(row["eligible_kinds"]),
        budget_min=float(row["budget_min"]) if row["budget_min"] is not None else None,
        budget_max=float(row["budget_max"]) if row["budget_max"] is not None else None,
        deadline=row["deadline"],
        qpv_priority=row["qpv_priority"],
        status=row["status"],
        closing_comment=row["closing_comment"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def need_profile(need: NeedRead) -> NeedProfile:
    return NeedProfile(
        id=need.id,
        owner_id=need.owner_id,
        themes=frozenset(need.themes),
        service_types=frozenset(need.service_types),
        place_codes=frozenset(territories.territories_of_commune(need.commune_code)),
        lat=need.location.lat,
        lon=need.location.lon,
        perimeter=frozenset(need.effective_perimeter),
        perimeter_radius_km=need.perimeter.radius_km,
        eligible_kinds=frozenset(need.eligible_kinds),
        qpv_priority=need.qpv_priority,
        qpv_prefix=qpv_prefix(territories.resolve_commune(need.commune_code).departement),
    )


def _need_values(body: NeedCreate | NeedUpdate) -> list[Any]:
    return [
        body.title,
        body.description,
        body.kind.value,
        body.themes,
        body.service_types,
        body.commune_code,
        body.location.lat,
        body.location.lon,
        body.perimeter.territories,
        body.perimeter.radius_km,
        body.eligible_kinds,
        body.budget_min,
        body.budget_max,
        body.deadline,
        body.qpv_priority,
    ]


async def insert_need(conn: asyncpg.Connection, owner_id: uuid.UUID, body: NeedCreate) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        INSERT INTO needs (id, owner_id, title, description, kind, themes, service_types, commune_code,
                           lat, lon, perimeter, perimeter_radius_km, eligible_kinds, budget_min, budget_max,
                           deadline, qpv_priority)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)
        RETURNING {NEED_COLUMNS}
        """,
        uuid.uuid4(),
        owner_id,
        *_need_values(body),
    )
    return row


async def update_need(
    conn: asyncpg.Connection, need_id: uuid.UUID, body: NeedUpdate, expected_version: int
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        UPDATE needs SET title = $3, description = $4, kind = $5, themes = $6, service_types = $7,
            commune_code = $8, lat = $9, lon = $10, perimeter = $11, perimeter_radius_km = $12,
            eligible_kinds = $13, budget_min = $14, budget_max = $15, deadline = $16, qpv_priority = $17,
            version = version + 1, updated_at = now()
        WHERE id = $1 AND version = $2 AND status = 'published'
        RETURNING {NEED_COLUMNS}
        """,
        need_id,
        expected_version,
        *_need_values(body),
    )
    return row


async def get_needs(conn: asyncpg.Connection | asyncpg.Pool, need_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(await conn.fetch(f"SELECT {NEED_COLUMNS} FROM needs WHERE id = ANY($1::uuid[])", need_ids))


async def get_need(
    conn: asyncpg.Connection | asyncpg.Pool, need_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(f"SELECT {NEED_COLUMNS} FROM needs WHERE id = $1{lock}", need_id)
    return row


async def set_need_status(
    conn: asyncpg.Connection, need_id: uuid.UUID, status: str, comment: str | None
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        UPDATE needs SET status = $2, closing_comment = $3, version = version + 1, updated_at = now()
        WHERE id = $1 RETURNING {NEED_COLUMNS}
        """,
        need_id,
        status,
        comment,
    )
    return row


async def expired_needs(conn: asyncpg.Connection, limit: int = 100) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {NEED_COLUMNS} FROM needs WHERE status = 'published' AND deadline <= now()
                ORDER BY deadline LIMIT $1 FOR UPDATE SKIP LOCKED""",
            limit,
        )
    )


async def list_needs(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    owner_id: uuid.UUID | None,
    statuses: list[str] | None,
    after: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""
            SELECT {NEED_COLUMNS} FROM needs
            WHERE ($1::uuid IS NULL OR owner_id = $1) AND ($2::text[] IS NULL OR status = ANY($2))
              AND ($3::timestamptz IS NULL OR (created_at, id) < ($3, $4::uuid))
            ORDER BY created_at DESC, id DESC LIMIT $5
            """,
            owner_id,
            statuses,
            after[0] if after else None,
            after[1] if after else None,
            limit,
        )
    )


# --- candidates, ranked and capped in SQL ------------------------------------------------------------

# An OR query of the need's French lexemes, so that any shared word counts.
NEED_QUERY = """(SELECT to_tsquery('simple', coalesce(string_agg(quote_literal(l), ' | '), ''))
   FROM (SELECT l FROM unnest(tsvector_to_array(to_tsvector('fr_unaccent', {text}))) AS l
         WHERE length(l) > 2 LIMIT 40) AS lexemes)"""
RERANK_FACTOR = 4  # the structured rank keeps this many times `limit` actors; text relevance reorders them


def _overlap(param: str, count: int, column: str) -> str:
    """How many of the need's codes ($param, `count` of them) the actor's `column` holds, as SQL."""
    return " + ".join(f"(({param}::text[])[{i}] = ANY({column}))::int" for i in range(1, count + 1)) or "0"


EARTH_RADIUS_KM = 6371.0


def _rank_sql(weights: Weights, need: NeedRead) -> tuple[str, list[float]]:
    """The score of scoring.evaluate in SQL without its text part (added on the short list); $13-$18 and $20.

    Distance here only preselects candidates (Python scores the short list exactly), so it is the
    equirectangular approximation — arithmetic on the row's coordinates, with the cosine of the need's
    latitude passed once as $20 — instead of earth_distance(ll_to_earth(…)), whose trigonometry per row was
    40 % of the query over tens of thousands of candidates (bench/matching.py). Within 100 km it differs from
    the great-circle distance by well under 1 %; farther away the closeness term is nil either way.
    """
    total = weights.themes + weights.service_types + weights.distance + weights.text
    if need.qpv_priority:
        total += weights.qpv
    total = total or 1.0
    themes = f"({_overlap('$2', len(need.themes), 'c.themes')})::float8 / {max(len(need.themes), 1)}"
    services = (
        f"({_overlap('$3', len(need.service_types), 'c.service_types')})::float8 / {len(need.service_types)}"
        if need.service_types
        else "1.0"
    )
    sql = f"""(
        $13 * {themes}
      + $14 * {services}
      + $15 * CASE WHEN c.lat IS NULL THEN 0.0
                   ELSE exp(-{EARTH_RADIUS_KM} * sqrt(radians(c.lat - $5) ^ 2 + ($20 * radians(c.lon - $6)) ^ 2)
                            / $18) END
      + $17 * CASE WHEN $11 AND c.qpv_code LIKE $19 THEN 1.0 ELSE 0.0 END
    )"""
    params = [
        weights.themes / total,
        weights.service_types / total,
        weights.distance / total,
        weights.text / total,
        (weights.qpv / total) if need.qpv_priority else 0.0,
        weights.distance_scale_km,
    ]
    return sql, params


async def candidates(
    conn: asyncpg.Connection | asyncpg.Pool, need: NeedRead, weights: Weights, limit: int
) -> list[ActorProfile]:
    """Actors that may answer the need, best first.

    Each geographic rule is one index probe over the narrow replica rows; the union is ranked by the
    structured criteria (themes, service types, distance, QPV) and cut to `RERANK_FACTOR * limit`;
    only that short list reads the actors' texts, adds the full-text relevance and is cut to `limit`.
    """
    rank, rank_params = _rank_sql(weights, need)
    radius = need.perimeter.radius_km or 0.0
    columns = "a.id, a.kind, a.themes, a.service_types, a.lat, a.lon, a.qpv_code"
    rows = await conn.fetch(
        f"""
        WITH p AS (
            SELECT ll_to_earth($5, $6) AS place
        ), cand AS (
            SELECT {columns} FROM actors a WHERE a.status = 'active' AND a.themes && $2 AND a.territories && $7
            UNION
            SELECT {columns} FROM actors a, p WHERE a.status = 'active' AND a.lat IS NOT NULL AND $8 > 0
               AND earth_box(p.place, $8 * 1000) @> ll_to_earth(a.lat, a.lon)
               AND earth_distance(p.place, ll_to_earth(a.lat, a.lon)) <= $8 * 1000 AND a.themes && $2
            UNION
            SELECT {columns} FROM actors a
             WHERE a.status = 'active' AND a.reach <> '{{}}' AND a.reach && $9 AND a.themes && $2
            UNION
            SELECT {columns} FROM actors a, p WHERE a.status = 'active' AND a.reach_radius_km > 0
               AND a.lat IS NOT NULL AND a.themes && $2
               AND earth_box(ll_to_earth(a.lat, a.lon), a.reach_radius_km * 1000) @> p.place
            UNION
            SELECT {columns} FROM actors a WHERE a.status = 'active' AND a.national AND a.themes && $2
        ), short AS (
            SELECT c.id, {rank} AS structured
            FROM cand c, p
            WHERE c.id <> $1 AND (CASE WHEN cardinality($4::text[]) = 0 THEN c.kind <> 'local_authority'
                                       ELSE c.kind = ANY($4) END)
            ORDER BY structured DESC, c.id
            LIMIT $10 * {RERANK_FACTOR}
        ), q AS (
            SELECT {NEED_QUERY.format(text="$12")} AS query
        )
        SELECT a.id, a.name, a.kind, a.themes, a.service_types, a.territories, a.lat, a.lon, a.qpv_code,
               t.activities, ts_rank(t.search, q.query, 32) AS text_rank,
               s.structured + $16 * ts_rank(t.search, q.query, 32) AS rank
        FROM short s JOIN actors a USING (id) JOIN actor_texts t USING (id), q
        ORDER BY rank DESC, a.id
        LIMIT $10
        """,
        uuid.UUID(need.owner_id),
        need.themes,
        need.service_types,
        need.eligible_kinds,
        need.location.lat,
        need.location.lon,
        need.effective_perimeter,
        radius,
        list(territories.territories_of_commune(need.commune_code)),
        limit,
        need.qpv_priority,
        f"{need.title} {need.description}",
        *rank_params,
        qpv_prefix(territories.resolve_commune(need.commune_code).departement) + "%",
        math.cos(math.radians(need.location.lat)),
    )
    return [actor_profile(row, float(row["text_rank"])) for row in rows]


async def open_needs_for(conn: asyncpg.Connection, actor_id: uuid.UUID) -> list[tuple[asyncpg.Record, float]]:
    """Open needs sharing a theme with the actor, with the text relevance of the actor to each."""
    rows = await conn.fetch(
        f"""
        SELECT n.*, ts_rank(t.search, {NEED_QUERY.format(text="n.title || ' ' || n.description")}, 32) AS text_rank
        FROM actors a JOIN actor_texts t USING (id)
        JOIN needs n ON n.status = 'published' AND n.deadline > now() AND n.themes && a.themes
        WHERE a.id = $1 AND a.status = 'active'
        """,
        actor_id,
    )
    return [(row, float(row["text_rank"])) for row in rows]


# --- matches -------------------------------------------------------------------------------------------

MATCH_COLUMNS = (
    "m.id, m.need_id, m.actor_id, m.score, m.reasons, m.status, m.response_comment, m.created_at, m.updated_at"
)


def match_read(row: asyncpg.Record) -> MatchRead:
    return MatchRead(
        id=str(row["id"]),
        need_id=str(row["need_id"]),
        actor_id=str(row["actor_id"]),
        actor_name=row.get("actor_name"),
        score=float(row["score"]),
        reasons=row["reasons"],
        status=row["status"],
        response_comment=row["response_comment"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def match_state(conn: asyncpg.Connection, need_id: uuid.UUID) -> tuple[dict[uuid.UUID, float], int]:
    """The actors already matched to a need with their scores, and how many said interested."""
    rows = await conn.fetch("SELECT actor_id, score, status FROM matches WHERE need_id = $1", need_id)
    interested = sum(1 for r in rows if r["status"] in ("interested", "selected"))
    return {r["actor_id"]: float(r["score"]) for r in rows}, interested


async def insert_match(
    conn: asyncpg.Connection, need_id: uuid.UUID, actor_id: uuid.UUID, score: float, reasons: list[Any], status: str
) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""
        INSERT INTO matches AS m (id, need_id, actor_id, score, reasons, status)
        VALUES ($1, $2, $3, $4, $5, $6)
        ON CONFLICT (need_id, actor_id) DO NOTHING
        RETURNING {MATCH_COLUMNS}
        """,
        uuid.uuid4(),
        need_id,
        actor_id,
        score,
        reasons,
        status,
    )
    return row


async def withdraw_pending(conn: asyncpg.Connection, need_id: uuid.UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""
            UPDATE matches AS m SET status = 'withdrawn', updated_at = now()
            WHERE need_id = $1 AND status = ANY($2::text[])
            RETURNING {MATCH_COLUMNS}
            """,
            need_id,
            [s.value for s in PENDING_MATCH],
        )
    )


async def get_match(
    conn: asyncpg.Connection | asyncpg.Pool, match_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE OF m" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"""SELECT {MATCH_COLUMNS}, a.name AS actor_name, n.owner_id, n.title AS need_title, n.status AS need_status
            FROM matches m JOIN needs n ON n.id = m.need_id LEFT JOIN actors a ON a.id = m.actor_id
            WHERE m.id = $1{lock}""",
        match_id,
    )
    return row


async def get_matches(conn: asyncpg.Connection | asyncpg.Pool, match_ids: list[uuid.UUID]) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {MATCH_COLUMNS}, a.name AS actor_name, n.owner_id
                FROM matches m JOIN needs n ON n.id = m.need_id LEFT JOIN actors a ON a.id = m.actor_id
                WHERE m.id = ANY($1::uuid[])""",
            match_ids,
        )
    )


async def set_match_status(
    conn: asyncpg.Connection, match_id: uuid.UUID, status: str, comment: str | None
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        UPDATE matches AS m SET status = $2, response_comment = coalesce($3, response_comment), updated_at = now()
        WHERE id = $1 RETURNING {MATCH_COLUMNS}
        """,
        match_id,
        status,
        comment,
    )
    return row


async def list_matches(
    conn: asyncpg.Connection | asyncpg.Pool, *, need_id: uuid.UUID | None = None, actor_id: uuid.UUID | None = None
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {MATCH_COLUMNS}, a.name AS actor_name FROM matches m LEFT JOIN actors a ON a.id = m.actor_id
                WHERE ($1::uuid IS NULL OR m.need_id = $1) AND ($2::uuid IS NULL OR m.actor_id = $2)
                ORDER BY m.score DESC, m.id LIMIT 500""",
            need_id,
            actor_id,
        )
    )


def now() -> datetime:
    return datetime.now(UTC)
