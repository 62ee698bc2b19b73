"""SQL of the events service: the organizers' replica, events and their search, registrations and seat counts."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.common.rules import storable_instant
from services.contracts import territories
from services.contracts.events import ActorV1, GeoPoint, PlaceV1
from services.events.model import (
    ActorStatus,
    EventFields,
    EventRead,
    EventState,
    EventStatus,
    Organizer,
    ParticipantKind,
    Refusal,
    RegistrationMode,
    RegistrationRead,
    RegistrationState,
    RegistrationStatus,
    ReplicaActor,
    seats_left,
)

# --- actor replica ------------------------------------------------------------------------------


async def upsert_actor(conn: asyncpg.Connection, actor: ActorV1) -> bool:
    """Apply an actor's state if it is newer than the replica's; True when applied."""
    applied = await conn.fetchval(
        """
        INSERT INTO actors (id, version, name, kind, commune_code, status, updated_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7)
        ON CONFLICT (id) DO UPDATE SET
            version = EXCLUDED.version, name = EXCLUDED.name, kind = EXCLUDED.kind,
            commune_code = EXCLUDED.commune_code, status = EXCLUDED.status, updated_at = EXCLUDED.updated_at
        WHERE actors.version < EXCLUDED.version
        RETURNING true
        """,
        uuid.UUID(actor.id),
        actor.version,
        actor.name,
        actor.kind,
        actor.commune_code,
        actor.status,
        datetime.fromisoformat(actor.updated_at),
    )
    return bool(applied)


async def actors_by_id(conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    rows = await conn.fetch("SELECT id, name, kind, status FROM actors WHERE id = ANY($1::uuid[])", list(ids))
    return {row["id"]: row for row in rows}


async def replica_actors(
    conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, ReplicaActor]:
    """The replica's actors among `ids`, typed for the rules."""
    return {
        aid: ReplicaActor(id=aid, name=row["name"], status=row["status"])
        for aid, row in (await actors_by_id(conn, ids)).items()
    }


# --- events -----------------------------------------------------------------------------------------

EVENT_COLUMNS = """id, version, title, description, kind, themes, organizer_ids, starts_at, ends_at, timezone,
    address, commune_code, lat, lon, online_url, capacity, registration_mode, status, cancel_reason,
    confirmed, waitlisted, pending, created_at, updated_at"""


def _event_values(body: EventFields) -> tuple[Any, ...]:
    place = body.place
    commune = place.commune_code if place else None
    location = place.location if place else None
    return (
        body.title,
        body.description,
        body.kind.value,
        body.themes,
        [uuid.UUID(i) for i in body.organizer_ids],
        body.starts_at,
        body.ends_at,
        body.timezone,
        place.address if place else None,
        commune,
        list(territories.territories_of_commune(commune)) if commune else [],
        location.lat if location else None,
        location.lon if location else None,
        str(body.online_url) if body.online_url else None,
        body.capacity,
        body.registration_mode.value,
    )


async def insert_event(
    conn: asyncpg.Connection, body: EventFields, status: EventStatus, created_by: str
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        INSERT INTO events (id, title, description, kind, themes, organizer_ids, starts_at, ends_at, timezone,
                            address, commune_code, territories, lat, lon, online_url, capacity, registration_mode,
                            status, created_by)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19)
        RETURNING {EVENT_COLUMNS}
        """,
        uuid.uuid4(),
        *_event_values(body),
        status.value,
        created_by,
    )
    return row


async def update_event(conn: asyncpg.Connection, event_id: uuid.UUID, body: EventFields) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""
        UPDATE events SET title = $2, description = $3, kind = $4, themes = $5, organizer_ids = $6, starts_at = $7,
            ends_at = $8, timezone = $9, address = $10, commune_code = $11, territories = $12, lat = $13, lon = $14,
            online_url = $15, capacity = $16, registration_mode = $17, version = version + 1, updated_at = now()
        WHERE id = $1
        RETURNING {EVENT_COLUMNS}
        """,
        event_id,
        *_event_values(body),
    )
    return row


async def set_event_status(
    conn: asyncpg.Connection, event_id: uuid.UUID, status: EventStatus, reason: str | None = None
) -> asyncpg.Record:
    row: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE events SET status = $2, cancel_reason = coalesce($3, cancel_reason), version = version + 1,
               updated_at = now() WHERE id = $1 RETURNING {EVENT_COLUMNS}""",
        event_id,
        status.value,
        reason,
    )
    return row


async def get_event(
    conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE id = $1{lock}", event_id
    )
    return row


async def get_events(conn: asyncpg.Connection | asyncpg.Pool, ids: Sequence[uuid.UUID]) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ANY($1::uuid[])", list(ids)
    )
    return rows


def event_state(row: asyncpg.Record) -> EventState:
    """The event as the workflow rules see it."""
    return EventState(
        id=row["id"],
        status=EventStatus(row["status"]),
        organizer_ids=tuple(str(o) for o in row["organizer_ids"]),
        registration_mode=RegistrationMode(row["registration_mode"]),
        capacity=row["capacity"],
        confirmed=row["confirmed"],
        waitlisted=row["waitlisted"],
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        version=row["version"],
    )


def event_read(row: asyncpg.Record, actors: dict[uuid.UUID, Any], distance_km: float | None = None) -> EventRead:
    organizers = []
    for oid in row["organizer_ids"]:
        actor = actors.get(oid)
        organizers.append(
            Organizer(
                id=str(oid),
                name=actor["name"] if actor else None,
                kind=actor["kind"] if actor else None,
                status=actor["status"] if actor else "unknown",
            )
        )
    flags = ["organizer_archived"] if any(o.status != ActorStatus.active for o in organizers) else []
    place = None
    if row["address"] is not None or row["commune_code"] is not None or row["lat"] is not None:
        place = PlaceV1(
            address=row["address"],
            commune_code=row["commune_code"],
            location=GeoPoint(lat=row["lat"], lon=row["lon"]) if row["lat"] is not None else None,
        )
    return EventRead(
        id=str(row["id"]),
        version=row["version"],
        title=row["title"],
        description=row["description"],
        kind=row["kind"],
        themes=list(row["themes"]),
        organizer_ids=[str(o) for o in row["organizer_ids"]],
        organizers=organizers,
        flags=flags,
        starts_at=row["starts_at"],
        ends_at=row["ends_at"],
        timezone=row["timezone"],
        place=place,
        online_url=row["online_url"],
        capacity=row["capacity"],
        registration_mode=row["registration_mode"],
        status=EventStatus(row["status"]),
        cancel_reason=row["cancel_reason"],
        confirmed=row["confirmed"],
        waitlisted=row["waitlisted"],
        seats_left=seats_left(row["capacity"], row["confirmed"]),
        distance_km=round(distance_km, 3) if distance_km is not None else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def events_read(
    conn: asyncpg.Connection | asyncpg.Pool, rows: Sequence[asyncpg.Record], distances: Sequence[float | None] = ()
) -> list[EventRead]:
    """Rows as API objects, with their organizers looked up once for the whole list."""
    actors = await actors_by_id(conn, list({oid for row in rows for oid in row["organizer_ids"]}))
    distances = list(distances) or [None] * len(rows)
    return [event_read(row, actors, distance) for row, distance in zip(rows, distances, strict=True)]


# --- search -------------------------------------------------------------------------------------------


@dataclass
class EventSearch:
    starts_after: datetime | None = None  # events still going on at that time (ends_at > it)
    starts_before: datetime | None = None
    themes: list[str] = field(default_factory=list)
    near: tuple[float, float, float] | None = None  # lat, lon, radius km
    territories: list[str] = field(default_factory=list)
    organizer: uuid.UUID | None = None
    text: str | None = None
    statuses: list[EventStatus] = field(default_factory=lambda: [EventStatus.published])


@dataclass
class Page:
    rows: list[tuple[asyncpg.Record, float | None, str]]  # row, distance km, cursor
    has_next: bool
    total: int | None


def encode_cursor(starts_at: datetime, event_id: uuid.UUID) -> str:
    raw = json.dumps([starts_at.isoformat(), str(event_id)])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    """Raise ValueError on a cursor this API did not produce."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        stamp, event_id = json.loads(base64.urlsafe_b64decode(padded.encode()))
        return storable_instant(datetime.fromisoformat(stamp)), uuid.UUID(event_id)
    except (ValueError, TypeError) as exc:
        raise ValueError("not a cursor returned by this API") from exc


async def search_events(
    conn: asyncpg.Connection | asyncpg.Pool, query: EventSearch, *, first: int, after: str | None, with_total: bool
) -> Page:
    """Events in chronological order (start, then id), with keyset cursors; every filter is index-backed."""
    args: list[Any] = []

    def arg(value: Any) -> str:
        args.append(value)
        return f"${len(args)}"

    where = [f"status = ANY({arg([s.value for s in query.statuses])}::text[])"]
    distance = "NULL::float8"
    if query.starts_after is not None:
        where.append(f"ends_at > {arg(query.starts_after)}")
    if query.starts_before is not None:
        where.append(f"starts_at < {arg(query.starts_before)}")
    if query.themes:
        where.append(f"themes && {arg(query.themes)}::text[]")
    if query.territories:
        where.append(f"territories && {arg(query.territories)}::text[]")
    if query.organizer is not None:
        where.append(f"organizer_ids @> ARRAY[{arg(query.organizer)}::uuid]")
    if query.text:
        where.append(f"search @@ websearch_to_tsquery('fr_unaccent', {arg(query.text)})")
    if query.near is not None:
        lat, lon, radius_km = query.near
        point = f"ll_to_earth({arg(lat)}, {arg(lon)})"
        radius = arg(radius_km * 1000.0)
        where.append(f"lat IS NOT NULL AND earth_box({point}, {radius}) @> ll_to_earth(lat, lon)")
        where.append(f"earth_distance({point}, ll_to_earth(lat, lon)) <= {radius}")
        distance = f"earth_distance({point}, ll_to_earth(lat, lon)) / 1000.0"
    filters = " AND ".join(where)
    total = None
    if with_total:
        total = await conn.fetchval(f"SELECT count(*) FROM events WHERE {filters}", *args)
    page_where = filters
    if after is not None:
        starts_at, last_id = decode_cursor(after)
        page_where += f" AND (starts_at, id) > ({arg(starts_at)}, {arg(last_id)})"
    rows = await conn.fetch(
        f"""SELECT {EVENT_COLUMNS}, {distance} AS distance_km FROM events WHERE {page_where}
            ORDER BY starts_at, id LIMIT {arg(first + 1)}""",
        *args,
    )
    return Page(
        rows=[(row, row["distance_km"], encode_cursor(row["starts_at"], row["id"])) for row in rows[:first]],
        has_next=len(rows) > first,
        total=total,
    )


async def next_events_of(
    conn: asyncpg.Connection | asyncpg.Pool,
    organizers: Sequence[uuid.UUID],
    *,
    managed: Sequence[uuid.UUID],
    first: int,
    starts_after: datetime,
) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """The next `first` events of each organizer in one statement (drafts only for the `managed` ones)."""
    rows = await conn.fetch(
        f"""SELECT o.id AS organizer, e.* FROM unnest($1::uuid[]) AS o(id)
            CROSS JOIN LATERAL (
                SELECT {EVENT_COLUMNS}, NULL::float8 AS distance_km FROM events
                WHERE organizer_ids @> ARRAY[o.id] AND ends_at > $4
                  AND (status IN ('published', 'cancelled') OR (status = 'draft' AND o.id = ANY($2::uuid[])))
                ORDER BY starts_at, id LIMIT $3
            ) e""",
        list(organizers),
        list(managed),
        first,
        starts_after,
    )
    found: dict[uuid.UUID, list[asyncpg.Record]] = {oid: [] for oid in organizers}
    for row in rows:
        found[row["organizer"]].append(row)
    return found


# --- registrations ----------------------------------------------------------------------------------

REGISTRATION_COLUMNS = """id, event_id, seq, participant_kind, actor_id, person_name, person_email, erased_at, status,
    comment, created_by, created_at, updated_at"""

COUNTER = {
    RegistrationStatus.confirmed: "confirmed",
    RegistrationStatus.waitlisted: "waitlisted",
    RegistrationStatus.pending: "pending",
}


async def register(
    conn: asyncpg.Connection,
    event_id: uuid.UUID,
    *,
    actor_id: uuid.UUID | None,
    person_name: str | None,
    person_email: str | None,
    comment: str | None,
    created_by: str,
) -> tuple[RegistrationStatus | Refusal, asyncpg.Record | None, int | None]:
    """(outcome, registration, waiting-list position) from `register_participant` (one round trip, see 0001).

    The function locks the event's row, counts its seats and inserts in one call (`rules.admission` is the
    rule it applies): the lock held until the caller's commit is what prevents overbooking.
    """
    result = await conn.fetchrow(
        "SELECT outcome, registration, place_in_line FROM register_participant($1, $2, $3, $4, $5, $6, $7)",
        event_id,
        uuid.uuid4(),
        actor_id,
        person_name,
        person_email,
        comment,
        created_by,
    )
    assert result is not None
    registration = result["registration"]
    if registration is not None and registration["id"] is None:  # a NULL row of a composite type
        registration = None
    outcome: str = result["outcome"]
    decided = Refusal(outcome) if outcome in Refusal.__members__ else RegistrationStatus(outcome)
    return decided, registration, result["place_in_line"]


async def move(
    conn: asyncpg.Connection, row: asyncpg.Record, to: RegistrationStatus, comment: str | None = None
) -> asyncpg.Record:
    """Change a registration's status and the event's seat counts together (the event row is locked)."""
    moved: asyncpg.Record = await conn.fetchrow(
        f"""UPDATE registrations SET status = $2, comment = coalesce($3, comment), updated_at = now()
            WHERE id = $1 RETURNING {REGISTRATION_COLUMNS}""",
        row["id"],
        to.value,
        comment,
    )
    await _count(conn, row["event_id"], RegistrationStatus(row["status"]), to)
    return moved


async def _count(
    conn: asyncpg.Connection, event_id: uuid.UUID, before: RegistrationStatus | None, after: RegistrationStatus
) -> None:
    changes: dict[str, int] = {}
    if before in COUNTER:
        changes[COUNTER[before]] = changes.get(COUNTER[before], 0) - 1
    if after in COUNTER:
        changes[COUNTER[after]] = changes.get(COUNTER[after], 0) + 1
    changes = {column: delta for column, delta in changes.items() if delta}
    if changes:
        sets = ", ".join(f"{column} = {column} + {delta}" for column, delta in changes.items())
        await conn.execute(f"UPDATE events SET {sets} WHERE id = $1", event_id)


async def get_registration(
    conn: asyncpg.Connection | asyncpg.Pool, registration_id: uuid.UUID, *, for_update: bool = False
) -> asyncpg.Record | None:
    lock = " FOR UPDATE" if for_update else ""
    row: asyncpg.Record | None = await conn.fetchrow(
        f"SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE id = $1{lock}", registration_id
    )
    return row


async def list_registrations(
    conn: asyncpg.Connection | asyncpg.Pool, event_id: uuid.UUID, statuses: Sequence[RegistrationStatus] | None = None
) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {REGISTRATION_COLUMNS} FROM registrations
            WHERE event_id = $1 AND ($2::text[] IS NULL OR status = ANY($2::text[])) ORDER BY seq""",
        event_id,
        [s.value for s in statuses] if statuses else None,
    )
    return rows


async def registrations_of(
    conn: asyncpg.Connection | asyncpg.Pool, event_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[asyncpg.Record]]:
    """Each event's registrations in arrival order, in one statement (the gateway's `Event.registrations`)."""
    found: dict[uuid.UUID, list[asyncpg.Record]] = {event_id: [] for event_id in event_ids}
    rows = await conn.fetch(
        f"""SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE event_id = ANY($1::uuid[]) ORDER BY event_id, seq""",
        list(found),
    )
    for row in rows:
        found[row["event_id"]].append(row)
    return found


async def cancel_live(conn: asyncpg.Connection, event_id: uuid.UUID) -> tuple[asyncpg.Record, list[asyncpg.Record]]:
    """Cancel every live registration of a cancelled event at once (its row is locked).

    Returns the event with its seats emptied and the registrations cancelled, in arrival order.
    """
    rows = await conn.fetch(
        f"""UPDATE registrations SET status = 'cancelled', updated_at = now()
            WHERE event_id = $1 AND status IN ('pending', 'confirmed', 'waitlisted')
            RETURNING {REGISTRATION_COLUMNS}""",
        event_id,
    )
    event: asyncpg.Record = await conn.fetchrow(
        f"UPDATE events SET confirmed = 0, waitlisted = 0, pending = 0 WHERE id = $1 RETURNING {EVENT_COLUMNS}",
        event_id,
    )
    return event, sorted(rows, key=lambda row: row["seq"])


async def first_waitlisted(conn: asyncpg.Connection, event_id: uuid.UUID, limit: int) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await conn.fetch(
        f"""SELECT {REGISTRATION_COLUMNS} FROM registrations WHERE event_id = $1 AND status = 'waitlisted'
            ORDER BY seq LIMIT $2 FOR UPDATE""",
        event_id,
        limit,
    )
    return rows


async def waitlist_position(conn: asyncpg.Connection | asyncpg.Pool, row: asyncpg.Record) -> int | None:
    if row["status"] != RegistrationStatus.waitlisted:
        return None
    position: int = await conn.fetchval(
        "SELECT count(*) FROM registrations WHERE event_id = $1 AND status = 'waitlisted' AND seq <= $2",
        row["event_id"],
        row["seq"],
    )
    return position


def registration_state(row: asyncpg.Record) -> RegistrationState:
    """The registration as the workflow rules see it."""
    return RegistrationState(
        id=row["id"],
        event_id=row["event_id"],
        status=RegistrationStatus(row["status"]),
        participant_kind=ParticipantKind(row["participant_kind"]),
        actor_id=str(row["actor_id"]) if row["actor_id"] is not None else None,
        created_by=row["created_by"],
    )


def registration_reads(rows: list[asyncpg.Record]) -> list[RegistrationRead]:
    """Registrations in arrival order, the waiting ones with their place in line (persons shown)."""
    reads, waiting = [], 0
    for row in rows:
        position = None
        if row["status"] == RegistrationStatus.waitlisted:
            waiting += 1
            position = waiting
        reads.append(registration_read(row, with_person=True, position=position))
    return reads


def registration_read(row: asyncpg.Record, *, with_person: bool, position: int | None = None) -> RegistrationRead:
    return RegistrationRead(
        id=str(row["id"]),
        event_id=str(row["event_id"]),
        participant_kind=row["participant_kind"],
        actor_id=str(row["actor_id"]) if row["actor_id"] else None,
        person_name=row["person_name"] if with_person else None,
        person_email=row["person_email"] if with_person else None,
        erased=row["erased_at"] is not None,
        status=RegistrationStatus(row["status"]),
        position=position,
        comment=row["comment"] if with_person else None,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


async def erase_person(conn: asyncpg.Connection, email: str) -> int:
    """Anonymise every registration of a person (counts and statuses kept) and forget their e-mails."""
    ids = await conn.fetch(
        """UPDATE registrations SET person_name = NULL, person_email = NULL, comment = NULL, erased_at = now(),
               updated_at = now()
           WHERE participant_kind = 'person' AND person_email = $1 RETURNING id""",
        email.lower(),
    )
    registration_ids = [row["id"] for row in ids]
    await conn.execute(
        """UPDATE emails SET to_address = NULL, body = '', subject = '',
               status = CASE WHEN status = 'pending' THEN 'erased' ELSE status END
           WHERE registration_id = ANY($1::uuid[])""",
        registration_ids,
    )
    # A kept first answer to an idempotent registration carries the person too.
    await conn.execute(
        "DELETE FROM idempotency_keys WHERE body->>'id' = ANY($1::text[])", [str(i) for i in registration_ids]
    )
    return len(registration_ids)


def now() -> datetime:
    return datetime.now(UTC)
