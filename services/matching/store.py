"""SQL of the matching service: the actor replica, needs, matches and webhook endpoints (candidates: `planner`)."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal

import asyncpg
import orjson

from services.contracts import territories
from services.contracts.doors import activities_text
from services.contracts.events import ActorV1
from services.contracts.synonyms import KEYS_VERSION, concepts_of, need_query, text_keys
from services.matching.model import (
    DeliveryRead,
    EndpointStatus,
    MatchRead,
    MatchStatus,
    NeedCreate,
    NeedRead,
    NeedStatus,
    NeedUpdate,
    WebhookCreate,
    WebhookRead,
    WebhookUpdate,
)
from services.matching.scoring import Activity, ActorProfile

# --- actor replica ------------------------------------------------------------------------------


async def upsert_actor(conn: asyncpg.Connection, actor: ActorV1) -> bool:
    """Apply an actor's state if it is newer than the replica's; True when applied."""
    themes = list(dict.fromkeys([*actor.themes, *(a.theme for a in actor.activities)]))
    service_types = list(dict.fromkeys([*actor.service_types, *(a.service_type for a in actor.activities)]))
    reach = sorted({code for a in actor.activities if a.area.kind == "territories" for code in a.area.territories})
    radii = [a.area.radius_km or 0.0 for a in actor.activities if a.area.kind == "radius"]
    national = any(a.area.kind == "national" for a in actor.activities)
    activities = [a.model_dump(mode="json") for a in actor.activities]
    applied = await conn.fetchval(
        """
        INSERT INTO actors (id, version, name, kind, themes, service_types, commune_code, territories, reach,
                            reach_radius_km, national, lat, lon, qpv_code, legal_form, status, updated_at, concepts)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
        ON CONFLICT (id) DO UPDATE SET
            version = EXCLUDED.version, name = EXCLUDED.name, kind = EXCLUDED.kind, themes = EXCLUDED.themes,
            service_types = EXCLUDED.service_types, commune_code = EXCLUDED.commune_code,
            territories = EXCLUDED.territories, reach = EXCLUDED.reach,
            reach_radius_km = EXCLUDED.reach_radius_km, national = EXCLUDED.national, lat = EXCLUDED.lat,
            lon = EXCLUDED.lon, qpv_code = EXCLUDED.qpv_code, legal_form = EXCLUDED.legal_form,
            status = EXCLUDED.status, updated_at = EXCLUDED.updated_at, concepts = EXCLUDED.concepts
        -- NULL concepts, or text keys of another vocabulary (migrations 0007 and 0010): refreshed by the same
        -- state applied again (a rebuild), never by an older one
        WHERE actors.version < EXCLUDED.version
           OR (actors.version = EXCLUDED.version
               AND (actors.concepts IS NULL
                    OR NOT EXISTS (SELECT FROM actor_texts t WHERE t.id = actors.id AND t.keys_version = $19)))
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
        actor_concepts(actor.description, activities),
        KEYS_VERSION,
    )
    if not applied:
        return False
    await conn.execute(
        """
        INSERT INTO actor_texts (id, name, description, activities, name_keys, body_keys, keys_version)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (id) DO UPDATE SET
            name = EXCLUDED.name, description = EXCLUDED.description, activities = EXCLUDED.activities,
            name_keys = EXCLUDED.name_keys, body_keys = EXCLUDED.body_keys, keys_version = EXCLUDED.keys_version
        """,
        uuid.UUID(actor.id),
        actor.name,
        actor.description,
        activities,
        *actor_text_keys(actor.name, actor.description, activities),
    )
    return True


def actor_text_keys(
    name: str, description: str, activities: Iterable[dict[str, Any]]
) -> tuple[list[str], list[str], str]:
    """What actor_texts keeps of an actor's words for scoring (migration 0010): its name's keys, its body's
    (`actor_body`), sorted, and the vocabulary's fingerprint."""
    return sorted(text_keys(name)), sorted(text_keys(actor_body(description, activities))), KEYS_VERSION


def actor_body(description: str, activities: Iterable[dict[str, Any]]) -> str:
    """An actor's own words for the text door: its description and its activities' labels, never its name (a
    name alone is weak evidence: "Les Jardins de la Culture" is a theatre company)."""
    return f"{description} ; {activities_text(activities)}"


def actor_concepts(description: str, activities: Iterable[dict[str, Any]]) -> list[str]:
    """The synonym groups an actor's own words name, sorted (the replica's `concepts`)."""
    return sorted(concepts_of(actor_body(description, activities)))


def actor_profile(row: asyncpg.Record, text_relevance: float = 0.0) -> ActorProfile:
    """The scoring view of a replica row joined with its texts (`description` optional: no text evidence)."""
    activities = row["activities"]
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
        activities=tuple(Activity.from_json(a) for a in activities),
        text_relevance=text_relevance,
        body=actor_body(description, activities) if (description := row.get("description")) is not None else "",
        keys=(frozenset(row["name_keys"]), frozenset(row["body_keys"]))
        if description is not None and row.get("keys_version") == KEYS_VERSION
        else None,
    )


async def active_actor(conn: asyncpg.Connection, actor_id: uuid.UUID) -> asyncpg.Record | None:
    """The replica's row of an active actor with its activities (what scoring reads), or None."""
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT a.*, t.activities, t.description, t.name_keys, t.body_keys, t.keys_version
           FROM actors a JOIN actor_texts t USING (id)
           WHERE a.id = $1 AND a.status = 'active'""",
        actor_id,
    )
    return row


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
        sorted(need_query(body.title, body.description, body.service_types).concepts),
    ]


async def insert_need(conn: asyncpg.Connection, owner_id: uuid.UUID, body: NeedCreate) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        INSERT INTO needs (id, owner_id, title, description, kind, themes, service_types, commune_code,
                           lat, lon, perimeter, perimeter_radius_km, eligible_kinds, budget_min, budget_max,
                           deadline, qpv_priority, concepts)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18)
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
            concepts = $18, version = version + 1, updated_at = now()
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


async def load_need(
    conn: asyncpg.Connection | asyncpg.Pool, need_id: uuid.UUID, *, for_update: bool = False
) -> NeedRead | None:
    """A need as the model (its effective perimeter read from its owner), or None."""
    row = await get_need(conn, need_id, for_update=for_update)
    if row is None:
        return None
    return need_read(row, await owner_of(conn, row["owner_id"]))


async def lock_need(conn: asyncpg.Connection, need_id: uuid.UUID) -> None:
    """Serialise the writers of one need's matches until the transaction ends."""
    await conn.execute("SELECT 1 FROM needs WHERE id = $1 FOR UPDATE", need_id)


async def set_need_status(
    conn: asyncpg.Connection, need_id: uuid.UUID, status: NeedStatus, comment: str | None
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        UPDATE needs SET status = $2, closing_comment = $3, version = version + 1, updated_at = now()
        WHERE id = $1 RETURNING {NEED_COLUMNS}
        """,
        need_id,
        status.value,
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


async def match_state(conn: asyncpg.Connection, need_id: uuid.UUID) -> dict[uuid.UUID, tuple[float, MatchStatus]]:
    """The actors already matched to a need, with their scores and statuses."""
    rows = await conn.fetch("SELECT actor_id, score, status FROM matches WHERE need_id = $1", need_id)
    return {r["actor_id"]: (float(r["score"]), MatchStatus(r["status"])) for r in rows}


async def insert_matches(
    conn: asyncpg.Connection,
    need_id: uuid.UUID,
    found: Sequence[tuple[uuid.UUID, float, list[Any]]],
    status: MatchStatus,
) -> list[asyncpg.Record]:
    """Store (actor, score, reasons) matches of a need in one statement; the rows created, in `found`'s order."""
    rows = await conn.fetch(
        f"""
        INSERT INTO matches AS m (id, need_id, actor_id, score, reasons, status)
        SELECT gen_random_uuid(), $1, f.actor_id, f.score, f.reasons::jsonb, $5
        FROM unnest($2::uuid[], $3::real[], $4::text[]) AS f (actor_id, score, reasons)
        ON CONFLICT (need_id, actor_id) DO NOTHING
        RETURNING {MATCH_COLUMNS}
        """,
        need_id,
        [actor_id for actor_id, _, _ in found],
        [score for _, score, _ in found],
        [orjson.dumps(reasons).decode() for _, _, reasons in found],
        status.value,
    )
    by_actor = {row["actor_id"]: row for row in rows}
    return [by_actor[actor_id] for actor_id, _, _ in found if actor_id in by_actor]


async def withdraw(
    conn: asyncpg.Connection,
    need_id: uuid.UUID,
    statuses: Iterable[MatchStatus],
    actor_ids: Sequence[uuid.UUID] | None = None,
) -> list[asyncpg.Record]:
    """Withdraw the need's matches that are in one of `statuses` (of these actors only, when given); the rows
    changed."""
    return list(
        await conn.fetch(
            f"""
            UPDATE matches AS m SET status = 'withdrawn', updated_at = now()
            WHERE need_id = $1 AND status = ANY($2::text[]) AND ($3::uuid[] IS NULL OR actor_id = ANY($3::uuid[]))
            RETURNING {MATCH_COLUMNS}
            """,
            need_id,
            sorted(s.value for s in statuses),
            None if actor_ids is None else list(actor_ids),
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
    conn: asyncpg.Connection, match_id: uuid.UUID, status: MatchStatus, comment: str | None
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        UPDATE matches AS m SET status = $2, response_comment = coalesce($3, response_comment), updated_at = now()
        WHERE id = $1 RETURNING {MATCH_COLUMNS}
        """,
        match_id,
        status.value,
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
                ORDER BY m.score DESC, m.actor_id LIMIT 500  -- ties as rules.top breaks them
            """,
            need_id,
            actor_id,
        )
    )


async def best_matches_of(
    conn: asyncpg.Connection | asyncpg.Pool,
    *,
    by: Literal["need_id", "actor_id"],
    ids: Sequence[uuid.UUID],
    first: int,
    statuses: Sequence[str] | None = None,
) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """The `first` best matches of each need (`by="need_id"`) or each actor, in `statuses` when given, in one
    statement, in `list_matches`'s order: the batch behind the gateway's `Need.matches` and `Actor.matches`."""
    column = {"need_id": "need_id", "actor_id": "actor_id"}[by]  # a column name, never the caller's text
    wanted = list(dict.fromkeys(ids))
    rows = await conn.fetch(
        f"""SELECT w.key, {MATCH_COLUMNS}, a.name AS actor_name
            FROM unnest($1::uuid[]) AS w (key)
            CROSS JOIN LATERAL (
                SELECT * FROM matches
                WHERE matches.{column} = w.key AND ($3::text[] IS NULL OR matches.status = ANY($3::text[]))
                ORDER BY score DESC, id LIMIT $2
            ) m
            LEFT JOIN actors a ON a.id = m.actor_id
            ORDER BY w.key, m.score DESC, m.id""",
        wanted,
        first,
        list(statuses) if statuses is not None else None,
    )
    found: dict[uuid.UUID, list[asyncpg.Record]] = {key: [] for key in wanted}
    for row in rows:
        found[row["key"]].append(row)
    return found


async def match_counts(
    conn: asyncpg.Connection | asyncpg.Pool,
    need_ids: Sequence[uuid.UUID],
    answered_since: datetime | None,
    answers: Sequence[str],
) -> dict[uuid.UUID, tuple[dict[str, int], int]]:
    """Each need's matches counted by status, and how many are answers (`answers`: their statuses) changed after
    `answered_since` (0 without it): one statement for all the needs."""
    wanted = list(dict.fromkeys(need_ids))
    rows = await conn.fetch(
        """SELECT need_id, status, count(*) AS n,
                  count(*) FILTER (WHERE status = ANY($3::text[]) AND updated_at > $2) AS answered
           FROM matches WHERE need_id = ANY($1::uuid[]) GROUP BY need_id, status""",
        wanted,
        answered_since,
        list(answers),
    )
    found: dict[uuid.UUID, tuple[dict[str, int], int]] = {key: ({}, 0) for key in wanted}
    for row in rows:
        by_status, answered = found[row["need_id"]]
        by_status[row["status"]] = int(row["n"])
        found[row["need_id"]] = (by_status, answered + int(row["answered"]))
    return found


# --- partners' webhook endpoints and their deliveries ---------------------------------------------------------

WEBHOOK_COLUMNS = "id, url, event_types, description, status, disabled_reason, created_at, updated_at"
DELIVERY_COLUMNS = (
    "id, endpoint_id, event_id, event_type, status, attempts, next_attempt_at, last_error, created_at, delivered_at"
)


def webhook_read(row: asyncpg.Record) -> WebhookRead:
    return WebhookRead(**{**dict(row), "id": str(row["id"]), "event_types": list(row["event_types"])})


def delivery_read(row: asyncpg.Record) -> DeliveryRead:
    return DeliveryRead(**{**dict(row), "endpoint_id": str(row["endpoint_id"])})


async def insert_endpoint(conn: asyncpg.Connection, owner: str, body: WebhookCreate, secret: str) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""INSERT INTO webhook_endpoints (id, owner, url, event_types, description, secret)
            VALUES ($1, $2, $3, $4, $5, $6) RETURNING {WEBHOOK_COLUMNS}""",
        uuid.uuid4(),
        owner,
        str(body.url),
        body.event_types,
        body.description,
        secret,
    )
    return row


async def list_endpoints(conn: asyncpg.Connection | asyncpg.Pool, owner: str | None) -> list[asyncpg.Record]:
    """The endpoints of `owner` (a principal's subject), or every endpoint when None."""
    return list(
        await conn.fetch(
            f"SELECT {WEBHOOK_COLUMNS} FROM webhook_endpoints WHERE $1::text IS NULL OR owner = $1 ORDER BY created_at",
            owner,
        )
    )


async def get_endpoint(conn: asyncpg.Connection | asyncpg.Pool, endpoint_id: uuid.UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {WEBHOOK_COLUMNS}, owner FROM webhook_endpoints WHERE id = $1", endpoint_id
    )
    return row


async def update_endpoint(
    conn: asyncpg.Connection, endpoint_id: uuid.UUID, body: WebhookUpdate, status: EndpointStatus | None
) -> asyncpg.Record:
    """Change what `body` names (None: unchanged); a new `status` also says why it is disabled, or clears it."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE webhook_endpoints SET url = coalesce($2, url), event_types = coalesce($3, event_types),
               description = coalesce($4, description), status = coalesce($5, status),
               disabled_reason = CASE WHEN $5 = 'active' THEN NULL WHEN $5 = 'disabled' THEN 'paused by its owner'
                                      ELSE disabled_reason END,
               updated_at = now()
            WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}""",
        endpoint_id,
        str(body.url) if body.url is not None else None,
        body.event_types,
        body.description,
        status.value if status is not None else None,
    )
    return row


async def rotate_endpoint_secret(
    conn: asyncpg.Connection, endpoint_id: uuid.UUID, secret: str, overlap: timedelta
) -> asyncpg.Record:
    """The new secret signs from now on; the previous one signs beside it for `overlap`."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE webhook_endpoints
            SET previous_secret = secret, previous_secret_expires_at = now() + $3::interval,
                secret = $2, updated_at = now()
            WHERE id = $1 RETURNING {WEBHOOK_COLUMNS}""",
        endpoint_id,
        secret,
        overlap,
    )
    return row


async def delete_endpoint(conn: asyncpg.Connection, endpoint_id: uuid.UUID) -> None:
    await conn.execute("DELETE FROM webhook_endpoints WHERE id = $1", endpoint_id)


async def list_deliveries(
    conn: asyncpg.Connection | asyncpg.Pool, endpoint_id: uuid.UUID, status: str | None, limit: int
) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            f"""SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries
                WHERE endpoint_id = $1 AND ($2::text IS NULL OR status = $2) ORDER BY created_at DESC LIMIT $3""",
            endpoint_id,
            status,
            limit,
        )
    )


async def get_delivery(conn: asyncpg.Connection | asyncpg.Pool, delivery_id: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = $1", delivery_id
    )
    return row


async def list_attempts(conn: asyncpg.Connection | asyncpg.Pool, delivery_id: str) -> list[asyncpg.Record]:
    return list(
        await conn.fetch(
            """SELECT attempt, at, status_code, error, duration_ms FROM webhook_attempts
               WHERE delivery_id = $1 ORDER BY attempt""",
            delivery_id,
        )
    )


async def retry_delivery(conn: asyncpg.Connection, delivery_id: str, channel: str) -> asyncpg.Record:
    """Make a delivery due now, and wake the deliverers listening on `channel`."""
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE webhook_deliveries SET status = 'pending', next_attempt_at = now() WHERE id = $1
            RETURNING {DELIVERY_COLUMNS}""",
        delivery_id,
    )
    await conn.execute("SELECT pg_notify($1, 'retry')", channel)
    return row
