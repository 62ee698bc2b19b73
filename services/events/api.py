"""The events service's REST API: events and their search, registrations without overbooking, iCalendar feeds."""

from __future__ import annotations

import csv
import html
import io
import uuid
from datetime import timedelta
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from services.common import errors, filters, versions
from services.common.app import AppSettings, DbPool
from services.common.auth import CurrentPrincipal, OptionalPrincipal, Principal, Role
from services.common.encoding import csv_cell
from services.common.errors import Conflict, Forbidden, NotFound, ValidationFailed, parse_id
from services.common.idempotency import Idempotent
from services.common.outbox import enqueue, enqueue_many
from services.common.rules import Instant
from services.common.settings import Settings
from services.contracts import territories
from services.contracts.events import (
    EventCancelled,
    EventPayload,
    EventPublished,
    EventUpdated,
    RegistrationCancelled,
    RegistrationConfirmed,
    RegistrationPromoted,
    RegistrationRequested,
    RegistrationWaitlisted,
)
from services.contracts.vocabularies import THEMES_BY_CODE
from services.events import emails, ical, store
from services.events.model import (
    LIVE_REGISTRATION,
    EventCancel,
    EventCreate,
    EventRead,
    EventStatus,
    EventUpdate,
    RegistrationCreate,
    RegistrationDecision,
    RegistrationRead,
    RegistrationStatus,
    json_ld,
)

SERVICE = "events"
MAX_PAGE = 100
FEED_LIMIT = 500
FEED_HISTORY = timedelta(days=31)
ICS = "text/calendar; charset=utf-8"
router = APIRouter(prefix="/v1", tags=["events"])


# --- who may do what ---------------------------------------------------------------------------------


def manages(principal: Principal | None, organizer_ids: list[str]) -> bool:
    """Admins, and the `actor` or `collectivity` callers of one of the event's organizers."""
    if principal is None:
        return False
    return principal.is_admin or any(
        principal.role in (Role.ACTOR, Role.COLLECTIVITY) and principal.actor_id == oid for oid in organizer_ids
    )


NOT_A_MANAGER = "only the event's organizers (their actor or collectivity callers) and admins may do this"


def require_manager(principal: Principal, organizer_ids: list[str]) -> None:
    if not manages(principal, organizer_ids):
        raise Forbidden(NOT_A_MANAGER)


async def event_or_404(
    conn: asyncpg.Connection | asyncpg.Pool, event_id: str, principal: Principal | None, *, for_update: bool = False
) -> asyncpg.Record:
    """The event; a draft exists only for its organizers and admins."""
    row = await store.get_event(conn, parse_id(event_id, "event"), for_update=for_update)
    if row is None or (
        row["status"] == EventStatus.draft and not manages(principal, [str(o) for o in row["organizer_ids"]])
    ):
        raise NotFound(f"no event {event_id}")
    return row


async def check_organizers(conn: asyncpg.Connection, organizer_ids: list[str]) -> None:
    """422 unless every organizer is an active actor of the replica."""
    actors = await store.actors_by_id(conn, [uuid.UUID(o) for o in organizer_ids])
    for oid in organizer_ids:
        actor = actors.get(uuid.UUID(oid))
        if actor is None:
            raise ValidationFailed(
                f"organizer_ids: {oid} is not an actor of the directory", field="organizer_ids", rule="exists"
            )
        if actor["status"] != "active":
            raise ValidationFailed(
                f"organizer_ids: {actor['name']} is {actor['status']}, not active", field="organizer_ids", rule="active"
            )


def event_url(settings: Settings, event_id: str) -> str:
    """The event's public page, on the gateway (which serves this path: gateway/links.py)."""
    return settings.public_link(f"/v1/events/{event_id}")


async def read_one(conn: asyncpg.Connection | asyncpg.Pool, row: asyncpg.Record) -> EventRead:
    return (await store.events_read(conn, [row]))[0]


def etag(response: Response, version: int) -> None:
    response.headers["ETag"] = versions.etag(version)


# --- events ---------------------------------------------------------------------------------------------


@router.post("/events", status_code=201, response_model=EventRead, summary="Create an event (a draft unless publish)")
async def create_event(
    body: EventCreate, principal: CurrentPrincipal, pool: DbPool, response: Response, once: Idempotent
) -> EventRead | Response:
    if body.ends_at <= store.now():
        raise ValidationFailed("ends_at: the event is already over", field="ends_at", rule="future")
    async with pool.acquire() as conn, conn.transaction():
        if (first := await once.claim(conn, body)) is not None:
            return first
        await check_organizers(conn, body.organizer_ids)
        if not manages(principal, body.organizer_ids):
            raise Forbidden("you organize an event only as one of its organizers (or as an admin)")
        status = EventStatus.published if body.publish else EventStatus.draft
        row = await store.insert_event(conn, body, status.value, principal.subject)
        event = await read_one(conn, row)
        if body.publish:
            await enqueue(conn, service=SERVICE, key=event.id, payload=EventPublished(event=event.to_contract()))
        await once.remember(
            conn, 201, event, {"ETag": versions.etag(event.version), "Location": f"/v1/events/{event.id}"}
        )
    etag(response, event.version)
    response.headers["Location"] = f"/v1/events/{event.id}"
    return event


@router.get("/events", summary="Search events in chronological order")
async def search_events(
    pool: DbPool,
    starts_after: Annotated[
        Instant | None, Query(alias="from", description="Events not over at this time (default: now)")
    ] = None,
    starts_before: Annotated[Instant | None, Query(alias="to", description="Events starting before this time")] = None,
    themes: Annotated[list[str], Query()] = [],  # noqa: B006 - FastAPI query list
    territory: Annotated[list[str], Query(description="INSEE codes: COM-25056, EPCI-…, DEP-25, REG-27")] = [],  # noqa: B006
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lon: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float | None, Query(gt=0, le=1000)] = None,
    organizer_id: str | None = None,
    text: Annotated[str | None, Query(max_length=200)] = None,
    include_cancelled: bool = False,
    first: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: str | None = None,
    with_total: bool = False,
) -> dict[str, Any]:
    for when in (starts_after, starts_before):
        if when is not None and when.tzinfo is None:
            raise ValidationFailed("from/to need a time zone, e.g. 2027-03-01T00:00:00+01:00", field="from", rule="tz")
    if starts_after and starts_before and starts_before <= starts_after:
        raise ValidationFailed("to must be after from", field="to", rule="after_from")
    filters.check_vocabulary("themes", themes, THEMES_BY_CODE)
    codes = filters.territory_codes(territory)
    organizer = None
    if organizer_id is not None:
        try:
            organizer = uuid.UUID(organizer_id)
        except ValueError as exc:
            raise ValidationFailed("organizer_id: not an actor id", field="organizer_id", rule="format") from exc
    statuses = [EventStatus.published.value] + ([EventStatus.cancelled.value] if include_cancelled else [])
    query = store.EventSearch(
        starts_after=starts_after or store.now(),
        starts_before=starts_before,
        themes=themes,
        near=filters.near(lat, lon, radius_km),
        territories=codes,
        organizer=organizer,
        text=(text or "").strip() or None,
        statuses=statuses,
    )
    try:
        page = await store.search_events(pool, query, first=first, after=after, with_total=with_total)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="after", rule="cursor") from exc
    return await connection(pool, page)


async def connection(pool: asyncpg.Pool, page: store.Page) -> dict[str, Any]:
    """A page of events in the Relay shape the gateway maps: edges with cursors, page info, total."""
    reads = await store.events_read(pool, [row for row, _, _ in page.rows], [d for _, d, _ in page.rows])
    edges = [
        {"cursor": cursor, "node": event.model_dump(mode="json")}
        for event, (_, _, cursor) in zip(reads, page.rows, strict=True)
    ]
    return {
        "edges": edges,
        "page_info": {"has_next_page": page.has_next, "end_cursor": edges[-1]["cursor"] if edges else None},
        "total_count": page.total,
    }


@router.post("/events/batch", summary="Events by ids, in the order asked (null when unknown or not visible)")
async def events_batch(body: filters.BatchRequest, pool: DbPool, principal: OptionalPrincipal) -> dict[str, Any]:
    wanted = body.uuids()
    rows = await store.get_events(pool, [w for w in wanted if w is not None])
    visible = [
        row
        for row in rows
        if row["status"] != EventStatus.draft or manages(principal, [str(o) for o in row["organizer_ids"]])
    ]
    by_id = {uuid.UUID(event.id): event for event in await store.events_read(pool, visible)}
    return {"items": [by_id[w].model_dump(mode="json") if w is not None and w in by_id else None for w in wanted]}


@router.get("/actors/{actor_id}/events", summary="Events an actor organizes, next first (drafts for itself)")
async def organizer_events(
    actor_id: str,
    pool: DbPool,
    principal: OptionalPrincipal,
    include_past: bool = False,
    first: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 20,
    after: str | None = None,
) -> dict[str, Any]:
    aid = parse_id(actor_id, "actor")
    statuses = [EventStatus.published.value, EventStatus.cancelled.value]
    if manages(principal, [str(aid)]):
        statuses.append(EventStatus.draft.value)
    query = store.EventSearch(starts_after=None if include_past else store.now(), organizer=aid, statuses=statuses)
    try:
        page = await store.search_events(pool, query, first=first, after=after, with_total=False)
    except ValueError as exc:
        raise ValidationFailed(str(exc), field="after", rule="cursor") from exc
    return await connection(pool, page)


class OrganizersEvents(filters.BatchRequest):
    """Organizers whose next events are wanted, and how many each."""

    first: int = Field(3, ge=1, le=MAX_PAGE)


@router.post("/actors/events/batch", summary="The next events of several organizers, in one call")
async def organizers_events(body: OrganizersEvents, pool: DbPool, principal: OptionalPrincipal) -> dict[str, Any]:
    wanted = body.uuids()
    organizers = [w for w in wanted if w is not None]
    managed = [oid for oid in organizers if manages(principal, [str(oid)])]
    found = await store.next_events_of(pool, organizers, managed=managed, first=body.first, starts_after=store.now())
    reads = await store.events_read(pool, [row for rows in found.values() for row in rows])
    by_id = {event.id: event.model_dump(mode="json") for event in reads}
    return {"items": [[by_id[str(row["id"])] for row in found[w]] if w is not None else None for w in wanted]}


@router.get("/events/{event_id}.ics", summary="One event as iCalendar", response_class=Response)
async def event_ics(event_id: str, pool: DbPool, principal: OptionalPrincipal, settings: AppSettings) -> Response:
    event = await read_one(pool, await event_or_404(pool, event_id, principal))
    body = ical.calendar([event], event.title, {event.id: event_url(settings, event.id)})
    return Response(body, media_type=ICS, headers={"Content-Disposition": f'inline; filename="{event.id}.ics"'})


@router.get("/events/{event_id}/jsonld", summary="One event as schema.org Event JSON-LD")
async def event_jsonld(event_id: str, pool: DbPool, principal: OptionalPrincipal, settings: AppSettings) -> Response:
    event = await read_one(pool, await event_or_404(pool, event_id, principal))
    return JSONResponse(_json_ld(event, settings), media_type="application/ld+json")


def _json_ld(event: EventRead, settings: Settings) -> dict[str, Any]:
    organizers = [
        {"@type": "Organization", "@id": f"urn:uuid:{o.id}", "name": o.name or o.id} for o in event.organizers
    ]
    return json_ld(event, event_url(settings, event.id), organizers)


@router.get(
    "/events/{event_id}",
    response_model=EventRead,
    summary="One event (Accept: application/ld+json for schema.org JSON-LD)",
)
async def get_event(
    event_id: str,
    request: Request,
    pool: DbPool,
    principal: OptionalPrincipal,
    settings: AppSettings,
    response: Response,
) -> Any:
    event = await read_one(pool, await event_or_404(pool, event_id, principal))
    if "application/ld+json" in request.headers.get("accept", ""):
        return JSONResponse(_json_ld(event, settings), media_type="application/ld+json")
    etag(response, event.version)
    return event


@router.put("/events/{event_id}", response_model=EventRead, summary="Replace an event's fields (If-Match: version)")
async def update_event(
    event_id: str,
    body: EventUpdate,
    principal: CurrentPrincipal,
    pool: DbPool,
    settings: AppSettings,
    response: Response,
    if_match: Annotated[str | None, Header()] = None,
) -> EventRead:
    expected = versions.parse_if_match(if_match, "event", "/v1/events/{id}")
    async with pool.acquire() as conn, conn.transaction():
        current = await event_or_404(conn, event_id, principal, for_update=True)
        require_manager(principal, [str(o) for o in current["organizer_ids"]])
        if current["status"] == EventStatus.cancelled:
            raise Conflict("the event is cancelled: it is not edited any more", field="status", rule="cancelled")
        if current["version"] != expected:
            raise versions.stale_version("event", event_id, expected, current["version"])
        added = [o for o in body.organizer_ids if uuid.UUID(o) not in current["organizer_ids"]]
        if added:
            await check_organizers(conn, added)
        if body.capacity is not None and body.capacity < current["confirmed"]:
            raise Conflict(
                f"capacity {body.capacity} is below the {current['confirmed']} confirmed registrations: "
                "cancel some first",
                field="capacity",
                rule="below_confirmed",
            )
        row = await store.update_event(conn, current["id"], body)
        if await promote(conn, row, settings):  # the seat counts changed
            row = await store.get_event(conn, current["id"])
            assert row is not None
        event = await read_one(conn, row)
        if event.status == EventStatus.published:
            await enqueue(conn, service=SERVICE, key=event.id, payload=EventUpdated(event=event.to_contract()))
    etag(response, event.version)
    return event


@router.post("/events/{event_id}/publish", response_model=EventRead, summary="Publish a draft")
async def publish_event(event_id: str, principal: CurrentPrincipal, pool: DbPool, response: Response) -> EventRead:
    async with pool.acquire() as conn, conn.transaction():
        current = await event_or_404(conn, event_id, principal, for_update=True)
        require_manager(principal, [str(o) for o in current["organizer_ids"]])
        if current["status"] != EventStatus.draft:
            raise Conflict(f"the event is already {current['status']}", field="status", rule="draft")
        if current["ends_at"] <= store.now():
            raise Conflict("the event is already over", field="ends_at", rule="future")
        event = await read_one(conn, await store.set_event_status(conn, current["id"], EventStatus.published.value))
        await enqueue(conn, service=SERVICE, key=event.id, payload=EventPublished(event=event.to_contract()))
    etag(response, event.version)
    return event


@router.post("/events/{event_id}/cancel", response_model=EventRead, summary="Cancel an event and its registrations")
async def cancel_event(
    event_id: str, body: EventCancel, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> EventRead:
    async with pool.acquire() as conn, conn.transaction():
        current = await event_or_404(conn, event_id, principal, for_update=True)
        require_manager(principal, [str(o) for o in current["organizer_ids"]])
        if current["status"] == EventStatus.cancelled:
            raise Conflict("the event is already cancelled", field="status", rule="cancelled")
        await store.set_event_status(conn, current["id"], EventStatus.cancelled.value, body.reason)
        row, cancelled = await store.cancel_live(conn, current["id"])
        await enqueue_many(
            conn,
            service=SERVICE,
            events=[
                (
                    str(row["id"]),
                    RegistrationCancelled(
                        registration=store.registration_read(r, with_person=False).to_contract(),
                        reason="event_cancelled",
                    ),
                )
                for r in cancelled
            ],
        )
        await emails.record(conn, "event_cancelled", cancelled, row, settings)
        event = await read_one(conn, row)
        await enqueue(
            conn, service=SERVICE, key=event.id, payload=EventCancelled(event=event.to_contract(), reason=body.reason)
        )
    return event


# --- registrations ----------------------------------------------------------------------------------

PAYLOADS: dict[str, type[EventPayload]] = {
    "pending": RegistrationRequested,
    "confirmed": RegistrationConfirmed,
    "waitlisted": RegistrationWaitlisted,
    "promoted": RegistrationPromoted,
}


async def tell(
    conn: asyncpg.Connection,
    registration: asyncpg.Record,
    event: asyncpg.Record,
    settings: Settings,
    what: str,
    *,
    position: int | None = None,
) -> None:
    """Publish what happened to a registration (keyed by event) and e-mail the person it concerns."""
    contract = store.registration_read(registration, with_person=False).to_contract()
    payload: EventPayload
    if what in PAYLOADS:
        payload = PAYLOADS[what](registration=contract)
    else:
        payload = RegistrationCancelled(registration=contract, reason=what)
    await enqueue(conn, service=SERVICE, key=str(registration["event_id"]), payload=payload)
    if what == "waitlisted" and position is None:
        position = await store.waitlist_position(conn, registration)
    await emails.record(conn, what, [registration], event, settings, position=position)


async def promote(conn: asyncpg.Connection, event: asyncpg.Record, settings: Settings) -> int:
    """Fill free seats from the waiting list, first come first served (the event row is locked)."""
    waiting: int = event["waitlisted"]
    free = waiting if event["capacity"] is None else min(event["capacity"] - event["confirmed"], waiting)
    if free <= 0:
        return 0
    for row in await store.first_waitlisted(conn, event["id"], free):
        promoted = await store.move(conn, row, RegistrationStatus.confirmed)
        await tell(conn, promoted, event, settings, "promoted")
    return free


def can_see_person(principal: Principal | None, event: asyncpg.Record) -> bool:
    return manages(principal, [str(o) for o in event["organizer_ids"]])


@router.post(
    "/events/{event_id}/registrations",
    status_code=201,
    response_model=RegistrationRead,
    summary="Register an actor or a person (confirmed, waitlisted, or pending approval)",
)
async def register(
    event_id: str,
    body: RegistrationCreate,
    principal: CurrentPrincipal,
    pool: DbPool,
    settings: AppSettings,
    response: Response,
    once: Idempotent,
) -> RegistrationRead | Response:
    event = await event_or_404(pool, event_id, principal)
    organizer_ids = [str(o) for o in event["organizer_ids"]]
    actor_uuid = None
    if body.actor_id is not None:
        if not (principal.acts_for(body.actor_id) or manages(principal, organizer_ids)):
            raise Forbidden("an actor registers itself (organizers and admins may register any actor)")
        actor_uuid = uuid.UUID(body.actor_id)
        actor = (await store.actors_by_id(pool, [actor_uuid])).get(actor_uuid)
        if actor is None or actor["status"] != "active":
            raise ValidationFailed(
                f"actor_id: {body.actor_id} is not an active actor of the directory", field="actor_id", rule="exists"
            )
    async with pool.acquire() as conn, conn.transaction():
        if (first := await once.claim(conn, body)) is not None:
            return first
        # The event row is locked inside this one call and until the commit: seats are counted exactly.
        outcome, row, position = await store.register(
            conn,
            event["id"],
            actor_id=actor_uuid,
            person_name=body.person.name if body.person else None,
            person_email=body.person.email if body.person else None,
            comment=body.comment,
            created_by=principal.subject,
        )
        if row is None:
            if outcome == "duplicate":
                field = "actor_id" if actor_uuid else "person.email"
                raise Conflict("this participant is already registered for the event", field=field, rule="unique")
            if outcome not in REFUSALS:
                raise NotFound(f"no event {event_id}")
            detail, field, rule = REFUSALS[outcome]
            raise Conflict(detail, field=field, rule=rule)
        await tell(conn, row, event, settings, outcome, position=position)
        registration = store.registration_read(row, with_person=can_see_person(principal, event), position=position)
        await once.remember(conn, 201, registration, {"Location": f"/v1/registrations/{row['id']}"})
    response.headers["Location"] = f"/v1/registrations/{row['id']}"
    return registration


REFUSALS = {  # outcome of register_participant → (detail, field, rule) of the 409
    "not_published": ("the event is not published: no registration", "status", "published"),
    "closed": ("this event does not take registrations", "registration_mode", "closed"),
    "started": ("the event has started: registrations are closed", "starts_at", "not_started"),
}


@router.get(
    "/events/{event_id}/registrations",
    response_model=list[RegistrationRead],
    summary="An event's registrations in arrival order (organizers and admins)",
)
async def event_registrations(
    event_id: str,
    principal: CurrentPrincipal,
    pool: DbPool,
    status: Annotated[list[RegistrationStatus] | None, Query()] = None,
) -> list[RegistrationRead]:
    event = await event_or_404(pool, event_id, principal)
    require_manager(principal, [str(o) for o in event["organizer_ids"]])
    rows = await store.list_registrations(pool, event["id"], [s.value for s in status] if status else None)
    return _with_positions(rows)


@router.post(
    "/events/registrations/batch",
    summary="The registrations of several events, in one call (each item: the single route's answer or its problem)",
)
async def events_registrations_batch(
    body: filters.BatchRequest, principal: CurrentPrincipal, pool: DbPool
) -> dict[str, Any]:
    wanted = body.uuids()
    events = {row["id"]: row for row in await store.get_events(pool, [w for w in wanted if w is not None])}
    managed = [eid for eid, row in events.items() if manages(principal, [str(o) for o in row["organizer_ids"]])]
    found = await store.registrations_of(pool, managed)
    items: list[dict[str, Any]] = []
    for asked, eid in zip(body.ids, wanted, strict=True):
        event = events.get(eid) if eid is not None else None
        if event is None or (event["status"] == EventStatus.draft and eid not in found):
            items.append({"problem": NotFound(f"no event {asked}").problem()})
        elif eid not in found:
            items.append({"problem": Forbidden(NOT_A_MANAGER).problem()})
        else:
            items.append({"registrations": [r.model_dump(mode="json") for r in _with_positions(found[eid])]})
    return {"items": items}


def _with_positions(rows: list[asyncpg.Record]) -> list[RegistrationRead]:
    reads, waiting = [], 0
    for row in rows:
        position = None
        if row["status"] == RegistrationStatus.waitlisted:
            waiting += 1
            position = waiting
        reads.append(store.registration_read(row, with_person=True, position=position))
    return reads


CSV_COLUMNS = ["id", "status", "position", "participant_kind", "actor_id", "actor_name", "name", "email", "created_at"]


@router.get(
    "/events/{event_id}/registrations.csv",
    summary="An event's registrations as CSV (organizers and admins)",
    response_class=Response,
)
async def registrations_csv(event_id: str, principal: CurrentPrincipal, pool: DbPool) -> Response:
    event = await event_or_404(pool, event_id, principal)
    require_manager(principal, [str(o) for o in event["organizer_ids"]])
    rows = await store.list_registrations(pool, event["id"])
    actors = await store.actors_by_id(pool, [row["actor_id"] for row in rows if row["actor_id"]])
    out = io.StringIO()
    writer = csv.writer(out, delimiter=";")
    writer.writerow(CSV_COLUMNS)
    for reg in _with_positions(rows):
        actor = actors.get(uuid.UUID(reg.actor_id)) if reg.actor_id else None
        writer.writerow(
            [
                csv_cell(v)
                for v in (
                    reg.id,
                    reg.status.value,
                    reg.position,
                    reg.participant_kind,
                    reg.actor_id,
                    actor["name"] if actor else None,
                    reg.person_name,
                    reg.person_email,
                    reg.created_at.isoformat(),
                )
            ]
        )
    return Response(
        "\ufeff" + out.getvalue(),  # BOM: spreadsheets then read UTF-8
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="inscriptions-{event["id"]}.csv"'},
    )


async def _registration_and_event(
    conn: asyncpg.Connection, registration_id: str
) -> tuple[asyncpg.Record, asyncpg.Record]:
    """Lock the event first, then its registration (the same order as registering, hence no deadlock)."""
    rid = parse_id(registration_id, "registration")
    found = await store.get_registration(conn, rid)
    if found is None:
        raise NotFound(f"no registration {registration_id}")
    event = await store.get_event(conn, found["event_id"], for_update=True)
    row = await store.get_registration(conn, rid, for_update=True)
    assert event is not None and row is not None
    return row, event


def _may_cancel(principal: Principal | None, row: asyncpg.Record, event: asyncpg.Record) -> bool:
    if principal is None:
        return False
    if manages(principal, [str(o) for o in event["organizer_ids"]]):
        return True
    if row["actor_id"] is not None and principal.acts_for(str(row["actor_id"])):
        return True
    return bool(row["participant_kind"] == "person" and row["created_by"] == principal.subject)


@router.get("/registrations/{registration_id}", response_model=RegistrationRead, summary="One registration")
async def get_registration(registration_id: str, principal: CurrentPrincipal, pool: DbPool) -> RegistrationRead:
    row = await store.get_registration(pool, parse_id(registration_id, "registration"))
    if row is None:
        raise NotFound(f"no registration {registration_id}")
    event = await store.get_event(pool, row["event_id"])
    assert event is not None
    if not _may_cancel(principal, row, event) and principal.role != Role.PARTNER:
        raise Forbidden("a registration is for its participant, the event's organizers, partners and admins")
    return store.registration_read(
        row, with_person=can_see_person(principal, event), position=await store.waitlist_position(pool, row)
    )


async def _cancel(
    pool: asyncpg.Pool, registration_id: str, settings: Settings, principal: Principal | None, token: str | None
) -> RegistrationRead:
    async with pool.acquire() as conn, conn.transaction():
        row, event = await _registration_and_event(conn, registration_id)
        by_token = token is not None and emails.check_cancel_token(settings, row["id"], token)
        if token is not None and not by_token:
            raise Forbidden("this cancel link is not valid for this registration")
        if not by_token and not _may_cancel(principal, row, event):
            raise Forbidden("a registration is cancelled by its participant, the event's organizers or an admin")
        if row["status"] not in LIVE_REGISTRATION:
            raise Conflict(f"the registration is already {row['status']}", field="status", rule="live")
        was_confirmed = row["status"] == RegistrationStatus.confirmed
        cancelled = await store.move(conn, row, RegistrationStatus.cancelled)
        await tell(conn, cancelled, event, settings, "cancelled")
        if was_confirmed:
            fresh = await store.get_event(conn, event["id"])
            assert fresh is not None
            await promote(conn, fresh, settings)
    return store.registration_read(cancelled, with_person=by_token or can_see_person(principal, event))


@router.post(
    "/registrations/{registration_id}/cancel", response_model=RegistrationRead, summary="Cancel a registration"
)
async def cancel_registration(
    registration_id: str,
    pool: DbPool,
    settings: AppSettings,
    principal: OptionalPrincipal,
    token: Annotated[
        str | None, Query(max_length=64, description="The link's token, for persons without account")
    ] = None,
) -> RegistrationRead:
    if principal is None and token is None:
        raise errors.Unauthenticated("send Authorization: Bearer <token>, or the token of the e-mail's link")
    return await _cancel(pool, registration_id, settings, principal, token)


@router.get(
    "/registrations/{registration_id}/cancel",
    response_class=HTMLResponse,
    summary="The page an e-mail's cancel link opens (a button; a GET never cancels)",
)
async def cancel_page(
    registration_id: str, pool: DbPool, settings: AppSettings, token: Annotated[str, Query(max_length=64)]
) -> HTMLResponse:
    rid = parse_id(registration_id, "registration")
    if not emails.check_cancel_token(settings, rid, token):
        raise Forbidden("this cancel link is not valid for this registration")
    row = await store.get_registration(pool, rid)
    if row is None:
        raise NotFound(f"no registration {registration_id}")
    event = await store.get_event(pool, row["event_id"])
    assert event is not None
    title = html.escape(event["title"])
    if row["status"] not in LIVE_REGISTRATION:
        text = f"<p>Votre inscription à « {title} » est déjà {html.escape(row['status'])}.</p>"
    else:
        action = html.escape(f"/v1/registrations/{rid}/cancel?token={token}")
        text = (
            f"<p>Annuler votre inscription à « {title} » ?</p>"
            f'<form method="post" action="{action}"><button type="submit">Annuler mon inscription</button></form>'
        )
    return HTMLResponse(
        f'<!doctype html><html lang="fr"><meta charset="utf-8"><title>Maillage</title><body>{text}</body></html>'
    )


async def _decide(
    pool: asyncpg.Pool,
    registration_id: str,
    principal: Principal,
    settings: Settings,
    approve: bool,
    comment: str | None,
) -> RegistrationRead:
    async with pool.acquire() as conn, conn.transaction():
        row, event = await _registration_and_event(conn, registration_id)
        require_manager(principal, [str(o) for o in event["organizer_ids"]])
        if row["status"] != RegistrationStatus.pending:
            raise Conflict(f"the registration is {row['status']}, not pending", field="status", rule="pending")
        if approve:
            if event["status"] != EventStatus.published:
                raise Conflict(f"the event is {event['status']}", field="status", rule="published")
            status = await store.seat_for(conn, event["id"])
            moved = await store.move(conn, row, status, comment)
            await tell(conn, moved, event, settings, status.value)
        else:
            moved = await store.move(conn, row, RegistrationStatus.rejected, comment)
            await tell(conn, moved, event, settings, "rejected")
        position = await store.waitlist_position(conn, moved)
    return store.registration_read(moved, with_person=True, position=position)


@router.post(
    "/registrations/{registration_id}/approve", response_model=RegistrationRead, summary="Accept a pending registration"
)
async def approve_registration(
    registration_id: str, body: RegistrationDecision, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> RegistrationRead:
    return await _decide(pool, registration_id, principal, settings, True, body.comment)


@router.post(
    "/registrations/{registration_id}/reject", response_model=RegistrationRead, summary="Refuse a pending registration"
)
async def reject_registration(
    registration_id: str, body: RegistrationDecision, principal: CurrentPrincipal, pool: DbPool, settings: AppSettings
) -> RegistrationRead:
    return await _decide(pool, registration_id, principal, settings, False, body.comment)


class ErasureRequest(BaseModel):
    email: str = Field(max_length=320, pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@router.post("/erasures", summary="Erase a person's data (GDPR art. 17): registrations anonymised, counts kept")
async def erase_person(body: ErasureRequest, principal: CurrentPrincipal, pool: DbPool) -> dict[str, int]:
    principal.require_role(Role.ADMIN)
    async with pool.acquire() as conn, conn.transaction():
        count = await store.erase_person(conn, body.email)
    return {"registrations_anonymised": count}


# --- iCalendar feeds -----------------------------------------------------------------------------------


async def _feed(pool: asyncpg.Pool, settings: Settings, query: store.EventSearch, name: str) -> Response:
    query.starts_after = store.now() - FEED_HISTORY
    query.statuses = [EventStatus.published.value, EventStatus.cancelled.value]
    page = await store.search_events(pool, query, first=FEED_LIMIT, after=None, with_total=False)
    events = await store.events_read(pool, [row for row, _, _ in page.rows])
    body = ical.calendar(events, name, {e.id: event_url(settings, e.id) for e in events})
    return Response(body, media_type=ICS, headers={"Cache-Control": "public, max-age=300"})


@router.get(
    "/feeds/organizers/{actor_id}.ics", summary="iCalendar feed of an organizer's events", response_class=Response
)
async def organizer_feed(actor_id: str, pool: DbPool, settings: AppSettings) -> Response:
    aid = parse_id(actor_id, "actor")
    actor = (await store.actors_by_id(pool, [aid])).get(aid)
    if actor is None:
        raise NotFound(f"no actor {actor_id}")
    return await _feed(pool, settings, store.EventSearch(organizer=aid), f"Maillage — {actor['name']}")


@router.get(
    "/feeds/territories/{code}.ics",
    summary="iCalendar feed of a territory's events (COM-, EPCI-, DEP-, REG-)",
    response_class=Response,
)
async def territory_feed(code: str, pool: DbPool, settings: AppSettings) -> Response:
    try:
        territory = territories.normalize_territory(code)
    except territories.TerritoryError as exc:
        raise NotFound(f"no territory {code}: {exc}") from exc
    return await _feed(pool, settings, store.EventSearch(territories=[territory]), f"Maillage — {territory}")


@router.get("/feeds/themes/{theme}.ics", summary="iCalendar feed of a theme's events", response_class=Response)
async def theme_feed(theme: str, pool: DbPool, settings: AppSettings) -> Response:
    if theme not in THEMES_BY_CODE:
        raise NotFound(f"no theme {theme}")
    return await _feed(pool, settings, store.EventSearch(themes=[theme]), f"Maillage — {THEMES_BY_CODE[theme].label}")
